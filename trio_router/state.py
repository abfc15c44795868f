"""Everything one worker process serves with, built once from the loaded config."""

from __future__ import annotations

import os
import time
from pathlib import Path

import platformdirs

from .config import Config, LoadedConfig
from .custom_router import CustomRouter
from .intake import BodyLimits
from .keys import Access
from .limits import Limiter
from .masking import Redactor, config_secrets
from .metrics import Labels
from .prices import Prices
from .routing import Router
from .store import Store, open_store
from .transformers import Transformers
from .upstream import Settings, Upstream


class Runtime:
    """What one version of the config serves with.

    A request takes ``State.runtime`` once, at its start, and keeps it to its end: a config
    applied meanwhile changes what the next request gets, never one in flight.
    """

    def __init__(
        self, loaded: LoadedConfig, transformers: Transformers, hook: CustomRouter | None = None
    ) -> None:
        """``transformers`` and ``hook`` (the custom router) hold the code imported at start."""
        self.loaded = loaded
        self.config: Config = loaded.config
        self.router = Router(loaded.config, hook)
        self.transformers = transformers
        self.api_key = loaded.config.APIKEY.encode()
        # Every error message a client gets passes it: upstream text may quote a key.
        self.redact = Redactor(config_secrets(loaded.config))
        # When this config began to serve: the models list's `created_at`.
        self.created_at = time.time()
        self.prices = Prices(loaded.config)  # each request's cost (prices.py)
        self.labels = Labels(loaded.config)  # the metrics' bounded label values


class State:
    """A worker's lifetime: the current runtime, and what outlives a config change."""

    def __init__(
        self, loaded: LoadedConfig, transformers: Transformers, hook: CustomRouter | None = None
    ) -> None:
        self.runtime = Runtime(loaded, transformers, hook)
        # The config the process started with: what a reload may not change (where it listens,
        # which code it imported; reload.py).
        self.initial = self.runtime
        self.upstream = Upstream(upstream_settings(loaded))
        directory = self.data_dir = data_dir(loaded)
        directory.mkdir(parents=True, exist_ok=True)
        # Every secret of every config applied so far: the log redacts a rotated-out key too.
        self.log_secrets = set(config_secrets(loaded.config))
        # Usage, client keys and the counts of their limits, shared by every worker; the
        # attribute keeps the name it had when the store held only usage.
        self.usage: Store = open_store(directory, loaded.config.STORE_URL)
        self.access = Access(self.usage)
        self.limits = Limiter(self.usage)
        # Shared by every connection of this worker: the budget counts across all of them.
        self.bodies = BodyLimits()


def upstream_settings(loaded: LoadedConfig) -> Settings:
    """How ``loaded`` reaches its providers; a relative ``ca_bundle`` is beside the config."""
    if loaded.path is None:
        return Settings(loaded.config, None, source="built-in default config")
    return Settings(loaded.config, loaded.path.parent, source=str(loaded.path))


DATA_DIR_VARIABLE = "TRIO_ROUTER_DATA_DIR"


def data_dir(loaded: LoadedConfig) -> Path:
    """Where ``logs/`` and ``usage.sqlite3`` live: ``$TRIO_ROUTER_DATA_DIR``, else beside the
    config file, else the per-user data directory (e.g. ``~/.local/share/trio-router``), never
    whatever directory the server happened to be started from."""
    override = os.environ.get(DATA_DIR_VARIABLE)
    if override:
        return Path(override).expanduser().absolute()
    if loaded.path is not None:
        return loaded.path.parent
    return Path(platformdirs.user_data_dir("trio-router", appauthor=False))

"""Everything one worker process serves with, built once from the loaded config."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .config import Config, LoadedConfig
from .intake import BodyLimits
from .masking import Redactor, config_secrets
from .routing import Router
from .transformers import Transformers
from .upstream import Upstream
from .usage import UsageStore


class Runtime:
    """What one version of the config serves with.

    A request takes ``State.runtime`` once, at its start, and keeps it to its end: a config
    applied meanwhile changes what the next request gets, never one in flight.
    """

    def __init__(self, loaded: LoadedConfig, transformers: Transformers) -> None:
        self.loaded = loaded
        self.config: Config = loaded.config
        self.router = Router(loaded.config)
        self.transformers = transformers
        self.api_key = loaded.config.APIKEY.encode()
        # Every error message a client gets passes it: upstream text may quote a key.
        self.redact = Redactor(config_secrets(loaded.config))


class State:
    """A worker's lifetime: the current runtime, and what outlives a config change."""

    def __init__(self, loaded: LoadedConfig, transformers: Transformers) -> None:
        self.runtime = Runtime(loaded, transformers)
        self.upstream = Upstream(loaded.config.API_TIMEOUT_MS)
        directory = data_dir(loaded)
        directory.mkdir(parents=True, exist_ok=True)
        self.usage = UsageStore(directory / "usage.sqlite3")
        # Shared by every connection of this worker: the budget counts across all of them.
        self.bodies = BodyLimits()


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

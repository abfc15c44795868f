"""Everything one worker process serves with, built once from the loaded config."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .config import Config, LoadedConfig
from .intake import BodyLimits
from .routing import Router
from .transformers import Transformers
from .upstream import Upstream
from .usage import UsageStore


class State:
    def __init__(self, loaded: LoadedConfig, transformers: Transformers) -> None:
        self.loaded = loaded
        self.config: Config = loaded.config
        self.router = Router(loaded.config)
        self.transformers = transformers
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

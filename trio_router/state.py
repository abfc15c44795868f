"""Everything one worker process serves with, built once from the loaded config."""

from __future__ import annotations

from pathlib import Path

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
        self.usage = UsageStore(data_dir(loaded) / "usage.sqlite3")
        # Shared by every connection of this worker: the budget counts across all of them.
        self.bodies = BodyLimits()


def data_dir(loaded: LoadedConfig) -> Path:
    """Where logs, backups and usage live: beside the config file, or the working directory."""
    return loaded.path.parent if loaded.path is not None else Path.cwd()

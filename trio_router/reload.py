"""Live config: a new config becomes a new :class:`Runtime`, swapped in by one assignment.

Three triggers reach every worker: ``POST /api/config`` applies in the worker that got it before
it answers, and writes the file; each worker polls the file's ``stat`` every 250 ms (a rename
over it, as ``config_store.write`` does, changes its inode; an edit in place its size or mtime);
and SIGHUP makes each worker read it at once (``trio-router start`` forwards the master's
SIGHUP to every worker). A request takes ``state.runtime`` once at its start, so requests in
flight finish on the config they started with and no open stream is touched.

Across nodes (``STORE_URL=postgresql://...``), a config applied through the API is also shared
through the store: the worker that applied it publishes the file's text (``$VAR``s unresolved,
so that each node resolves its own environment), and every other worker, on every node, writes
it to its own config file (with a backup, as a POST does) and applies it like a POST: within
milliseconds of the NOTIFY (store/postgres.py). With SQLite nothing is shared this way: the
workers of one host already share the file.

The new config is built whole before the swap: anything that fails leaves the old one serving,
logged. A reload never imports code: a custom transformer file or ``CUSTOM_ROUTER_PATH`` that
this process did not load at start makes the whole reload wait for a restart, since applying
the rest would serve a config that is neither the old one nor the new one. Settings fixed at
start (where the server listens, the data directory, ``TRANSFORMERS_DIR``) are named in a
warning when they change, and everything else is applied.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import trio

from . import config_store, logs
from .cli import LOOPBACK, bind_host
from .config import (
    RULES,
    Config,
    ConfigError,
    CustomTransformer,
    LoadedConfig,
    is_javascript,
    load,
)
from .custom_router import check_applied
from .hooks import Transformer
from .logs import logger
from .masking import config_secrets
from .state import Runtime, State, data_dir, upstream_settings
from .store import SharedConfig
from .tokens import encoding
from .transformers import Loader, TransformerConfigError, Transformers, api_loader
from .upstream import Settings

POST = "POST /api/config"
FILE_CHANGE = "file change"
SIGHUP = "SIGHUP"
SHARED = "config applied on another node"
POLL_SECONDS = 0.25

# Read once, when the server starts: a reload that changes them warns that it needs a restart.
FIXED_AT_START = ("HOST", "PORT", "TRANSFORMERS_DIR", "LOG_FORMAT", "STORE_URL")
# Settings whose value is shown in the log line of a reload; any other changed field is named
# only, since its value may be a secret or hold one.
_SHOWN = frozenset(
    {
        "LOG",
        "LOG_LEVEL",
        "API_TIMEOUT_MS",
        "CONNECT_TIMEOUT_MS",
        "FIRST_BYTE_TIMEOUT_MS",
        "BACKUPS_KEPT",
        "HOST",
        "PORT",
    }
)

Stat = tuple[int, int, int, int] | None


@dataclass
class Outcome:
    """What a reload did: applied or not, and why, in words for the operator."""

    applied: bool
    message: str
    restart_required: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Refused(Exception):
    """The new config cannot serve (invalid, or it needs code loaded at a restart)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def _stat(path: Path) -> Stat:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


def _reload_loader(started: Transformers, base: Path) -> Loader:
    """Custom transformers for a reload: only the classes this process imported at start."""
    known = api_loader(started, base, "")  # no TRANSFORMERS_DIR: nothing new is ever named

    def load_known(spec: CustomTransformer, where: str) -> type[Transformer]:
        try:
            return known(spec, where)
        except TransformerConfigError:
            raise TransformerConfigError(
                f"{where}.path: restart required to load {spec.path!r}: a reload imports no "
                "code, and this process did not load that file at start"
            ) from None

    return load_known


def fixed_changes(state: State, loaded: LoadedConfig) -> list[str]:
    """The settings fixed at start whose value in ``loaded`` differs from the serving one."""
    started = state.initial.config
    changed = [
        name for name in FIXED_AT_START if getattr(loaded.config, name) != getattr(started, name)
    ]
    if data_dir(loaded) != state.data_dir:
        changed.append("data directory")
    return changed


def build(state: State, loaded: LoadedConfig) -> tuple[Runtime, Settings]:
    """The runtime ``loaded`` serves with and how it reaches its providers, checked whole;
    raises :class:`Refused`."""
    started = state.initial.config
    config = loaded.config
    base = loaded.path.parent if loaded.path else Path.cwd()
    # The custom router loaded at start may stay or go; another one waits for a restart.
    hook = state.initial.router.hook
    problems = check_applied(config, hook, base)
    if not config.CUSTOM_ROUTER_PATH or is_javascript(config.CUSTOM_ROUTER_PATH):
        hook = None
    host, _ = bind_host(started.HOST, started.APIKEY, started.ADMIN_KEY)
    if host != LOOPBACK and started.APIKEY and not config.APIKEY:
        problems.append(
            f"APIKEY: the server listens on {host}, where /v1/* without APIKEY would be open "
            f"to the network; restart to serve on {LOOPBACK} without it"
        )
    try:
        transformers = Transformers(config, base, _reload_loader(state.initial.transformers, base))
    except TransformerConfigError as error:
        problems.extend(error.problems)
    try:
        settings = upstream_settings(loaded)  # proxies and CA bundles
    except ConfigError as error:
        problems.extend(error.problems)
    if problems:
        raise Refused(problems)
    try:
        return Runtime(loaded, transformers, hook), settings
    except Exception as error:  # whatever a part of the runtime refuses, the old one serves
        raise Refused([f"{type(error).__name__}: {error}"]) from None


def changes(old: Config, new: Config) -> list[str]:
    """What changed, at a high level and without a secret: for the log line of a reload."""
    found: list[str] = []
    for rule in RULES:
        before, after = getattr(old.Router, rule), getattr(new.Router, rule)
        if before != after:
            found.append(f"Router.{rule} {before or '-'} -> {after or '-'}")
    if old.Router.longContextThreshold != new.Router.longContextThreshold:
        found.append(
            f"Router.longContextThreshold {old.Router.longContextThreshold} -> "
            f"{new.Router.longContextThreshold}"
        )
    before_providers = {p.name: p for p in old.Providers}
    after_providers = {p.name: p for p in new.Providers}
    for name in after_providers.keys() - before_providers.keys():
        found.append(f"provider {name} added")
    for name in before_providers.keys() - after_providers.keys():
        found.append(f"provider {name} removed")
    for name in before_providers.keys() & after_providers.keys():
        if before_providers[name] != after_providers[name]:
            found.append(f"provider {name} changed")
    skip = {"Router", "Providers"}
    for name in new.__struct_fields__:
        before, after = getattr(old, name), getattr(new, name)
        if name in skip or before == after:
            continue
        found.append(f"{name} {before!r} -> {after!r}" if name in _SHOWN else f"{name} changed")
    return sorted(found)


class Reloader:
    """One worker's triggers, applying one config at a time."""

    def __init__(self, state: State, path: Path) -> None:
        self.state = state
        self.path = path
        self.lock = trio.Lock()
        self.scope = trio.CancelScope()
        self.seen: Stat = _stat(path)
        # A file that failed once is reported if the next poll finds it unchanged, so that an
        # editor's write in pieces is not.
        self.failing: Stat = None
        self.failed_once = False
        # Who published a shared config: this worker's own ones are not applied twice.
        self.origin = uuid.uuid4().hex
        self.shared_version = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watches the file (and SIGHUP, where there is one) until ``scope`` is cancelled."""
        with self.scope:
            async with trio.open_nursery() as nursery:
                # Signal handlers can be set only from the main thread, and Windows has no SIGHUP.
                main = threading.current_thread() is threading.main_thread()
                if hasattr(signal, "SIGHUP") and main:
                    await nursery.start(self._signals)
                nursery.start_soon(self._poll)
                store = self.state.usage
                if store.shares_config:
                    # The configs shared since the store was opened (before this process
                    # could listen); the file it loaded holds the ones before.
                    self.shared_version = store.config_at_open
                    nursery.start_soon(self._follow)
                task_status.started()

    async def _signals(self, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGHUP) as signals:
            task_status.started()
            async for _ in signals:
                await self.reload(SIGHUP)

    async def _poll(self) -> None:
        while True:
            await trio.sleep(POLL_SECONDS)
            stat = await trio.to_thread.run_sync(_stat, self.path)
            if stat != self.seen:
                retry = not (self.failed_once and stat == self.failing)
                await self.reload(FILE_CHANGE, stat, quiet=retry)

    async def share(self, raw: dict[str, object]) -> str | None:
        """Publish a config this worker just wrote and applied to every other node; a warning
        when the store could not take it (the config serves here all the same)."""
        store = self.state.usage
        if not store.shares_config:
            return None
        # The very bytes config_store.write put in the file, so a node that has them skips them.
        text = (msgspec.json.format(msgspec.json.encode(raw), indent=2) + b"\n").decode()
        try:
            await store.publish_config(text, self.origin)
        except Exception as error:
            logger.error("config not shared with the other nodes: %s", error)
            return f"not shared with the other nodes: {type(error).__name__}"
        return None

    async def _follow(self) -> None:
        """Apply each config another worker or node shares, for as long as the server runs."""
        store = self.state.usage
        while True:
            try:
                shared = await store.next_config(self.shared_version)
            except Exception as error:  # the database is away: the node keeps its config
                logger.warning("cannot read the shared config: %s", error)
                await trio.sleep(POLL_SECONDS * 4)
                continue
            self.shared_version = shared.version
            if shared.origin != self.origin:
                await self._adopt(shared)

    async def _adopt(self, shared: SharedConfig) -> None:
        """Write a shared config to this node's file, checked as a POST is, then apply it."""
        state, path = self.state, self.path
        initial = state.initial
        loader = api_loader(initial.transformers, path.parent, initial.config.TRANSFORMERS_DIR)

        def check(config: Config) -> None:
            Transformers(config, path.parent, loader)  # names only: no code is imported
            problems = check_applied(config, initial.router.hook, path.parent)
            if problems:
                raise ConfigError(config_store.SOURCE, problems)

        def write() -> None:
            body = shared.body.encode()
            try:
                if path.read_bytes() == body:
                    return  # another worker of this node wrote it already
            except OSError:
                pass
            # The node that shared it decided about removed keys (allow_no_auth there).
            config_store.write(
                path,
                body,
                dict(os.environ),
                state.runtime.loaded,
                started=initial.loaded,
                allow_no_auth=True,
                check=check,
            )

        try:
            await trio.to_thread.run_sync(write)
        except (ConfigError, TransformerConfigError, OSError) as error:
            logger.error(
                "shared config %d not written to %s: %s; the previous config keeps serving",
                shared.version,
                path,
                "; ".join(error.problems) if isinstance(error, ConfigError) else error,
            )
            return
        await self.reload(SHARED)

    async def reload(self, trigger: str, stat: Stat = None, *, quiet: bool = False) -> Outcome:
        """Reads the file and applies it; a failure is logged unless ``quiet``, when the
        watcher retries at its next poll."""
        async with self.lock:
            if stat is None:
                stat = await trio.to_thread.run_sync(_stat, self.path)
            try:
                loaded = await trio.to_thread.run_sync(self._load)
                outcome = await self._apply(loaded, trigger)
            except Refused as error:
                if quiet:
                    self.failing, self.failed_once = stat, True
                    return Outcome(False, "")
                logger.error(
                    "config not applied (%s): %s; the previous config keeps serving",
                    trigger,
                    "; ".join(error.problems),
                )
                outcome = Outcome(False, "; ".join(error.problems))
            self.seen, self.failed_once = stat, False
            return outcome

    def _load(self) -> tuple[LoadedConfig, tuple[Runtime, Settings] | None]:
        try:
            loaded = load(self.path)
        except ConfigError as error:
            raise Refused(error.problems) from None
        if loaded.raw == self.state.runtime.loaded.raw:
            return loaded, None
        return loaded, build(self.state, loaded)

    async def _apply(
        self, prepared: tuple[LoadedConfig, tuple[Runtime, Settings] | None], trigger: str
    ) -> Outcome:
        loaded, built = prepared
        restart = fixed_changes(self.state, loaded)
        if built is None:
            if trigger == SIGHUP:
                logger.info("config unchanged (%s)", trigger)
            return Outcome(True, "applied (nothing changed)", restart, loaded.warnings)
        runtime, settings = built
        if runtime.router.needs_token_count:
            await trio.to_thread.run_sync(encoding)  # before the swap: no request waits for it
        old = self.state.runtime
        self.state.runtime = runtime
        self.state.upstream.configure(settings)
        summary = changes(old.config, runtime.config) or ["no setting changed"]
        logger.info("config applied (%s): %s", trigger, "; ".join(summary))
        if restart:
            logger.warning(
                "config: %s take effect only at a restart; the rest is applied",
                ", ".join(restart),
            )
        for warning in loaded.warnings:
            if warning not in old.loaded.warnings:
                logger.warning("config: %s", warning)
        self._relog(old.config, runtime.config)
        return Outcome(True, f"applied ({'; '.join(summary)})", restart, loaded.warnings)

    def _relog(self, old: Config, new: Config) -> None:
        """The log follows the config: its level, whether a file is written, and every secret
        to redact (a key rotated out stays redacted too)."""
        secrets = self.state.log_secrets
        added = set(config_secrets(new)) - secrets
        secrets |= added
        if added or (old.LOG, old.LOG_LEVEL) != (new.LOG, new.LOG_LEVEL):
            logs.setup(
                enabled=new.LOG,
                level=new.LOG_LEVEL,
                directory=self.state.data_dir / "logs",
                secrets=secrets,
            )

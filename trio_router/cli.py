"""The ``trio-router`` command: ``start`` serves the router, ``check-config`` checks a config,
``code`` runs Claude Code through it."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .config import DEFAULT_HOST, DEFAULT_PORT, ConfigError, LoadedConfig, load

LOOPBACK = "127.0.0.1"
APP_PATH = "trio_router.app:create_app()"
# A taken port: EADDRINUSE, or WSAEADDRINUSE (10048) from Windows sockets.
_IN_USE = {errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", errno.EADDRINUSE)}

DESCRIPTION = """\
An Anthropic Messages API gateway: Claude Code and the anthropic SDKs send POST /v1/messages
to it, and it routes each request to the provider and model the config's Router rules choose:
OpenRouter or any OpenAI-compatible API, DeepSeek, Gemini, or an Anthropic-compatible one."""

EPILOG = """\
examples:
  trio-router start                          serve on 127.0.0.1:3456 (./config.json, if any)
  trio-router start --config ~/router.json --port 8080 --workers 4
  trio-router check-config                   list every problem of ./config.json, or say OK
  trio-router code                           run Claude Code through the router (started if needed)

The config file is found at --config, else $CONFIG_PATH, else ./config.json; without one the
router starts with no providers. A .env beside the config, then one in the current directory,
sets variables that the config uses as $NAME or ${NAME}; the environment wins over both.
Then point Claude Code at it: ANTHROPIC_BASE_URL=http://127.0.0.1:3456 claude"""


def _load(path: str | None) -> tuple[LoadedConfig, list[str]]:
    """The config, checked as a start would check it, and what it asks for that is not done."""
    loaded = load(Path(path).expanduser() if path else None)
    # Import here: building transformers checks their names and custom files.
    from . import custom_router
    from .app import build_transformers
    from .state import upstream_settings

    transformers = build_transformers(loaded)
    custom_router.build(loaded)
    upstream_settings(loaded)
    return loaded, [*loaded.warnings, *transformers.warnings]


def check_config(args: argparse.Namespace) -> int:
    try:
        loaded, warnings = _load(args.config)
    except ConfigError as error:
        print(error.report(), file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    where = loaded.path or "built-in default (no config file found)"
    config = loaded.config
    route = (
        f"default route {config.Router.default}" if config.Router.default else "no default route"
    )
    print(f"OK: {where}: {_count(len(config.Providers), 'provider')}, {route}")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def bind_host(host: str, api_key: str, admin_key: str = "") -> tuple[str, str | None]:
    """The host to bind, and a warning when the requested one was refused.

    Without ``APIKEY`` the Messages API is open, so only this machine may reach it; an
    ``ADMIN_KEY`` alone protects only ``/api/*`` and does not change that.
    """
    if not api_key and host != LOOPBACK:
        alone = " (ADMIN_KEY alone leaves /v1/* open)" if admin_key else ""
        return LOOPBACK, (
            f"no APIKEY is set, so the server binds to {LOOPBACK} instead of {host}{alone}: "
            "set APIKEY in the config to accept connections from other machines"
        )
    return host, None


def bind_problem(hc: Any, host: str, port: int) -> str | None:
    """Why hypercorn cannot listen where ``hc`` says, found before it starts serving.

    hypercorn binds inside ``run()``, where a taken port ends in a traceback. Its own
    ``create_sockets`` binds here with the very options ``run()`` will use (SO_REUSEADDR, and
    SO_REUSEPORT with several workers); the sockets are closed at once, never having listened.
    """
    try:
        sockets = hc.create_sockets()
    except OSError as error:  # socket.gaierror too, for a host name that does not resolve
        if error.errno in _IN_USE:
            return (
                f"port {port} on {host} is already in use (another trio-router?): "
                "stop that program, or choose another port with --port or PORT"
            )
        return f"cannot listen on {hc.bind[0]}: {error.strerror or error}"
    for sock in [*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets]:
        sock.close()
    return None


def serve_workers(hc: Any) -> int:
    """hypercorn's multi-worker loop (``hypercorn.run.run``), except for SIGHUP.

    hypercorn's master answers SIGHUP by stopping every worker and starting new ones, which cuts
    each stream still open after ``graceful_timeout``. Here it is forwarded to every worker,
    which applies the config file live (reload.py). Workers are spawned, so they inherit what
    the master ignores: SIGINT (Ctrl-C stops them through the shutdown event, as in hypercorn)
    and SIGHUP until a worker listens for it, so that an early one does not end it.
    """
    from multiprocessing import get_context
    from multiprocessing.connection import wait

    from hypercorn.trio.run import trio_worker

    sockets = hc.create_sockets()
    context = get_context("spawn")
    stop = context.Event()
    workers: list[Any] = []
    inherited = [getattr(signal, name) for name in ("SIGINT", "SIGHUP") if hasattr(signal, name)]

    def shutdown(*_: Any) -> None:
        stop.set()

    def forward(*_: Any) -> None:
        for worker in workers:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGHUP)

    for name in ("SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), shutdown)
    code = 0
    while not stop.is_set():
        for number in inherited:
            signal.signal(number, signal.SIG_IGN)
        while len(workers) < hc.workers:
            worker = context.Process(
                target=trio_worker,
                kwargs={"config": hc, "shutdown_event": stop, "sockets": sockets},
            )
            worker.start()
            workers.append(worker)
        signal.signal(signal.SIGINT, shutdown)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, forward)
        wait([worker.sentinel for worker in workers])
        for worker in [worker for worker in workers if worker.exitcode is not None]:
            workers.remove(worker)
            code = code or worker.exitcode
        if code:
            stop.set()  # a worker failed: stop them all, as hypercorn does
    for worker in workers:
        worker.join()  # each finishes its requests, up to graceful_timeout
    for sock in [*sockets.secure_sockets, *sockets.insecure_sockets]:
        sock.close()
    return code


def start(args: argparse.Namespace) -> int:
    if args.host:
        os.environ["HOST"] = args.host
    if args.port:
        os.environ["PORT"] = str(args.port)
    try:
        loaded, _ = _load(args.config)  # create_app logs the warnings
    except ConfigError as error:
        print(error.report(), file=sys.stderr)
        return 1
    config = loaded.config
    if loaded.path is not None:
        # Worker processes load the app themselves, from the same file.
        os.environ["CONFIG_PATH"] = str(loaded.path)
    host, warning = bind_host(config.HOST or DEFAULT_HOST, config.APIKEY, config.ADMIN_KEY)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)

    from hypercorn.config import Config as HypercornConfig
    from hypercorn.run import run

    from .state import data_dir

    hc = HypercornConfig()
    hc.application_path = APP_PATH
    hc.bind = [f"[{host}]:{config.PORT}" if ":" in host else f"{host}:{config.PORT}"]
    hc.worker_class = "trio"
    hc.workers = 0 if args.workers == 1 and not args.reload else args.workers
    hc.use_reloader = args.reload
    hc.accesslog = None  # the router logs one line per request itself
    hc.keep_alive_timeout = 75  # above nginx's default upstream keepalive_timeout of 60 s
    # hypercorn's default backlog of 100 resets connections when a thousand clients connect
    # at once; the kernel caps it at net.core.somaxconn anyway.
    hc.backlog = 4096
    hc.graceful_timeout = 10
    problem = bind_problem(hc, host, config.PORT)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    where = loaded.path or "built-in default (no config file found)"
    print(
        f"trio-router {__version__} listening on http://{hc.bind[0]} "
        f"({args.workers} worker{'s' if args.workers != 1 else ''}, config: {where}, "
        f"logs and usage: {data_dir(loaded)})",
        file=sys.stderr,
        flush=True,
    )
    if hc.workers > 1 and not args.reload:
        return serve_workers(hc)
    if hasattr(signal, "SIGHUP"):
        # Until the worker listens for it (reload.py), a SIGHUP must not end the process.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return run(hc)


def code(claude_args: list[str]) -> int:
    """``trio-router code``: every argument is Claude Code's; the config is $CONFIG_PATH's."""
    try:
        loaded, _ = _load(None)
    except ConfigError as error:
        print(error.report(), file=sys.stderr)
        return 1
    from . import launcher
    from .state import data_dir

    return launcher.run(loaded, data_dir(loaded) / "logs" / "code-router.log", claude_args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["code"]:
        # Not argparse: Claude Code's own options (-p, --model ...) pass through untouched.
        return code(argv[1:])
    parser = argparse.ArgumentParser(
        prog="trio-router",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"trio-router {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = "the config file (default: $CONFIG_PATH, else ./config.json)"

    start_parser = commands.add_parser(
        "start",
        help="serve the router",
        description="Serve the router until Ctrl-C. Warnings and errors (at the config's "
        "LOG_LEVEL) are printed here, one line each; every request is logged to "
        "logs/trio-router.log in the data directory, which also holds usage.sqlite3: "
        "$TRIO_ROUTER_DATA_DIR, else beside the config file, else a per-user directory "
        "(printed at start).",
    )
    start_parser.add_argument("--config", metavar="FILE", help=config_help)
    start_parser.add_argument(
        "--host",
        help=f"the address to listen on (default: $HOST, else the config's HOST, else "
        f"{DEFAULT_HOST}); any other than {LOOPBACK} needs an APIKEY in the config",
    )
    start_parser.add_argument(
        "--port",
        type=int,
        help=f"the port to listen on (default: $PORT, else the config's PORT, else {DEFAULT_PORT})",
    )
    start_parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="worker processes (default: 1)"
    )
    start_parser.add_argument(
        "--reload", action="store_true", help="restart when the code changes (development)"
    )
    start_parser.set_defaults(func=start)

    check_parser = commands.add_parser(
        "check-config",
        help="check a config file and list every problem",
        description="Check a config file as start would (its JSON, types, routes, $VARs and "
        "transformers) and list every problem with its place, e.g. Providers[1].api_base_url; "
        "exit 0 when it is fine, 1 when not.",
    )
    check_parser.add_argument("--config", metavar="FILE", help=config_help)
    check_parser.set_defaults(func=check_config)

    commands.add_parser(
        "code",
        help="run Claude Code (`claude`) through the router, starting one if none is listening",
        description="trio-router code [claude's arguments]: runs `claude` ($CLAUDE_PATH, else "
        "the one on PATH) with ANTHROPIC_BASE_URL set to the router of $CONFIG_PATH (else "
        "./config.json), its APIKEY as ANTHROPIC_AUTH_TOKEN (unless that is set already) and "
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1. When no router answers there, one is "
        "started for the run (log: logs/code-router.log in the data directory) and stopped "
        "after it. Every argument after `code` is passed to claude.",
    )

    args = parser.parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

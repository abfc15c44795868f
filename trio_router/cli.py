"""The ``trio-router`` command: ``start`` serves the router, ``check-config`` checks a config,
``code`` runs Claude Code through it."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from . import __version__
from .config import DEFAULT_HOST, DEFAULT_PORT, ConfigError, LoadedConfig, load

LOOPBACK = "127.0.0.1"
# Set by the Docker image: there 127.0.0.1 is the container's own, unreachable from outside, so
# falling back to it without an APIKEY would be a silent failure; refuse to start instead.
REQUIRE_APIKEY_VARIABLE = "TRIO_ROUTER_REQUIRE_APIKEY"
APP_PATH = "trio_router.app:create_app()"

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
    from .store import check_url

    check_url(loaded.config.STORE_URL)  # a database that cannot be reached: exit 1, no traceback
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


def _workers(text: str) -> int:
    from .workers import worker_count

    try:
        return worker_count(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


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
    if warning and os.environ.get(REQUIRE_APIKEY_VARIABLE) == "1":
        print(
            f"error: HOST is {config.HOST} but no APIKEY is set, and {REQUIRE_APIKEY_VARIABLE}=1 "
            f"forbids falling back to {LOOPBACK}, which nothing outside this container reaches: "
            'set APIKEY in the config (e.g. "APIKEY": "$APIKEY" and docker run -e APIKEY=...)',
            file=sys.stderr,
        )
        return 1
    if warning:
        print(f"warning: {warning}", file=sys.stderr)

    from hypercorn.config import Config as HypercornConfig

    from . import workers
    from .logs import LOG_FILE
    from .state import data_dir

    drain = config.DRAIN_TIMEOUT_MS / 1000
    hc = HypercornConfig()
    hc.application_path = APP_PATH
    hc.bind = [f"[{host}]:{config.PORT}" if ":" in host else f"{host}:{config.PORT}"]
    hc.worker_class = "trio"
    hc.workers = args.workers
    hc.use_reloader = args.reload
    hc.accesslog = None  # the router logs one line per request itself
    hc.keep_alive_timeout = 75  # above nginx's default upstream keepalive_timeout of 60 s
    # hypercorn's default backlog of 100 resets connections when a thousand clients connect
    # at once; the kernel caps it at net.core.somaxconn anyway.
    hc.backlog = 4096
    # Only --reload serves with hypercorn's own loop: it must not cut streams before the drain.
    hc.graceful_timeout = drain + workers.CLOSE_SECONDS
    try:
        sockets = workers.listen(host, config.PORT, 1 if args.reload else args.workers, hc.backlog)
    except workers.BindError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    where = loaded.path or "built-in default (no config file found)"
    print(
        f"trio-router {__version__} listening on http://{hc.bind[0]} "
        f"({args.workers} worker{'s' if args.workers != 1 else ''}, config: {where}, "
        f"logs and usage: {data_dir(loaded)})",
        file=sys.stderr,
        flush=True,
    )
    if args.reload:
        from hypercorn.run import run

        for sock in sockets:  # the port was free; hypercorn binds it itself
            sock.close()
        hc.workers = max(args.workers, 1)
        return run(hc)
    if len(sockets) > 1:
        return workers.serve_workers(hc, sockets, drain, data_dir(loaded) / "logs" / LOG_FILE)
    if hasattr(signal, "SIGHUP"):
        # Until the worker listens for it (reload.py), a SIGHUP must not end the process.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    workers.serve(hc, sockets[0], drain)
    return 0


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
        description="Serve the router until Ctrl-C or SIGTERM, which drain it: no new "
        "connection, open streams go on for DRAIN_TIMEOUT_MS at most. Warnings and errors "
        "(at the config's "
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
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="worker processes, or `auto` for one per core this process may use (default: 1)",
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

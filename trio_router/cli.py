"""The ``trio-router`` command: ``start`` serves the router, ``check-config`` checks a config."""

from __future__ import annotations

import argparse
import errno
import os
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

The config file is found at --config, else $CONFIG_PATH, else ./config.json; without one the
router starts with no providers. A .env beside the config, then one in the current directory,
sets variables that the config uses as $NAME or ${NAME}; the environment wins over both.
Then point Claude Code at it: ANTHROPIC_BASE_URL=http://127.0.0.1:3456 claude"""


def _load(path: str | None) -> LoadedConfig:
    loaded = load(Path(path).expanduser() if path else None)
    # Import here: building transformers checks their names and custom files.
    from .app import build_transformers

    build_transformers(loaded)
    return loaded


def check_config(args: argparse.Namespace) -> int:
    try:
        loaded = _load(args.config)
    except ConfigError as error:
        print(error.report(), file=sys.stderr)
        return 1
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


def start(args: argparse.Namespace) -> int:
    if args.host:
        os.environ["HOST"] = args.host
    if args.port:
        os.environ["PORT"] = str(args.port)
    try:
        loaded = _load(args.config)
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
    return run(hc)


def main(argv: list[str] | None = None) -> int:
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

    args = parser.parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

"""``trio-router start`` and ``trio-router check-config``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .config import DEFAULT_HOST, ConfigError, LoadedConfig, load

LOOPBACK = "127.0.0.1"
APP_PATH = "trio_router.app:create_app()"


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
    print(f"{where}: OK ({len(config.Providers)} providers, default route {config.Router.default})")
    return 0


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
    where = loaded.path or "built-in default (no config file found)"
    print(
        f"trio-router {__version__} listening on http://{hc.bind[0]} "
        f"({args.workers} worker{'s' if args.workers != 1 else ''}, config: {where})",
        file=sys.stderr,
        flush=True,
    )
    return run(hc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trio-router", description=__doc__)
    parser.add_argument("--version", action="version", version=f"trio-router {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    start_parser = commands.add_parser("start", help="serve the router")
    start_parser.add_argument(
        "--config", help="config file (default: $CONFIG_PATH or ./config.json)"
    )
    start_parser.add_argument("--host", help="address to bind (overrides HOST)")
    start_parser.add_argument("--port", type=int, help="port to bind (overrides PORT)")
    start_parser.add_argument("--workers", type=int, default=1, help="worker processes")
    start_parser.add_argument("--reload", action="store_true", help="restart on code changes")
    start_parser.set_defaults(func=start)

    check_parser = commands.add_parser("check-config", help="validate a config file")
    check_parser.add_argument(
        "--config", help="config file (default: $CONFIG_PATH or ./config.json)"
    )
    check_parser.set_defaults(func=check_config)

    args = parser.parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

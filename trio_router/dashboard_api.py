"""The ``/api/*`` views the dashboard draws beyond the management API: usage over time, recent
errors, open streams, and the config's backups.

Behind the same check as every ``/api/*`` route (keys.check_path): the admin key, or the
dashboard's session cookie.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any, Final, Literal, cast

import msgspec
import trio
from quart import Response, request
from quart_trio import QuartTrio

from . import config_store
from .config import ConfigError, decode_json, default_config_path
from .errors import InvalidRequestError, NotFoundError, RouterError
from .reliability import Reliability
from .state import State

_BUCKETS: Final = {"hour": 3600, "day": 86400}
_GROUPS: Final = ("provider", "model", "key", "user")
# A chart's width in buckets, at most: 62 days of hours, ten years of days.
_MAX_BUCKETS: Final = 62 * 24
_DEFAULT_SPAN: Final = {"hour": 86400, "day": 30 * 86400}
ERRORS_DEFAULT: Final = 50
ERRORS_MAX: Final = 1000  # what the store keeps at least (Store.recent_errors)


def _json(data: Any) -> Response:
    return Response(msgspec.json.encode(data), content_type="application/json")


def _time(name: str, value: str) -> float:
    """A query time: unix seconds, or ISO 8601 with a time zone."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidRequestError(
            f"{name}: {value!r} is neither unix seconds nor an ISO 8601 time with a time zone"
        )
    return parsed.timestamp()


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidRequestError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return value


def register(app: QuartTrio, state: State, reliability: Reliability) -> None:
    store = state.usage

    @app.get("/api/usage/timeline")
    async def timeline() -> Response:
        args = request.args
        bucket = _choice("bucket", args.get("bucket", "hour"), tuple(_BUCKETS))
        by = _choice("by", args.get("by", "provider"), _GROUPS)
        until = _time("until", args["until"]) if "until" in args else time.time()
        since = _time("since", args["since"]) if "since" in args else until - _DEFAULT_SPAN[bucket]
        if since >= until:
            raise InvalidRequestError("since: must be before until")
        if (until - since) / _BUCKETS[bucket] > _MAX_BUCKETS:
            raise InvalidRequestError(
                f"since, until: at most {_MAX_BUCKETS} buckets of a {bucket} per request"
            )
        rows = await store.timeline(
            since,
            until,
            cast(Literal["hour", "day"], bucket),
            cast(Literal["provider", "model", "key", "user"], by),
            key_id=args.get("key") or None,
            user=args.get("user") or None,
        )
        return _json({"bucket": bucket, "by": by, "since": since, "until": until, "rows": rows})

    @app.get("/api/errors/recent")
    async def recent_errors() -> Response:
        raw = request.args.get("limit", str(ERRORS_DEFAULT))
        if not raw.isdigit() or not 1 <= int(raw) <= ERRORS_MAX:
            raise InvalidRequestError(
                f"limit: {raw!r} is not a whole number from 1 to {ERRORS_MAX}"
            )
        return _json({"errors": await store.recent_errors(int(raw))})

    @app.get("/api/streams")
    async def streams() -> Response:
        # Per worker: each worker process counts its own upstream requests (messages.py); the
        # whole gateway's figure is /metrics' gauge, summed over workers.
        return _json(
            {
                "open": reliability.open,
                "scope": "worker",
                "worker": os.getpid(),
                "max": state.runtime.config.MAX_OPEN_STREAMS,
            }
        )

    def _path() -> Any:
        return state.runtime.loaded.path or default_config_path().resolve()

    @app.get("/api/config/backups")
    async def backups() -> Response:
        def listing() -> list[dict[str, Any]]:
            found = []
            for entry in reversed(config_store.backups(_path())):
                info = entry.stat()
                found.append({"name": entry.name, "at": info.st_mtime, "bytes": info.st_size})
            return found

        return _json({"backups": await trio.to_thread.run_sync(listing)})

    @app.get("/api/config/backups/<name>")
    async def backup(name: str) -> Response:
        def masked() -> Any:
            # Only a name the listing has: no request path reaches the file system.
            for entry in config_store.backups(_path()):
                if entry.name == name:
                    return config_store.masked(decode_json(entry.read_bytes(), entry.name))
            raise NotFoundError(f"no config backup {name!r}")

        try:
            return _json(await trio.to_thread.run_sync(masked))
        except ConfigError as error:
            raise RouterError(f"the backup cannot be shown: {error}") from None

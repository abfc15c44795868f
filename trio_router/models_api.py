"""``GET /v1/models`` and ``GET /v1/models/:id``: what this gateway serves, in Anthropic's shape.

Claude Code's ``/model`` picker and the SDKs' ``models.list()`` read it. Each configured
``provider,model`` is one entry, whose id a client sends back as ``model`` to choose that route
explicitly; the display name says which ``Router`` rules use it. A client key sees only the
models it may use. Shape and pagination as Anthropic documents them
(https://docs.anthropic.com/en/api/models-list): ``data``, ``has_more``, ``first_id``,
``last_id``; ``limit`` 1..1000 (default 20), ``after_id`` / ``before_id``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from .config import RULES, Config
from .errors import InvalidRequestError, NotFoundError
from .keys import PermissionDenied, permit
from .providers.base import Route
from .state import State
from .store import ClientKey

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


def _targets(value: Any) -> list[str]:
    """A rule's targets: one ``"provider,model"``, or a fallback list of them."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def entries(config: Config, key: ClientKey | None, created_at: str) -> list[dict[str, Any]]:
    """Every ``provider,model`` of the config that ``key`` may use, in config order."""
    rules: dict[str, list[str]] = {}
    for rule in RULES:
        for target in _targets(getattr(config.Router, rule, None)):
            name, _, model = target.partition(",")
            rules.setdefault(f"{name.strip()},{model.strip()}", []).append(rule)
    found: list[dict[str, Any]] = []
    for provider in config.Providers:
        for model in provider.models:
            if key is not None:
                try:
                    permit(key, Route(provider=provider, model=model, reason="explicit"))
                except PermissionDenied:
                    continue
            model_id = f"{provider.name},{model}"
            used = rules.get(model_id)
            name = f"{model} ({provider.name})"
            found.append(
                {
                    "type": "model",
                    "id": model_id,
                    "display_name": f"{name}: {', '.join(used)}" if used else name,
                    "created_at": created_at,
                }
            )
    return found


def page(data: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    """One page of ``data`` as ``limit``, ``after_id`` and ``before_id`` ask."""
    raw_limit = args.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequestError(f"limit: must be an integer from 1 to {MAX_LIMIT}")
    after, before = args.get("after_id"), args.get("before_id")
    if after is not None and before is not None:
        raise InvalidRequestError("after_id and before_id cannot be used together")
    ids = [entry["id"] for entry in data]
    for name, cursor in (("after_id", after), ("before_id", before)):
        if cursor is not None and cursor not in ids:
            raise InvalidRequestError(f"{name}: no model with id {cursor!r}")
    if before is not None:
        end = ids.index(before)
        chosen = data[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        start = ids.index(after) + 1 if after is not None else 0
        chosen = data[start : start + limit]
        has_more = start + limit < len(data)
    return {
        "data": chosen,
        "has_more": has_more,
        "first_id": chosen[0]["id"] if chosen else None,
        "last_id": chosen[-1]["id"] if chosen else None,
    }


def _json(data: Any) -> Response:
    return Response(msgspec.json.encode(data), content_type="application/json")


def register(app: QuartTrio, state: State) -> None:
    async def visible() -> list[dict[str, Any]]:
        runtime = state.runtime
        headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in request.headers.items()]
        # Authenticated already (check_auth); asked again for who it is, from the cache.
        key = await state.access.client(headers, runtime.api_key)
        created = datetime.fromtimestamp(runtime.created_at, UTC).isoformat()
        return entries(runtime.config, key, created.replace("+00:00", "Z"))

    @app.get("/v1/models")
    async def list_models() -> Response:
        return _json(page(await visible(), request.args))

    @app.get("/v1/models/<path:model_id>")
    async def get_model(model_id: str) -> Response:
        for entry in await visible():
            if entry["id"] == model_id:
                return _json(entry)
        raise NotFoundError(f"model: {model_id!r} is not served by this gateway")

"""``/api/keys`` and ``/api/usage/keys|users``: the operator's side of client keys.

Behind the same check as every ``/api/*`` route (``ADMIN_KEY``, else ``APIKEY``; a client key
is a 403 there). A change made through one worker is seen by that worker at once and by the
others within ``keys.CACHE_SECONDS``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from . import keys
from .errors import NotFoundError
from .state import State


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status=status, content_type="application/json")


def _no_key(key_id: str) -> NotFoundError:
    return NotFoundError(f"no API key with id {key_id!r}")


def register(app: QuartTrio, state: State) -> None:
    store, access = state.usage, state.access

    @app.before_serving
    async def start_heartbeat() -> None:
        app.nursery.start_soon(state.limits.heartbeat)

    @app.post("/api/keys")
    async def create_key() -> Response:
        spec: keys.NewKey = keys.decode_body(await request.body, keys.NewKey, "key")
        key, secret = keys.new_key(spec)
        await store.create_key(key)
        access.forget()
        # The only time the secret is shown: it is stored as a hash.
        return _json({**keys.public(key), "key": secret}, status=201)

    @app.get("/api/keys")
    async def list_keys() -> Response:
        return _json({"keys": [keys.public(key) for key in await store.keys()]})

    @app.get("/api/keys/<key_id>")
    async def get_key(key_id: str) -> Response:
        key = await store.key(key_id)
        if key is None:
            raise _no_key(key_id)
        return _json(keys.public(key))

    @app.patch("/api/keys/<key_id>")
    async def patch_key(key_id: str) -> Response:
        patch: keys.KeyPatch = keys.decode_body(await request.body, keys.KeyPatch, "key change")
        key = await store.update_key(key_id, patch.changes())
        if key is None:
            raise _no_key(key_id)
        access.forget()
        return _json(keys.public(key))

    @app.delete("/api/keys/<key_id>")
    async def delete_key(key_id: str) -> Response:
        if not await store.delete_key(key_id):
            raise _no_key(key_id)
        access.forget()
        return _json({"success": True, "id": key_id})

    @app.get("/api/usage/keys/<key_id>")
    async def key_usage(key_id: str) -> Response:
        found = await store.key_usage(key_id)
        if found is None:
            raise _no_key(key_id)
        return _json(found)

    @app.get("/api/usage/users/<user>")
    async def user_usage(user: str) -> Response:
        found = await store.user_usage(user)
        if found is None:
            raise NotFoundError(f"no API key or usage for user {user!r}")
        return _json(found)

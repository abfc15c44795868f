"""API-key authentication for ``/v1/*`` and ``/api/*``.

Accepts ``Authorization: Bearer KEY`` (Claude Code's ``ANTHROPIC_AUTH_TOKEN``) and ``x-api-key``
(``ANTHROPIC_API_KEY``), compared in constant time. Clients hold ``APIKEY``; the management API
takes ``ADMIN_KEY`` when one is set, so that a client key cannot rewrite the config.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from .errors import AuthenticationError


def key_for(path: str, api_key: str, admin_key: str) -> str:
    """The key that opens ``path``; empty when the path is open."""
    if path == "/api" or path.startswith("/api/"):
        return admin_key or api_key
    if path == "/v1" or path.startswith("/v1/"):
        return api_key
    return ""


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"x-api-key":
            return value.strip()
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].strip()
    return None


def check(headers: Iterable[tuple[bytes, bytes]], api_key: bytes) -> None:
    """Raise AuthenticationError unless the request carries ``api_key``."""
    key = presented_key(headers)
    if key is None:
        raise AuthenticationError(
            "missing API key: send it as 'x-api-key: KEY' or 'Authorization: Bearer KEY'"
        )
    if not hmac.compare_digest(key, api_key):
        raise AuthenticationError("invalid API key")

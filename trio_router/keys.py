"""Client keys: who may call ``/v1/*``, how they are made, and how each worker checks them.

A key is ``tr-`` and 32 random bytes (URL-safe base64), shown once when it is made. The store
keeps only its SHA-256: the secret has 256 bits of entropy, so a fast hash is as safe as a slow
one would be for a password, and it costs a microsecond per request.

Each worker caches what a lookup found (or that it found nothing) for ``CACHE_SECONDS``: a
revocation, a disable or a new limit reaches every worker within that time, and a key in use
costs one store read per worker per period instead of one per request. The cache is consulted
once per request, never per chunk.

``APIKEY`` keeps working as it always did. Once any client key exists, ``/v1/*`` needs a key
even when ``APIKEY`` is empty: making a key is the operator saying who may use the gateway, and
a gateway that stayed open to everyone beside its keys would make every key's limits void.

The dashboard's session cookie (``SESSION_COOKIE``) opens ``/ui`` and ``/api`` like the admin key
does, checked here with nothing stored (any worker, any node); a mutating request it
authenticates must also carry ``CSRF_HEADER``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import trio

from . import auth
from .config import Config
from .errors import AuthenticationError, InvalidRequestError, RouterError
from .providers.base import Route
from .store import ClientKey, KeyChanges, Limits, Store

SECRET_PREFIX = "tr-"
SECRET_BYTES = 32
# What a human sees of a key in listings and logs: enough to tell keys apart, useless to guess.
VISIBLE_CHARS = 8
CACHE_SECONDS = 0.5
CACHE_ENTRIES = 4096  # distinct keys (and wrong keys) remembered per worker, at most

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Text = Annotated[str, msgspec.Meta(max_length=200)]
Target = Annotated[str, msgspec.Meta(min_length=1, max_length=400)]
Targets = Annotated[list[Target], msgspec.Meta(max_length=1000)]
When = Annotated[datetime, msgspec.Meta(tz=True)]


class PermissionDenied(RouterError):
    status = 403
    error_type = "permission_error"


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /api/keys``."""

    name: Name
    user: Text = ""
    limits: Limits = Limits()
    # "provider,model" or "provider" (every model of it); None: any route.
    routes: Targets | None = None
    # The upstream model names it may use, whatever the provider; None: any.
    models: Targets | None = None
    expires_at: When | None = None
    disabled: bool = False


class KeyPatch(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``PATCH /api/keys/:id``: only the fields it names change (null clears
    ``routes``, ``models`` and ``expires_at``)."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    limits: Limits | msgspec.UnsetType = msgspec.UNSET
    routes: Targets | msgspec.UnsetType | None = msgspec.UNSET
    models: Targets | msgspec.UnsetType | None = msgspec.UNSET
    expires_at: When | msgspec.UnsetType | None = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET

    def changes(self) -> KeyChanges:
        expires: float | msgspec.UnsetType | None = msgspec.UNSET
        if self.expires_at is None:
            expires = None
        elif isinstance(self.expires_at, datetime):
            expires = self.expires_at.timestamp()
        return KeyChanges(
            name=self.name,
            limits=self.limits,
            routes=self.routes,
            models=self.models,
            expires_at=expires,
            disabled=self.disabled,
        )


def decode_body(body: bytes, kind: type[Any], what: str) -> Any:
    """A JSON body as ``kind``; any problem is a 400 naming the field, as msgspec finds it."""
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise InvalidRequestError(f"invalid {what}: {error}") from None
    except RecursionError:
        raise InvalidRequestError(f"invalid {what}: nested too deeply") from None


def hash_secret(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


def new_key(spec: NewKey) -> tuple[ClientKey, str]:
    """A new key and its secret, which exists nowhere else once the caller has shown it."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    key = ClientKey(
        id="key_" + secrets.token_hex(8),
        name=spec.name,
        user=spec.user,
        prefix=secret[: len(SECRET_PREFIX) + VISIBLE_CHARS],
        secret_hash=hash_secret(secret.encode()),
        limits=spec.limits,
        routes=spec.routes,
        models=spec.models,
        expires_at=spec.expires_at.timestamp() if spec.expires_at else None,
        disabled=spec.disabled,
        created_at=time.time(),
    )
    return key, secret


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")


def public(key: ClientKey) -> dict[str, Any]:
    """A key as ``/api/keys`` shows it: everything but the hash of its secret."""
    return {
        "id": key.id,
        "name": key.name,
        "user": key.user,
        "prefix": key.prefix,
        "limits": msgspec.to_builtins(key.limits),
        "routes": key.routes,
        "models": key.models,
        "expires_at": _iso(key.expires_at),
        "disabled": key.disabled,
        "created_at": _iso(key.created_at),
    }


def permit(key: ClientKey, route: Route) -> None:
    """403 unless ``key`` may use ``route``."""
    provider = route.provider.name
    if key.routes is not None and not (
        provider in key.routes or f"{provider},{route.model}" in key.routes
    ):
        raise PermissionDenied(f"this API key may not use {provider},{route.model}")
    if key.models is not None and route.model not in key.models:
        raise PermissionDenied(f"this API key may not use model {route.model!r}")


def _missing() -> AuthenticationError:
    return AuthenticationError(
        "missing API key: send it as 'x-api-key: KEY' or 'Authorization: Bearer KEY'"
    )


class Access:
    """One worker's view of the client keys, at most ``CACHE_SECONDS`` old."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._found: dict[str, tuple[float, ClientKey | None]] = {}
        self._any_keys: tuple[float, bool] = (float("-inf"), False)
        # The store reads in flight, by digest: when a key's entry expires, the requests that
        # arrive before the read returns wait for it instead of each reading the store (at 32
        # connections of one key that was a store read, and a thread trip, per request).
        self._reading: dict[str, trio.Event] = {}
        self._generation = 0  # bumped by forget(): a read begun before it is not cached

    def forget(self) -> None:
        """Drop the cache (this worker made a change, so it sees it at once)."""
        self._found.clear()
        self._any_keys = (float("-inf"), False)
        self._generation += 1

    async def lookup(self, secret: bytes) -> ClientKey | None:
        """The live key with this secret (disabled or expired included), from the cache when it
        is fresh. The store finds it by hash; the hash is then compared in constant time."""
        digest = hash_secret(secret)
        while True:
            now = time.monotonic()
            cached = self._found.get(digest)
            if cached is not None and cached[0] > now:
                return cached[1]
            reading = self._reading.get(digest)
            if reading is None:
                break
            await reading.wait()  # then the cache has it, unless that read failed or was stale
        reading = self._reading[digest] = trio.Event()
        generation = self._generation
        try:
            key = await self.store.key_by_hash(digest)
            if key is not None and not hmac.compare_digest(key.secret_hash, digest):
                key = None
            if generation == self._generation:
                if len(self._found) >= CACHE_ENTRIES:
                    self._found.clear()
                self._found[digest] = (now + CACHE_SECONDS, key)
            return key
        finally:
            del self._reading[digest]
            reading.set()

    async def any_keys(self) -> bool:
        now = time.monotonic()
        until, found = self._any_keys
        if until <= now:
            found = await self.store.has_keys()
            self._any_keys = (now + CACHE_SECONDS, found)
        return found

    async def client(
        self, headers: Iterable[tuple[bytes, bytes]], api_key: bytes
    ) -> ClientKey | None:
        """Who calls ``/v1/*``: a client key, or None for ``APIKEY`` (or an open gateway).

        401 for a missing, wrong, disabled or expired key. ``APIKEY`` is compared first, so
        its holders pay nothing for client keys.
        """
        presented = auth.presented_key(headers)
        if presented is not None:
            if api_key and hmac.compare_digest(presented, api_key):
                return None
            if presented.startswith(SECRET_PREFIX.encode()):
                key = await self.lookup(presented)
                if key is not None:
                    if key.disabled:
                        raise AuthenticationError("this API key is disabled")
                    if key.expires_at is not None and key.expires_at <= time.time():
                        raise AuthenticationError("this API key has expired")
                    return key
        if not api_key and not await self.any_keys():
            return None  # no key of any kind configured: open, as without APIKEY before
        if presented is None:
            raise _missing()
        raise AuthenticationError("invalid API key")

    async def check_path(
        self, path: str, headers: list[tuple[bytes, bytes]], config: Config, method: str
    ) -> None:
        """The check before every request Quart serves (``/api/*``, ``/ui/*``, ``/metrics``,
        ``count_tokens``).

        ``/api/*`` takes ``ADMIN_KEY`` (else ``APIKEY``) as before, or the dashboard's session
        cookie (with its CSRF header on a mutating request); a client key there is a 403: it is
        a valid key, for another door. ``/ui/*`` takes the same, and sends a browser without
        either to the login page. ``GET /metrics`` takes the admin key or ``METRICS_KEY``.
        ``/v1/*`` takes what ``/v1/messages`` takes.
        """
        if path == "/v1" or path.startswith("/v1/"):
            await self.client(headers, config.APIKEY.encode())
            return
        if path == "/metrics":
            _check_metrics(headers, config)
            return
        is_ui = path == "/ui" or path.startswith("/ui/")
        if is_ui and (path in UI_PUBLIC or path.startswith(UI_STATIC)):
            return
        needed = auth.key_for("/api" if is_ui else path, config.APIKEY, config.ADMIN_KEY)
        presented = auth.presented_key(headers)
        is_api = path == "/api" or path.startswith("/api/")
        if (
            is_api
            and presented is not None
            and presented.startswith(SECRET_PREFIX.encode())
            and not (needed and hmac.compare_digest(presented, needed.encode()))
            and await self.lookup(presented) is not None
        ):
            raise PermissionDenied("a client key cannot use the management API /api/*")
        if not needed:
            return
        if presented is None:
            cookie = session_cookie(headers)
            if cookie is not None and valid_session(cookie, needed, time.time()):
                if method not in SAFE_METHODS and not _csrf_ok(headers, cookie, needed):
                    raise PermissionDenied(
                        f"a {method} authenticated by the dashboard's session cookie must carry"
                        f" the '{CSRF_HEADER}' header the dashboard page gives"
                    )
                return
            if is_ui:
                raise LoginRequired()
        try:
            auth.check(headers, needed.encode())
        except AuthenticationError:
            if is_ui:
                raise LoginRequired() from None
            raise


# The dashboard's session: a cookie that proves its holder typed the admin key, checked by any
# worker or node with nothing stored. Its value is ``v1.<expiry>.<nonce>.<mac>``, the MAC an
# HMAC-SHA256 of the rest under a secret derived from the admin key, so a new admin key ends
# every session. The nonce makes each session's CSRF token its own.
SESSION_COOKIE = "trio_router_session"
SESSION_SECONDS = 12 * 3600
CSRF_HEADER = "x-trio-router-csrf"
_SESSION_VERSION = "v1"
# https://www.rfc-editor.org/rfc/rfc9110#section-9.2.1: the methods that change nothing.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What /ui serves without a session: the login form, the logout, and the static files (no data).
UI_LOGIN = "/ui/login"
UI_PUBLIC = frozenset({UI_LOGIN, "/ui/logout"})
UI_STATIC = "/ui/static/"


class LoginRequired(AuthenticationError):
    """A browser without a session on a ``/ui`` page: a 303 to the login page (RFC 9110
    section 15.4.4: the login form is fetched with GET whatever the method was)."""

    status = 303

    def __init__(self) -> None:
        super().__init__(f"log in at {UI_LOGIN} with the admin key", headers={"location": UI_LOGIN})


def _session_secret(admin_key: str) -> bytes:
    return hmac.new(admin_key.encode(), b"trio-router dashboard session", "sha256").digest()


def _mac(admin_key: str, message: str) -> str:
    return hmac.new(_session_secret(admin_key), message.encode(), "sha256").hexdigest()


def new_session(admin_key: str, now: float) -> str:
    """A session cookie's value, valid for ``SESSION_SECONDS`` from ``now``."""
    body = f"{_SESSION_VERSION}.{int(now) + SESSION_SECONDS}.{secrets.token_hex(16)}"
    return f"{body}.{_mac(admin_key, body)}"


def valid_session(value: str, admin_key: str, now: float) -> bool:
    """Whether ``value`` is a session this admin key made and it has not expired."""
    body, _, mac = value.rpartition(".")
    parts = body.split(".")
    if len(parts) != 3 or parts[0] != _SESSION_VERSION or not parts[1].isdigit():
        return False
    if not hmac.compare_digest(mac.encode(), _mac(admin_key, body).encode()):
        return False
    return int(parts[1]) > now


def session_expiry(value: str) -> int:
    """When a valid session ends (unix seconds)."""
    return int(value.split(".")[1])


def csrf_token(session: str, admin_key: str) -> str:
    """The header value a mutating request of this session must carry: a cross-site page
    cannot read it (it is only in the dashboard's own HTML) nor send a custom header without
    a CORS preflight, which the router never grants."""
    return _mac(admin_key, "csrf." + session)


def _csrf_ok(headers: Iterable[tuple[bytes, bytes]], session: str, admin_key: str) -> bool:
    expected = csrf_token(session, admin_key).encode()
    for name, value in headers:
        if name == CSRF_HEADER.encode():
            return hmac.compare_digest(value.strip(), expected)
    return False


def session_cookie(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The session cookie's value among the request's ``Cookie`` headers (RFC 6265 section
    5.4: ``name=value`` pairs separated by ``; ``)."""
    for name, value in headers:
        if name != b"cookie":
            continue
        for pair in value.decode("latin-1").split(";"):
            key, sep, found = pair.strip().partition("=")
            if sep and key == SESSION_COOKIE:
                return found.strip()
    return None


def _check_metrics(headers: Iterable[tuple[bytes, bytes]], config: Config) -> None:
    """``/metrics``: the admin key or ``METRICS_KEY``; open when neither exists."""
    accepted = [
        key.encode()
        for key in (auth.key_for("/api", config.APIKEY, config.ADMIN_KEY), config.METRICS_KEY)
        if key
    ]
    if not accepted:
        return
    presented = auth.presented_key(headers)
    if presented is None:
        raise _missing()
    # Every candidate is compared, so the time taken does not say which one was close.
    matches = [hmac.compare_digest(presented, key) for key in accepted]
    if not any(matches):
        raise AuthenticationError("invalid API key")

"""The store every worker shares: usage, client keys, and the counts their limits are enforced
with.

The rest of the code sees only :class:`Store` (async methods, plain msgspec structs in and out),
so the SQLite file of a single host and the PostgreSQL server of a scale-out (a later issue) are
interchangeable. Every operation that enforces a limit is one transaction over rows, never a
count held in one process, so it means the same thing with several workers or several hosts.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import trio

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class ProviderUsage(msgspec.Struct, rename="camel"):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    requests: int = 0
    # USD over the priced requests; None (JSON null) when none was priced, never a made-up 0.
    cost_usd: float | None = None
    unpriced_requests: int = 0  # requests whose model has no price (not in cost_usd)


class SessionUsage(msgspec.Struct, rename="camel"):
    session_id: str
    providers: dict[str, ProviderUsage]
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_requests: int = 0
    cost_usd: float | None = None  # over every provider; None when nothing was priced


class KeyProviderUsage(msgspec.Struct, rename="camel"):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    requests: int = 0
    errors: int = 0
    cost_usd: float | None = None
    unpriced_requests: int = 0


class KeyUsage(msgspec.Struct, rename="camel"):
    """A key's usage: the session view's shape, plus who, errors and refusals.

    ``providers`` holds routed requests; ``totalRequests`` and ``totalErrors`` also count the
    requests refused before routing (a limit, a forbidden route, a bad body), and
    ``rateLimited`` the 429s the key's limits gave.
    """

    key_id: str
    name: str
    user: str
    providers: dict[str, KeyProviderUsage]
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_requests: int = 0
    total_errors: int = 0
    rate_limited: int = 0
    cost_usd: float | None = None


class KeyName(msgspec.Struct):
    id: str
    name: str


class UserUsage(msgspec.Struct, rename="camel"):
    """A user's usage over all of their keys, in the key view's shape."""

    user: str
    keys: list[KeyName]
    providers: dict[str, KeyProviderUsage]
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_requests: int = 0
    total_errors: int = 0
    rate_limited: int = 0
    cost_usd: float | None = None


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A key's limits; a limit left out is no limit."""

    rpm: PositiveInt | None = None  # requests per minute (sliding)
    tpm: PositiveInt | None = None  # input + output tokens per minute (sliding)
    concurrent: PositiveInt | None = None  # requests open at once
    budget_tokens: PositiveInt | None = None  # input + output tokens per budget_period
    budget_period: Literal["day", "month"] = "day"  # UTC calendar day or month
    budget_usd: PositiveFloat | None = None  # USD per budget_period (priced requests only)

    @property
    def rated(self) -> bool:
        """A per-minute window to keep for this key."""
        return self.rpm is not None or self.tpm is not None

    @property
    def any(self) -> bool:
        return (
            self.rated
            or self.concurrent is not None
            or self.budget_tokens is not None
            or self.budget_usd is not None
        )


class ClientKey(msgspec.Struct):
    """A client key as stored: everything but its secret."""

    id: str
    name: str
    user: str
    prefix: str
    secret_hash: str
    limits: Limits
    routes: list[str] | None
    models: list[str] | None
    expires_at: float | None  # unix seconds
    disabled: bool
    created_at: float


class KeyChanges(msgspec.Struct):
    """What ``PATCH /api/keys/:id`` may change; UNSET leaves a field as it is."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    limits: Limits | msgspec.UnsetType = msgspec.UNSET
    routes: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    models: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    expires_at: float | msgspec.UnsetType | None = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


class RequestRecord(msgspec.Struct):
    """One request as it ended: what the usage views count and what its limits release."""

    session: str
    provider: str | None  # None: refused before it was routed
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read: int = 0
    key_id: str | None = None
    user: str = ""
    error: bool = False
    rate_limited: bool = False
    lease: str | None = None  # the concurrency lease to release
    rated: bool = False  # the key has a tpm window to add the tokens to
    model: str = ""  # the provider's model it was served by ("" before routing)
    cost_usd: float | None = None  # None: not priced (an unknown model), never counted as 0
    status: int = 200  # what the client got; 499 when it left first
    error_message: str = ""  # redacted, one line: what the recent-errors view shows
    ended_at: float = 0.0  # unix seconds; 0 = when the store records it


class TimelineRow(msgspec.Struct, rename="camel"):
    """One group's usage in one time bucket (the dashboard's charts)."""

    start: float  # unix seconds, the bucket's start (UTC hour or day)
    group: str  # the provider, model, key id or user, per ``by``
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float | None = None


class ErrorEntry(msgspec.Struct, rename="camel"):
    """A request that ended in an error, for the recent-errors view."""

    at: float
    status: int
    provider: str | None
    model: str
    key_id: str | None
    session: str
    message: str


class SharedConfig(msgspec.Struct):
    """A config applied on some node: the file's text as written (``$VAR``s unresolved)."""

    version: int
    body: str
    origin: str  # the worker that applied it (Reloader.origin)


class Refusal(msgspec.Struct):
    """Why a key may not start a request now, and when it may (``retry-after``)."""

    limit: str
    retry_after: int


class Store(abc.ABC):
    """What the gateway keeps across requests, workers and restarts."""

    # Usage per session and provider (``/api/usage``, ``/api/usage/sessions*``).

    @abc.abstractmethod
    async def record(self, entry: RequestRecord) -> None:
        """Count one finished request everywhere it counts, and release its lease, at once."""

    @abc.abstractmethod
    async def session(self, session: str) -> SessionUsage | None: ...

    @abc.abstractmethod
    async def sessions(self) -> list[SessionUsage]: ...

    @abc.abstractmethod
    async def totals(self) -> dict[str, object]: ...

    @abc.abstractmethod
    async def delete(self, session: str) -> bool: ...

    # Usage per key and user.

    @abc.abstractmethod
    async def key_usage(self, key_id: str) -> KeyUsage | None: ...

    @abc.abstractmethod
    async def user_usage(self, user: str) -> UserUsage | None: ...

    # Client keys.

    @abc.abstractmethod
    async def create_key(self, key: ClientKey) -> None: ...

    @abc.abstractmethod
    async def keys(self) -> list[ClientKey]: ...

    @abc.abstractmethod
    async def key(self, key_id: str) -> ClientKey | None: ...

    @abc.abstractmethod
    async def key_by_hash(self, secret_hash: str) -> ClientKey | None:
        """The live (not deleted) key with this secret hash, disabled or expired ones too."""

    @abc.abstractmethod
    async def update_key(self, key_id: str, changes: KeyChanges) -> ClientKey | None: ...

    @abc.abstractmethod
    async def delete_key(self, key_id: str) -> bool: ...

    @abc.abstractmethod
    async def has_keys(self) -> bool:
        """Whether any live client key exists (then ``/v1`` needs a key even without APIKEY)."""

    # Limits.

    @abc.abstractmethod
    async def admit(
        self, key: ClientKey, lease: str | None, worker: str, lease_ttl: float
    ) -> Refusal | None:
        """Check ``key``'s limits and, when they allow, count the request as started (and take
        ``lease`` when it has a ``concurrent`` limit), in one transaction."""

    @abc.abstractmethod
    async def take_slot(
        self, provider: str, cap: int, key_id: str, lease: str, worker: str, lease_ttl: float
    ) -> bool:
        """Give ``lease`` one of ``provider``'s ``cap`` slots if it is its turn, else queue it.

        The turn: waiting requests are ranked by the slots their key already holds at this
        provider, then by when they began to wait; the free slots go to the first ones. A key
        alone takes every free slot (work-conserving); under contention the slots even out.
        """

    @abc.abstractmethod
    async def leave_queue(self, lease: str) -> None:
        """Forget a request that stopped waiting for a slot (its lease, if any, stays)."""

    @abc.abstractmethod
    async def heartbeat(self, leases: list[str], lease_ttl: float) -> None:
        """Renew the expiry of these leases (a worker's open requests)."""

    # The dashboard's views.

    @abc.abstractmethod
    async def timeline(
        self,
        since: float,
        until: float,
        bucket: Literal["hour", "day"],
        by: Literal["provider", "model", "key", "user"],
        key_id: str | None = None,
        user: str | None = None,
    ) -> list[TimelineRow]:
        """Usage per ``by`` group per UTC bucket in ``[since, until)``, oldest first; only
        buckets with requests. ``key_id`` / ``user`` keep one key's or user's requests."""

    @abc.abstractmethod
    async def recent_errors(self, limit: int) -> list[ErrorEntry]:
        """The newest ``limit`` errored requests, newest first (the store keeps at least 1000)."""

    async def aclose(self) -> None:  # noqa: B027 -- a store that batches nothing has no work
        """Write out whatever is pending and let go of connections (the worker is stopping)."""

    # The live config across nodes. One host needs none of it: its workers share the config
    # file, which each one polls (reload.py).

    # The version of the newest shared config when the store was opened.
    config_at_open = 0

    @property
    def shares_config(self) -> bool:
        """Whether configs applied elsewhere arrive through :meth:`next_config`."""
        return False

    async def config_version(self) -> int:
        """The version of the newest shared config (0: none yet)."""
        return 0

    async def publish_config(self, body: str, origin: str) -> int:
        """Share a config just applied here with every node; its version."""
        return 0

    async def next_config(self, after: int) -> SharedConfig:
        """Wait for a shared config newer than version ``after``."""
        await trio.sleep_forever()
        raise AssertionError("unreachable")


SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def _sqlite_file(directory: Path, url: str) -> Path:
    """The SQLite file ``url`` names: "" is ``usage.sqlite3`` in the data directory (the name it
    always had); ``sqlite:///name`` is relative to it and ``sqlite:////path`` absolute, as
    SQLAlchemy reads such URLs. Raises ConfigError for a URL of no known kind."""
    if not url:
        return directory / "usage.sqlite3"
    if url.startswith(SQLITE_PREFIX) and len(url) > len(SQLITE_PREFIX):
        return directory / Path(url[len(SQLITE_PREFIX) :]).expanduser()
    from ..config import ConfigError
    from ..masking import mask_url

    raise ConfigError(
        "STORE_URL",
        [
            f"{mask_url(url)!r} is not a store URL: use sqlite:///usage.sqlite3 or"
            " postgresql://user:password@host:5432/database"
        ],
    )


def open_store(directory: Path, url: str = "") -> Store:
    """The store ``STORE_URL`` names: SQLite (``""``, ``sqlite:///...``) or ``postgresql://...``,
    a database every node shares. Raises ConfigError for a URL of another kind or a database
    that cannot be reached (the password never shown)."""
    if url.startswith(POSTGRES_SCHEMES):
        from .postgres import PostgresStore

        return PostgresStore(url)
    from .sqlite import SQLiteStore

    return SQLiteStore(_sqlite_file(directory, url))


def check_url(url: str) -> None:
    """What ``trio-router start`` checks before it serves: the URL's form, and that a PostgreSQL
    store can be reached and migrated; raises ConfigError. (A SQLite file is made by the
    workers, in the data directory.)"""
    if url.startswith(POSTGRES_SCHEMES):
        from .postgres import PostgresStore

        PostgresStore(url, pool_size=1)
    else:
        _sqlite_file(Path(), url)

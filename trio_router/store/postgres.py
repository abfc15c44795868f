"""The store in one PostgreSQL database, shared by every worker of every node.

psycopg 3's blocking connections run in worker threads (``trio.to_thread.run_sync`` through a
limiter of ``POOL_SIZE``, each thread borrowing one pooled connection): psycopg's async API is
asyncio's, and trio-asyncio is not worth carrying for a driver whose calls are short. A started
call always finishes (the thread is never abandoned), so no write is lost to a cancel.

Writes of finished requests are group-committed: a ``record()`` that arrives while a commit is in
flight joins the next one, so under load one transaction carries many requests and a node makes
about one commit per round trip instead of one per request. ``record()`` still returns only once
its row is committed (a client reading its own usage next sees it), and a caller cancelled while
it waits is shielded until then.

Every limit runs under a transaction-scoped advisory lock: the key's for ``admit`` (rpm, tpm,
budgets, concurrent), the provider's for ``take_slot``. Those stand for SQLite's ``BEGIN
IMMEDIATE`` (sqlite.py), with the same reads and writes, so the check and the count of a limit
never interleave with another node's. The limit calls that wait while one transaction runs share
the next (up to ``BATCH_CALLS``, in arrival order, each in a savepoint), which takes all of their
locks first, in one order, so batches of two nodes never deadlock. Time comes from the database's
clock, read once the locks are held, so nodes whose clocks drift still agree on one window.

The live config: ``POST /api/config`` on one node stores the file's text in ``live_config`` and
NOTIFYs; the other nodes LISTEN (delivery within milliseconds) and re-read the row at least every
``CONFIG_POLL`` seconds, which covers a notification lost while a connection was re-made.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from importlib import resources
from typing import Any, Generic, Literal, TypeVar

import msgspec
import psycopg
import trio

from ..config import ConfigError
from ..masking import url_secrets
from . import (
    ClientKey,
    KeyChanges,
    Refusal,
    RequestRecord,
    SharedConfig,
    TimelineRow,
    windows,
)
from .sqlite import BATCH_CALLS, WAITER_TTL, _budget_period, _day
from .views import KEY_COLUMNS, SQLViews, client_key

T = TypeVar("T")
Row = tuple[Any, ...]
Cursor = psycopg.Cursor[Row]

POOL_SIZE = 8  # connections (and threads) per worker process
CONNECT_TIMEOUT = 5  # seconds, libpq's connect_timeout
CONFIG_CHANNEL = "trio_router_config"
CONFIG_POLL = 1.0  # seconds between re-reads of live_config while no NOTIFY comes

# pg_advisory_xact_lock's two-int form: (namespace, hashtext(name)).
_MIGRATE_LOCK = 0x7472696F  # "trio": one migrator at a time
_KEY_LOCK = 1
_PROVIDER_LOCK = 2
_NOW = "extract(epoch FROM clock_timestamp())::float8"

# A cost sum stays NULL until a priced request adds to it.
_ADD_COST = (
    "cost_usd = CASE WHEN excluded.cost_usd IS NULL THEN {t}.cost_usd"
    " ELSE COALESCE({t}.cost_usd, 0) + excluded.cost_usd END"
)

_ADD_SESSION = f"""
INSERT INTO usage AS u (session, provider, input_tokens, output_tokens, cache_read_tokens,
    requests, cost_usd, unpriced_requests)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (session, provider) DO UPDATE SET
    input_tokens = u.input_tokens + excluded.input_tokens,
    output_tokens = u.output_tokens + excluded.output_tokens,
    cache_read_tokens = u.cache_read_tokens + excluded.cache_read_tokens,
    requests = u.requests + excluded.requests,
    {_ADD_COST.format(t="u")},
    unpriced_requests = u.unpriced_requests + excluded.unpriced_requests
"""

_ADD_KEY = f"""
INSERT INTO key_usage AS k (key_id, provider, user_name, input_tokens, output_tokens,
    cache_read_tokens, requests, errors, rate_limited, cost_usd, unpriced_requests)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (key_id, provider) DO UPDATE SET
    input_tokens = k.input_tokens + excluded.input_tokens,
    output_tokens = k.output_tokens + excluded.output_tokens,
    cache_read_tokens = k.cache_read_tokens + excluded.cache_read_tokens,
    requests = k.requests + excluded.requests,
    errors = k.errors + excluded.errors,
    rate_limited = k.rate_limited + excluded.rate_limited,
    {_ADD_COST.format(t="k")},
    unpriced_requests = k.unpriced_requests + excluded.unpriced_requests
"""

_ADD_DAILY = """
INSERT INTO key_daily AS d (key_id, day, tokens, cost_usd) VALUES (%s, %s, %s, %s)
ON CONFLICT (key_id, day) DO UPDATE SET
    tokens = d.tokens + excluded.tokens, cost_usd = d.cost_usd + excluded.cost_usd
"""

_ADD_RATE = """
INSERT INTO rate_buckets AS r (key_id, second, requests, tokens) VALUES (%s, %s, %s, %s)
ON CONFLICT (key_id, second) DO UPDATE SET
    requests = r.requests + excluded.requests, tokens = r.tokens + excluded.tokens
"""

_ADD_HOURLY = f"""
INSERT INTO usage_hourly AS h (hour, provider, model, key_id, user_name, requests, errors,
    input_tokens, output_tokens, cache_read_tokens, cost_usd)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (hour, provider, model, key_id, user_name) DO UPDATE SET
    requests = h.requests + excluded.requests,
    errors = h.errors + excluded.errors,
    input_tokens = h.input_tokens + excluded.input_tokens,
    output_tokens = h.output_tokens + excluded.output_tokens,
    cache_read_tokens = h.cache_read_tokens + excluded.cache_read_tokens,
    {_ADD_COST.format(t="h")}
"""

_ADD_ERROR = """
INSERT INTO request_errors (at, status, provider, model, key_id, session, message)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""

KEPT_ERRORS = 1000
_PRUNE_ERRORS = f"""
DELETE FROM request_errors WHERE id <= (
    SELECT id FROM request_errors ORDER BY id DESC OFFSET {KEPT_ERRORS} LIMIT 1)
"""


# The waiters ahead of one request in a provider's queue (sqlite.py's _AHEAD).
_AHEAD = """
WITH held AS (SELECT key_id, COUNT(*) AS n FROM leases WHERE provider = %s GROUP BY key_id)
SELECT COUNT(*) FROM slot_waiters w LEFT JOIN held h ON h.key_id = w.key_id
WHERE w.provider = %s AND w.id != %s
  AND (COALESCE(h.n, 0) < %s OR (COALESCE(h.n, 0) = %s AND w.since < %s))
"""

_GROUP_COLUMNS = {"provider": "provider", "model": "model", "key": "key_id", "user": "user_name"}
_BUCKET_SECONDS = {"hour": 3600, "day": 86400}


def migrations() -> Iterator[tuple[int, str]]:
    """``migrations/postgresql/NNNN_name.sql`` in order: (NNNN, its SQL)."""
    folder = resources.files(__package__).joinpath("migrations", "postgresql")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            yield int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")


def migrate(conn: psycopg.Connection[Row]) -> int:
    """Bring the database to the newest schema, each step once, in one transaction. Nodes
    starting together queue on an advisory lock: one migrates, the others find nothing to do.
    Returns the version the database is at."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = (row[0] if row else None) or 0
        known = 0
        for version, script in migrations():
            known = version
            if version > current:
                conn.execute(script.encode())  # no parameters: several statements at once
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        if not known:
            raise RuntimeError("the store's migrations are missing from the installed package")
        if current > known:
            raise RuntimeError(
                f"the PostgreSQL store has schema version {current}, newer than this"
                f" trio-router knows ({known}): upgrade trio-router"
            )
    return max(current, known)


def _redacted(text: str, url: str) -> str:
    for secret in url_secrets(url):
        text = text.replace(secret, "****")
    return text


def _json_or_null(value: list[str] | None) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


class _Totals:
    """One group's sums within a batch of records (what one upsert adds)."""

    __slots__ = ("cost", "values")

    def __init__(self, size: int) -> None:
        self.values = [0] * size
        self.cost: float | None = None

    def add(self, values: tuple[int, ...], cost: float | None) -> None:
        for i, value in enumerate(values):
            self.values[i] += value
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost


class _Batch:
    """Records committed together; ``done`` is set when their transaction ended."""

    def __init__(self) -> None:
        self.entries: list[RequestRecord] = []
        self.done = trio.Event()
        self.error: BaseException | None = None


class _Limited(Generic[T]):
    """One limit call waiting for the next limits transaction, and what it gave."""

    __slots__ = ("body", "done", "error", "lock", "result")

    def __init__(self, lock: tuple[int, str], body: Callable[[Cursor, float], T]) -> None:
        self.lock = lock
        self.body = body
        self.result: T
        self.error: BaseException | None = None
        self.done = False


class PostgresStore(SQLViews):
    PARAM = "%s"  # psycopg's parameter mark (views.py)

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        """Connects, and migrates the schema; raises ConfigError when the database cannot be
        reached or the URL is not one (the message never holds the password)."""
        self._url = url
        self._idle: queue.LifoQueue[psycopg.Connection[Row]] = queue.LifoQueue()
        self._limiter = trio.CapacityLimiter(pool_size)
        self._open = _Batch()
        self._committing: trio.Event | None = None  # set when the commit in flight ends
        self._limit_queue: deque[_Limited[Any]] = deque()  # admit and take_slot calls waiting
        self._limiting: trio.Event | None = None  # set when the limits transaction ends
        self._listener: psycopg.Connection[Row] | None = None
        self._listening = threading.Lock()
        try:
            conn = self._connect()
        except (psycopg.Error, ValueError) as error:
            raise ConfigError(
                "STORE_URL",
                [f"cannot open the PostgreSQL store: {_redacted(str(error).strip(), url)}"],
            ) from None
        try:
            migrate(conn)
            row = conn.execute("SELECT version FROM live_config").fetchone()
            self.config_at_open = int(row[0]) if row else 0
        finally:
            conn.close()

    def _connect(self) -> psycopg.Connection[Row]:
        return psycopg.connect(
            self._url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="trio-router",
        )

    def _run(self, body: Callable[[psycopg.Connection[Row]], T]) -> T:
        """``body`` on a pooled connection; once more on a new one when the pooled one turns out
        to be dead (the server restarted, an idle connection was cut)."""
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            result = body(conn)
        except psycopg.OperationalError:
            conn.close()
            if not conn.broken:
                raise
            conn = self._connect()
            try:
                result = body(conn)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        self._idle.put(conn)
        return result

    async def _call(self, body: Callable[[psycopg.Connection[Row]], T]) -> T:
        return await trio.to_thread.run_sync(self._run, body, limiter=self._limiter)

    async def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """One statement, in autocommit mode."""

        def body(conn: psycopg.Connection[Row]) -> list[Row]:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []

        return await self._call(body)

    async def _transaction(self, body: Callable[[Cursor, float], T]) -> T:
        """``body(cursor, now)`` in one transaction; ``now`` is the database's clock."""

        def run(conn: psycopg.Connection[Row]) -> T:
            with conn.transaction():
                cur = conn.cursor()
                row = cur.execute(f"SELECT {_NOW}").fetchone()
                assert row is not None
                return body(cur, float(row[0]))

        return await self._call(run)

    async def _limited(self, lock: tuple[int, str], body: Callable[[Cursor, float], T]) -> T:
        """``body(cursor, now)`` under ``lock`` (an advisory lock's namespace and name), in the
        next limits transaction: the calls waiting meanwhile run together (group admission,
        as sqlite.py's batches), so a burst of admits pays a thread trip and a commit per
        batch instead of per call. Once handed in, a call runs even if its caller is cancelled
        (a lease it takes is released by the caller's record, as when it runs alone)."""
        call: _Limited[T] = _Limited(lock, body)
        self._limit_queue.append(call)
        with trio.CancelScope(shield=True):
            while not call.done:
                await self._limit_step()
        if call.error is not None:
            raise call.error
        return call.result

    async def _limit_step(self) -> None:
        """Wait for the limits transaction in flight, or else run the oldest calls waiting."""
        if self._limiting is not None:
            await self._limiting.wait()
            return
        limiting = self._limiting = trio.Event()
        count = min(BATCH_CALLS, len(self._limit_queue))
        taken = [self._limit_queue.popleft() for _ in range(count)]
        try:
            await self._call(partial(self._run_limits, calls=taken))
        except Exception as error:
            for call in taken:
                call.error = error
        finally:
            for call in taken:
                call.done = True
            self._limiting = None
            limiting.set()

    @staticmethod
    def _run_limits(conn: psycopg.Connection[Row], calls: list[_Limited[Any]]) -> None:
        """The calls in one transaction, after every lock they need, taken in one order (the
        locks' own, namespace then hash) so that two nodes' batches never deadlock. With
        company each call runs in a savepoint: one that fails leaves the others' rows."""
        spaces, names = zip(*sorted({call.lock for call in calls}), strict=True)
        with conn.transaction():
            cur = conn.cursor()
            # A limit's counts need no WAL flush before the answer: a database crash loses at
            # most the last moment's window rows, never usage (record()).
            cur.execute("SET LOCAL synchronous_commit TO OFF")
            cur.execute(
                "SELECT pg_advisory_xact_lock(ns, h) FROM (SELECT DISTINCT ns, hashtext(name) AS h"
                " FROM unnest(%s::int[], %s::text[]) AS t(ns, name) ORDER BY ns, h) AS locks",
                (list(spaces), list(names)),
            )
            row = cur.execute(f"SELECT {_NOW}").fetchone()  # once every lock is held
            assert row is not None
            now = float(row[0])
            if len(calls) == 1:
                calls[0].result = calls[0].body(cur, now)
                return
            for call in calls:
                try:
                    with conn.transaction():  # a savepoint
                        call.result = call.body(cur, now)
                except Exception as error:
                    call.error = error

    # Usage per session and provider.

    async def record(self, entry: RequestRecord) -> None:
        batch = self._open
        batch.entries.append(entry)
        # Once handed in, a record is committed even if its caller is cancelled meanwhile.
        with trio.CancelScope(shield=True):
            while not batch.done.is_set():
                await self._flush_step()
        if batch.error is not None:
            raise batch.error

    async def _flush_step(self) -> None:
        """Wait for the commit in flight to end, or else commit every record handed in."""
        if self._committing is not None:
            await self._committing.wait()
            return
        committing = self._committing = trio.Event()
        taken, self._open = self._open, _Batch()
        try:
            await self._call(partial(self._commit, entries=taken.entries))
        except Exception as error:
            taken.error = error
        finally:
            self._committing = None
            taken.done.set()
            committing.set()

    def _commit(self, conn: psycopg.Connection[Row], entries: list[RequestRecord]) -> None:
        """Every record of a batch in one transaction, each group's sums in one upsert. Rows
        are written in key order so that two nodes' batches never deadlock on each other."""
        sessions: dict[tuple[str, str], _Totals] = {}
        keys: dict[tuple[str, str, str], _Totals] = {}
        daily: dict[tuple[str, str], _Totals] = {}
        hourly: dict[tuple[float, str, str, str, str], _Totals] = {}
        rated: dict[str, int] = {}  # tokens per limited key, in this second's bucket
        leases: list[str] = []
        errors: list[RequestRecord] = []
        with conn.transaction():
            cur = conn.cursor()
            row = cur.execute(f"SELECT {_NOW}").fetchone()
            assert row is not None
            now = float(row[0])
            for entry in entries:
                tokens = (entry.input_tokens, entry.output_tokens, entry.cache_read)
                # Unpriced where it was routed (sqlite.py counts the same).
                unpriced = int(entry.cost_usd is None and entry.provider is not None)
                at = entry.ended_at or now
                if entry.provider is not None:
                    sessions.setdefault((entry.session, entry.provider), _Totals(5)).add(
                        (*tokens, 1, unpriced), entry.cost_usd
                    )
                group = (math.floor(at / 3600) * 3600.0, entry.provider or "", entry.model)
                hourly.setdefault((*group, entry.key_id or "", entry.user), _Totals(5)).add(
                    (1, int(entry.error), *tokens), entry.cost_usd
                )
                if entry.key_id is not None:
                    keys.setdefault(
                        (entry.key_id, entry.provider or "", entry.user), _Totals(7)
                    ).add(
                        (*tokens, 1, int(entry.error), int(entry.rate_limited), unpriced),
                        entry.cost_usd,
                    )
                    spent = entry.input_tokens + entry.output_tokens
                    if spent or entry.cost_usd:
                        daily.setdefault((entry.key_id, _day(now)), _Totals(1)).add(
                            (spent,), entry.cost_usd
                        )
                    if spent and entry.rated:
                        rated[entry.key_id] = rated.get(entry.key_id, 0) + spent
                if entry.lease is not None:
                    leases.append(entry.lease)
                if entry.error:
                    errors.append(entry)
            if sessions:
                cur.executemany(
                    _ADD_SESSION,
                    [(*k, *t.values[:4], t.cost, t.values[4]) for k, t in sorted(sessions.items())],
                )
            if keys:
                cur.executemany(
                    _ADD_KEY,
                    [(*k, *t.values[:6], t.cost, t.values[6]) for k, t in sorted(keys.items())],
                )
            if daily:
                cur.executemany(
                    _ADD_DAILY,
                    [(*k, t.values[0], t.cost or 0.0) for k, t in sorted(daily.items())],
                )
            if hourly:
                cur.executemany(
                    _ADD_HOURLY, [(*k, *t.values, t.cost) for k, t in sorted(hourly.items())]
                )
            if rated:
                second = windows.bucket(now)
                cur.executemany(
                    _ADD_RATE,
                    [(key_id, second, 0, spent) for key_id, spent in sorted(rated.items())],
                )
            if leases:
                cur.execute("DELETE FROM leases WHERE id = ANY(%s)", (sorted(leases),))
            if errors:
                cur.executemany(
                    _ADD_ERROR,
                    [
                        (
                            e.ended_at or now,
                            e.status,
                            e.provider,
                            e.model,
                            e.key_id,
                            e.session,
                            e.error_message,
                        )
                        for e in errors
                    ],
                )
                cur.execute(_PRUNE_ERRORS)

    # Usage per key and user.

    # Client keys.

    async def create_key(self, key: ClientKey) -> None:
        await self._query(
            f"INSERT INTO client_keys ({KEY_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                key.id,
                key.name,
                key.user,
                key.prefix,
                key.secret_hash,
                msgspec.json.encode(key.limits).decode(),
                _json_or_null(key.routes),
                _json_or_null(key.models),
                key.expires_at,
                key.disabled,
                key.created_at,
            ),
        )

    async def update_key(self, key_id: str, changes: KeyChanges) -> ClientKey | None:
        def body(cur: Cursor, now: float) -> ClientKey | None:
            rows = cur.execute(
                f"SELECT {KEY_COLUMNS} FROM client_keys WHERE id = %s AND deleted_at IS NULL"
                " FOR UPDATE",
                (key_id,),
            ).fetchall()
            if not rows:
                return None
            fields = {
                name: value
                for name in KeyChanges.__struct_fields__
                if (value := getattr(changes, name)) is not msgspec.UNSET
            }
            key = msgspec.structs.replace(client_key(rows[0]), **fields)
            cur.execute(
                "UPDATE client_keys SET name = %s, limits = %s, routes = %s, models = %s,"
                " expires_at = %s, disabled = %s WHERE id = %s",
                (
                    key.name,
                    msgspec.json.encode(key.limits).decode(),
                    _json_or_null(key.routes),
                    _json_or_null(key.models),
                    key.expires_at,
                    key.disabled,
                    key_id,
                ),
            )
            return key

        return await self._transaction(body)

    # Limits.

    async def admit(
        self, key: ClientKey, lease: str | None, worker: str, lease_ttl: float
    ) -> Refusal | None:
        limits = key.limits

        def body(cur: Cursor, now: float) -> Refusal | None:
            if limits.rated:
                cur.execute(
                    "DELETE FROM rate_buckets WHERE key_id = %s AND second <= %s",
                    (key.id, windows.horizon(now)),
                )
                window = cur.execute(
                    "SELECT second, requests, tokens FROM rate_buckets WHERE key_id = %s"
                    " ORDER BY second",
                    (key.id,),
                ).fetchall()
                refused = windows.refusal(window, limits, now)
                if refused is not None:
                    return refused
            if limits.budget_tokens is not None or limits.budget_usd is not None:
                first_day, ends = _budget_period(now, limits.budget_period)
                row = cur.execute(
                    "SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(cost_usd), 0) FROM key_daily"
                    " WHERE key_id = %s AND day >= %s",
                    (key.id, first_day),
                ).fetchone()
                assert row is not None
                if limits.budget_tokens is not None and row[0] >= limits.budget_tokens:
                    return Refusal("budget_tokens", windows.seconds_until(ends, now))
                if limits.budget_usd is not None and row[1] >= limits.budget_usd:
                    return Refusal("budget_usd", windows.seconds_until(ends, now))
            if limits.concurrent is not None and lease is not None:
                cur.execute(
                    "DELETE FROM leases WHERE key_id = %s AND expires_at < %s", (key.id, now)
                )
                row = cur.execute(
                    "SELECT COUNT(*) FROM leases WHERE key_id = %s", (key.id,)
                ).fetchone()
                assert row is not None
                if row[0] >= limits.concurrent:
                    return Refusal("concurrent", 1)  # a slot frees when a request ends
                cur.execute(
                    "INSERT INTO leases (id, worker, key_id, provider, expires_at)"
                    " VALUES (%s, %s, %s, NULL, %s)",
                    (lease, worker, key.id, now + lease_ttl),
                )
            if limits.rpm is not None:
                cur.execute(_ADD_RATE, (key.id, windows.bucket(now), 1, 0))
            return None

        return await self._limited((_KEY_LOCK, key.id), body)

    async def take_slot(
        self, provider: str, cap: int, key_id: str, lease: str, worker: str, lease_ttl: float
    ) -> bool:
        def body(cur: Cursor, now: float) -> bool:
            cur.execute(
                "DELETE FROM leases WHERE provider = %s AND expires_at < %s", (provider, now)
            )
            cur.execute(
                "DELETE FROM slot_waiters WHERE provider = %s AND expires_at < %s",
                (provider, now),
            )
            used = _count(cur, "SELECT COUNT(*) FROM leases WHERE provider = %s", (provider,))
            if used < cap:
                held = _count(
                    cur,
                    "SELECT COUNT(*) FROM leases WHERE provider = %s AND key_id = %s",
                    (provider, key_id),
                )
                waiting = cur.execute(
                    "SELECT since FROM slot_waiters WHERE id = %s", (lease,)
                ).fetchone()
                since = waiting[0] if waiting else now
                ahead = _count(cur, _AHEAD, (provider, provider, lease, held, held, since))
                if ahead < cap - used:
                    cur.execute(
                        "INSERT INTO leases (id, worker, key_id, provider, expires_at)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                        " provider = excluded.provider, expires_at = excluded.expires_at",
                        (lease, worker, key_id, provider, now + lease_ttl),
                    )
                    cur.execute("DELETE FROM slot_waiters WHERE id = %s", (lease,))
                    return True
            cur.execute(
                "INSERT INTO slot_waiters (id, provider, key_id, since, expires_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                " expires_at = excluded.expires_at",
                (lease, provider, key_id, now, now + WAITER_TTL),
            )
            return False

        return await self._limited((_PROVIDER_LOCK, provider), body)

    async def leave_queue(self, lease: str) -> None:
        await self._query("DELETE FROM slot_waiters WHERE id = %s", (lease,))

    async def heartbeat(self, leases: list[str], lease_ttl: float) -> None:
        if leases:
            await self._query(
                f"UPDATE leases SET expires_at = {_NOW} + %s WHERE id = ANY(%s)",
                (lease_ttl, sorted(leases)),
            )

    # The dashboard's views.

    async def timeline(
        self,
        since: float,
        until: float,
        bucket: Literal["hour", "day"],
        by: Literal["provider", "model", "key", "user"],
        key_id: str | None = None,
        user: str | None = None,
    ) -> list[TimelineRow]:
        size = _BUCKET_SECONDS[bucket]
        column = _GROUP_COLUMNS[by]
        where = ["hour >= %s", "hour < %s"]
        params: list[Any] = [since, until]
        if key_id is not None:
            where.append("key_id = %s")
            params.append(key_id)
        if user is not None:
            where.append("user_name = %s")
            params.append(user)
        rows = await self._query(
            f"SELECT floor(hour / {size}) * {size}, {column}, SUM(requests), SUM(errors),"
            " SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cost_usd)"
            f" FROM usage_hourly WHERE {' AND '.join(where)} GROUP BY 1, 2 ORDER BY 1, 2",
            tuple(params),
        )
        return [
            TimelineRow(
                float(r[0]), r[1], int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]), r[7]
            )
            for r in rows
        ]

    # The live config every node follows.

    @property
    def shares_config(self) -> bool:
        return True

    async def config_version(self) -> int:
        rows = await self._query("SELECT version FROM live_config")
        return int(rows[0][0]) if rows else 0

    async def publish_config(self, body: str, origin: str) -> int:
        def run(cur: Cursor, now: float) -> int:
            row = cur.execute(
                "INSERT INTO live_config AS c (id, version, body, origin, updated_at)"
                " VALUES (1, 1, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                " version = c.version + 1, body = excluded.body, origin = excluded.origin,"
                " updated_at = excluded.updated_at RETURNING version",
                (body, origin, now),
            ).fetchone()
            assert row is not None
            # Delivered to every LISTENer when this transaction commits
            # (https://www.postgresql.org/docs/15/sql-notify.html).
            cur.execute("SELECT pg_notify(%s, %s)", (CONFIG_CHANNEL, str(row[0])))
            return int(row[0])

        return await self._transaction(run)

    async def next_config(self, after: int) -> SharedConfig:
        await trio.to_thread.run_sync(self._wait_notify, 0.0)  # LISTEN before the first read
        while True:
            rows = await self._query(
                "SELECT version, body, origin FROM live_config WHERE version > %s", (after,)
            )
            if rows:
                return SharedConfig(int(rows[0][0]), rows[0][1], rows[0][2])
            # Abandoned on cancel: the thread ends by itself within CONFIG_POLL.
            await trio.to_thread.run_sync(self._wait_notify, CONFIG_POLL, abandon_on_cancel=True)

    def _wait_notify(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a NOTIFY on the config channel (LISTENing first)."""
        with self._listening:
            conn = self._listener
            try:
                if conn is None or conn.closed:
                    conn = self._listener = self._connect()
                    conn.execute(f"LISTEN {CONFIG_CHANNEL}")
                if timeout:
                    for _ in conn.notifies(timeout=timeout, stop_after=1):
                        pass
            except psycopg.OperationalError:
                if conn is not None:
                    conn.close()
                time.sleep(timeout)  # the poll re-reads the row meanwhile

    async def aclose(self) -> None:
        def close() -> None:
            while True:
                try:
                    self._idle.get_nowait().close()
                except queue.Empty:
                    break
            with self._listening:
                if self._listener is not None:
                    self._listener.close()

        # Records still waiting for a commit are committed first, even on a cancelled shutdown.
        with trio.CancelScope(shield=True):
            while self._committing is not None or self._open.entries:
                await self._flush_step()
            await trio.to_thread.run_sync(close)


def _count(cur: Cursor, sql: str, params: tuple[Any, ...]) -> int:
    row = cur.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])

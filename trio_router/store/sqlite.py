"""The store in one SQLite file (WAL mode), shared by the workers of one host.

Each thread has its own connection, and every call runs in a worker thread (one at a time per
process, through a limiter) so the event loop never waits on the disk. Every change runs inside a
``BEGIN IMMEDIATE`` transaction: it takes SQLite's write lock before it reads, so the check and
the write of a limit cannot interleave with another worker's.

Changes are group-committed: a change (``admit``, ``record``, ``take_slot``...) that arrives
while a transaction is in flight joins the next one, which runs the waiting changes (up to
``BATCH_CALLS``) in arrival order, each in a savepoint of its own. So a burst of requests pays
one thread trip and one commit per batch instead of one per call (round 2 measured 1000 queued
admits at 1.15 ms of CPU and up to 4 s of wait each), while every change sees exactly the rows
of those before it, as one after the other would: no decision changes. A change that arrives
alone runs at once (nothing waits for company), and one that raises rolls back only its own
savepoint. A caller gets its answer once its batch has committed; a batch once started always
commits, and a ``record()`` handed in is committed even if its caller is cancelled, so no usage
is lost to a cancel.

Each transaction is written as the rows PostgreSQL would hold too: ``BEGIN IMMEDIATE`` stands
for PostgreSQL's ``SELECT ... FOR UPDATE`` on the key's or provider's rows (or an advisory lock).
"""

from __future__ import annotations

import calendar
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import msgspec
import trio

from . import (
    ClientKey,
    KeyChanges,
    Refusal,
    RequestRecord,
    TimelineRow,
    windows,
)
from .views import KEY_COLUMNS, SQLViews, client_key

T = TypeVar("T")
Row = tuple[Any, ...]

# A sum of costs stays NULL until a priced request adds to it: unpriced is not free.
_ADD_COST = (
    "cost_usd = CASE WHEN excluded.cost_usd IS NULL THEN cost_usd"
    " ELSE COALESCE(cost_usd, 0) + excluded.cost_usd END"
)

_ADD_SESSION = f"""
INSERT INTO usage (session, provider, input_tokens, output_tokens, cache_read_tokens, requests,
    cost_usd, unpriced_requests)
VALUES (?, ?, ?, ?, ?, 1, ?, ?)
ON CONFLICT (session, provider) DO UPDATE SET
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
    requests = requests + 1,
    {_ADD_COST},
    unpriced_requests = unpriced_requests + excluded.unpriced_requests
"""

_ADD_KEY = f"""
INSERT INTO key_usage (key_id, provider, user_name, input_tokens, output_tokens,
    cache_read_tokens, requests, errors, rate_limited, cost_usd, unpriced_requests)
VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
ON CONFLICT (key_id, provider) DO UPDATE SET
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
    requests = requests + 1,
    errors = errors + excluded.errors,
    rate_limited = rate_limited + excluded.rate_limited,
    {_ADD_COST},
    unpriced_requests = unpriced_requests + excluded.unpriced_requests
"""

_ADD_DAILY = """
INSERT INTO key_tokens_daily (key_id, day, tokens, cost_usd) VALUES (?, ?, ?, ?)
ON CONFLICT (key_id, day) DO UPDATE SET
    tokens = tokens + excluded.tokens,
    cost_usd = cost_usd + excluded.cost_usd
"""

_ADD_HOURLY = f"""
INSERT INTO usage_hourly (hour, provider, model, key_id, user_name, requests, errors,
    input_tokens, output_tokens, cache_read_tokens, cost_usd)
VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)
ON CONFLICT (hour, provider, model, key_id, user_name) DO UPDATE SET
    requests = requests + 1,
    errors = errors + excluded.errors,
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
    {_ADD_COST}
"""

_ADD_RATE = """
INSERT INTO rate_buckets (key_id, second, requests, tokens) VALUES (?, ?, ?, ?)
ON CONFLICT (key_id, second) DO UPDATE SET
    requests = requests + excluded.requests,
    tokens = tokens + excluded.tokens
"""

ERRORS_KEPT = 1000  # recent_errors' rows; older ones are deleted as new ones come
_TIMELINE_GROUPS = {"provider": "provider", "model": "model", "key": "key_id", "user": "user_name"}
_BUCKET_SECONDS = {"hour": 3600, "day": 86400}


# The waiters ahead of one request in a provider's queue: those whose key holds fewer of its
# slots, then those of keys holding as many that began to wait earlier.
_AHEAD = """
WITH held AS (SELECT key_id, COUNT(*) AS n FROM leases WHERE provider = ? GROUP BY key_id)
SELECT COUNT(*) FROM slot_waiters w LEFT JOIN held h ON h.key_id = w.key_id
WHERE w.provider = ? AND w.id != ?
  AND (COALESCE(h.n, 0) < ? OR (COALESCE(h.n, 0) = ? AND w.since < ?))
"""

# The most calls one transaction runs: a burst is answered in batches of this many, so that the
# first callers need not wait for the last (the thread trip and commit are then ~1/64 of a call).
BATCH_CALLS = 64

# A waiter polls well within this; one whose worker died leaves the queue by itself.
WAITER_TTL = 3.0


def migrations() -> Iterator[tuple[int, str]]:
    """``migrations/sqlite/NNNN_name.sql`` in order: (NNNN, its SQL)."""
    folder = resources.files(__package__).joinpath("migrations", "sqlite")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            yield int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")


def _statements(script: str) -> Iterator[str]:
    """A script's statements, split where SQLite itself says a statement is complete (so a
    ``;`` inside a string or comment does not cut one). ``executescript`` cannot be used: it
    commits the transaction a migration must run in."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file to the newest schema, each step once, in one transaction (two workers
    starting together: one migrates, the other waits for the lock and finds nothing to do).

    ``0001`` is the schema ``usage.sqlite3`` had before versions were kept, written with
    ``IF NOT EXISTS``: a file of that time (no ``schema_version`` table) keeps every row.
    Returns the version the file is at.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        known = 0
        for version, script in migrations():
            known = version
            if version <= current:
                continue
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        if not known:
            raise RuntimeError("the store's migrations are missing from the installed package")
        if current > known:
            raise RuntimeError(
                f"the usage store has schema version {current}, newer than this trio-router"
                f" knows ({known}): upgrade trio-router"
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return max(current, known)


def _day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def _budget_period(now: float, period: str) -> tuple[str, float]:
    """The first UTC day of the budget period holding ``now``, and when the period ends."""
    today = datetime.fromtimestamp(now, UTC)
    if period == "month":
        start = today.replace(day=1)
        days = calendar.monthrange(today.year, today.month)[1]
        end = calendar.timegm((today.year, today.month, days, 0, 0, 0)) + 86400
    else:
        start = today
        end = calendar.timegm((today.year, today.month, today.day, 0, 0, 0)) + 86400
    return start.strftime("%Y-%m-%d"), float(end)


def _json_or_null(value: list[str] | None) -> bytes | None:
    return None if value is None else msgspec.json.encode(value)


Body = Callable[[sqlite3.Connection, float], T]


class _Call(Generic[T]):
    """One caller's transaction body, and what it gave (set once its batch has run)."""

    __slots__ = ("body", "error", "result")

    def __init__(self, body: Body[T]) -> None:
        self.body = body
        self.result: T
        self.error: Exception | None = None


class _Batch:
    """Calls committed together in arrival order. ``ahead`` is the batch queued before this
    one (its callers wait for it rather than for every commit); ``started`` once taken,
    ``done`` when its transaction ended (or it was left empty), ``error`` what ended it when it
    did not commit."""

    def __init__(self, ahead: _Batch | None) -> None:
        self.calls: list[_Call[Any]] = []
        self.ahead = ahead
        self.started = False
        self.done = trio.Event()
        self.error: BaseException | None = None


class SQLiteStore(SQLViews):
    PARAM = "?"  # sqlite3's parameter mark (views.py)

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._local = threading.local()
        self._limiter = trio.CapacityLimiter(1)
        # The batches waiting, oldest first; calls join the last one (never empty).
        self._queue: deque[_Batch] = deque([_Batch(None)])
        self._in_flight: _Batch | None = None  # the batch whose transaction runs now
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            migrate(conn)
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        # In WAL mode NORMAL never corrupts the file and keeps every commit across a crash of
        # the process; only a power cut can lose the last commits. It spares an fsync per request.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _run_query(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        return self._conn().execute(sql, params).fetchall()

    async def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """One statement, in autocommit mode."""
        return await trio.to_thread.run_sync(self._run_query, sql, params, limiter=self._limiter)

    def _run_batch(self, calls: list[_Call[Any]]) -> None:
        """Every call's body in one write transaction, in order, each with its own clock
        reading. With company, each body runs in a savepoint, so one that raises leaves the
        others' rows (and its own error to its caller); alone, it is today's one transaction."""
        conn = self._conn()
        alone = len(calls) == 1
        conn.execute("BEGIN IMMEDIATE")
        try:
            for call in calls:
                if alone:
                    call.result = call.body(conn, time.time())
                    continue
                conn.execute("SAVEPOINT call")
                try:
                    call.result = call.body(conn, time.time())
                except Exception as error:
                    conn.execute("ROLLBACK TO call")
                    call.error = error
                conn.execute("RELEASE call")
        except BaseException:
            # An I/O error may have rolled the transaction back already.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def _transaction(self, body: Body[T], must_land: bool = False) -> T:
        """``body(connection, now)`` in the next write transaction, committed unless it raises.

        A call queued behind others may be cancelled while it waits, and then never runs (as
        a wait for the limiter could be before); with ``must_land`` it cannot, so a record
        handed in is always written. A call whose batch has started, or that starts one at
        once, runs to the commit and returns its result (the cancel is seen at the caller's
        next checkpoint).
        """
        call: _Call[T] = _Call(body)
        batch = self._queue[-1]
        if len(batch.calls) >= BATCH_CALLS:
            batch = _Batch(batch)
            self._queue.append(batch)
        batch.calls.append(call)
        if self._ahead(batch) is not None:
            try:
                with trio.CancelScope(shield=must_land):
                    while not batch.started and await self._wait_turn(batch):
                        pass
            except trio.Cancelled:
                if not batch.started:
                    batch.calls.remove(call)
                    if not batch.calls and batch is not self._queue[-1]:
                        batch.done.set()  # nothing to commit: the batches behind need not wait
                    raise
        else:
            await self._flush_step()  # nothing ahead: at once, and with no cancel scope to pay
        if not batch.done.is_set():
            with trio.CancelScope(shield=True):
                while not batch.done.is_set():
                    if not await self._wait_turn(batch):
                        await self._flush_step()
        if batch.error is not None:
            raise batch.error
        if call.error is not None:
            raise call.error
        return call.result

    def _ahead(self, batch: _Batch) -> _Batch | None:
        """What ``batch`` waits for: the batch queued before it, or the one in flight."""
        if batch.ahead is not None and not batch.ahead.done.is_set():
            return batch.ahead
        return self._in_flight if self._in_flight is not batch else None

    async def _wait_turn(self, batch: _Batch) -> bool:
        """Wait for what ``batch`` waits for to end; False when there is nothing to wait for
        (the next batch may start)."""
        ahead = self._ahead(batch)
        if ahead is None:
            return False
        await ahead.done.wait()
        return True

    async def _flush_step(self) -> None:
        """Wait for the transaction in flight to end, or else run the oldest batch waiting."""
        if self._in_flight is not None:
            await self._in_flight.done.wait()
            return
        taken = self._queue.popleft()
        if not self._queue:
            self._queue.append(_Batch(None))
        if not taken.calls:
            taken.done.set()
            return
        self._in_flight = taken
        taken.started = True
        taken.ahead = None  # done: a queue that never empties keeps no chain of old batches
        try:
            try:
                await trio.to_thread.run_sync(self._run_batch, taken.calls, limiter=self._limiter)
            except trio.Cancelled:
                # Only the wait for the limiter is cancellable (a started thread is never
                # abandoned): the batch has not run yet, and runs all the same; the caller sees
                # the cancel at its next checkpoint.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(
                        self._run_batch, taken.calls, limiter=self._limiter
                    )
        except BaseException as error:
            taken.error = error
        finally:
            self._in_flight = None
            taken.done.set()

    async def aclose(self) -> None:
        # Calls handed in are committed before the worker stops, even on a cancelled shutdown.
        with trio.CancelScope(shield=True):
            while self._in_flight is not None or any(b.calls for b in self._queue):
                await self._flush_step()

    # Usage per session and provider.

    async def record(self, entry: RequestRecord) -> None:
        # An unpriced request (no cost) counts in unpricedRequests where it was routed.
        unpriced = int(entry.cost_usd is None and entry.provider is not None)

        def body(conn: sqlite3.Connection, now: float) -> None:
            at = entry.ended_at or now
            if entry.provider is not None:
                conn.execute(
                    _ADD_SESSION,
                    (
                        entry.session,
                        entry.provider,
                        entry.input_tokens,
                        entry.output_tokens,
                        entry.cache_read,
                        entry.cost_usd,
                        unpriced,
                    ),
                )
            conn.execute(
                _ADD_HOURLY,
                (
                    int(at // 3600) * 3600,
                    entry.provider or "",
                    entry.model,
                    entry.key_id or "",
                    entry.user,
                    int(entry.error),
                    entry.input_tokens,
                    entry.output_tokens,
                    entry.cache_read,
                    entry.cost_usd,
                ),
            )
            if entry.error:
                cursor = conn.execute(
                    "INSERT INTO request_errors (at, status, provider, model, key_id, session,"
                    " message) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        at,
                        entry.status,
                        entry.provider,
                        entry.model,
                        entry.key_id,
                        entry.session,
                        entry.error_message,
                    ),
                )
                conn.execute(
                    "DELETE FROM request_errors WHERE id <= ?",
                    ((cursor.lastrowid or 0) - ERRORS_KEPT,),
                )
            if entry.key_id is not None:
                conn.execute(
                    _ADD_KEY,
                    (
                        entry.key_id,
                        entry.provider or "",
                        entry.user,
                        entry.input_tokens,
                        entry.output_tokens,
                        entry.cache_read,
                        int(entry.error),
                        int(entry.rate_limited),
                        entry.cost_usd,
                        unpriced,
                    ),
                )
                tokens = entry.input_tokens + entry.output_tokens
                if tokens or entry.cost_usd:
                    conn.execute(_ADD_DAILY, (entry.key_id, _day(now), tokens, entry.cost_usd or 0))
                if tokens and entry.rated:
                    conn.execute(_ADD_RATE, (entry.key_id, windows.bucket(now), 0, tokens))
            if entry.lease is not None:
                conn.execute("DELETE FROM leases WHERE id = ?", (entry.lease,))

        await self._transaction(body, must_land=True)

    # Usage per key and user.

    # Client keys.

    async def create_key(self, key: ClientKey) -> None:
        await self._query(
            f"INSERT INTO client_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.id,
                key.name,
                key.user,
                key.prefix,
                key.secret_hash,
                msgspec.json.encode(key.limits),
                _json_or_null(key.routes),
                _json_or_null(key.models),
                key.expires_at,
                int(key.disabled),
                key.created_at,
            ),
        )

    async def update_key(self, key_id: str, changes: KeyChanges) -> ClientKey | None:
        def body(conn: sqlite3.Connection, now: float) -> ClientKey | None:
            rows = conn.execute(
                f"SELECT {KEY_COLUMNS} FROM client_keys WHERE id = ? AND deleted_at IS NULL",
                (key_id,),
            ).fetchall()
            if not rows:
                return None
            key = client_key(rows[0])
            fields = {
                name: value
                for name in KeyChanges.__struct_fields__
                if (value := getattr(changes, name)) is not msgspec.UNSET
            }
            key = msgspec.structs.replace(key, **fields)
            conn.execute(
                "UPDATE client_keys SET name = ?, limits = ?, routes = ?, models = ?,"
                " expires_at = ?, disabled = ? WHERE id = ?",
                (
                    key.name,
                    msgspec.json.encode(key.limits),
                    _json_or_null(key.routes),
                    _json_or_null(key.models),
                    key.expires_at,
                    int(key.disabled),
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

        def body(conn: sqlite3.Connection, now: float) -> Refusal | None:
            if limits.rated:
                conn.execute(
                    "DELETE FROM rate_buckets WHERE key_id = ? AND second <= ?",
                    (key.id, windows.horizon(now)),
                )
                window = conn.execute(
                    "SELECT second, requests, tokens FROM rate_buckets WHERE key_id = ?"
                    " ORDER BY second",
                    (key.id,),
                ).fetchall()
                refused = windows.refusal(window, limits, now)
                if refused is not None:
                    return refused
            if limits.budget_tokens is not None or limits.budget_usd is not None:
                first_day, ends = _budget_period(now, limits.budget_period)
                used, spent_usd = conn.execute(
                    "SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(cost_usd), 0)"
                    " FROM key_tokens_daily WHERE key_id = ? AND day >= ?",
                    (key.id, first_day),
                ).fetchone()
                if limits.budget_tokens is not None and used >= limits.budget_tokens:
                    return Refusal("budget_tokens", windows.seconds_until(ends, now))
                if limits.budget_usd is not None and spent_usd >= limits.budget_usd:
                    return Refusal("budget_usd", windows.seconds_until(ends, now))
            if limits.concurrent is not None and lease is not None:
                conn.execute("DELETE FROM leases WHERE expires_at < ?", (now,))
                open_now = conn.execute(
                    "SELECT COUNT(*) FROM leases WHERE key_id = ?", (key.id,)
                ).fetchone()[0]
                if open_now >= limits.concurrent:
                    # No window: a slot frees when one of the key's requests ends.
                    return Refusal("concurrent", 1)
                conn.execute(
                    "INSERT INTO leases (id, worker, key_id, provider, expires_at)"
                    " VALUES (?, ?, ?, NULL, ?)",
                    (lease, worker, key.id, now + lease_ttl),
                )
            if limits.rpm is not None:
                conn.execute(_ADD_RATE, (key.id, windows.bucket(now), 1, 0))
            return None

        return await self._transaction(body)

    async def take_slot(
        self, provider: str, cap: int, key_id: str, lease: str, worker: str, lease_ttl: float
    ) -> bool:
        def body(conn: sqlite3.Connection, now: float) -> bool:
            conn.execute("DELETE FROM leases WHERE expires_at < ?", (now,))
            conn.execute("DELETE FROM slot_waiters WHERE expires_at < ?", (now,))
            used = conn.execute(
                "SELECT COUNT(*) FROM leases WHERE provider = ?", (provider,)
            ).fetchone()[0]
            if used < cap:
                held = conn.execute(
                    "SELECT COUNT(*) FROM leases WHERE provider = ? AND key_id = ?",
                    (provider, key_id),
                ).fetchone()[0]
                waiting = conn.execute(
                    "SELECT since FROM slot_waiters WHERE id = ?", (lease,)
                ).fetchone()
                since = waiting[0] if waiting else now
                ahead = conn.execute(
                    _AHEAD, (provider, provider, lease, held, held, since)
                ).fetchone()[0]
                if ahead < cap - used:
                    conn.execute(
                        "INSERT INTO leases (id, worker, key_id, provider, expires_at)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                        " provider = excluded.provider, expires_at = excluded.expires_at",
                        (lease, worker, key_id, provider, now + lease_ttl),
                    )
                    conn.execute("DELETE FROM slot_waiters WHERE id = ?", (lease,))
                    return True
            conn.execute(
                "INSERT INTO slot_waiters (id, provider, key_id, since, expires_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " expires_at = excluded.expires_at",
                (lease, provider, key_id, now, now + WAITER_TTL),
            )
            return False

        return await self._transaction(body)

    async def leave_queue(self, lease: str) -> None:
        def body(conn: sqlite3.Connection, now: float) -> None:
            conn.execute("DELETE FROM slot_waiters WHERE id = ?", (lease,))

        await self._transaction(body)

    async def heartbeat(self, leases: list[str], lease_ttl: float) -> None:
        def body(conn: sqlite3.Connection, now: float) -> None:
            conn.executemany(
                "UPDATE leases SET expires_at = ? WHERE id = ?",
                [(now + lease_ttl, lease) for lease in leases],
            )

        await self._transaction(body)

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
        # Both come from fixed tables above, never from the caller's text.
        group, size = _TIMELINE_GROUPS[by], _BUCKET_SECONDS[bucket]
        where = "hour >= ? AND hour < ?"
        params: list[float | str] = [since, until]
        if key_id is not None:
            where += " AND key_id = ?"
            params.append(key_id)
        if user is not None:
            where += " AND user_name = ?"
            params.append(user)
        rows = await self._query(
            f"SELECT (hour / {size}) * {size} AS start, {group}, SUM(requests), SUM(errors),"
            " SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cost_usd)"
            f" FROM usage_hourly WHERE {where} GROUP BY start, {group} ORDER BY start, {group}",
            tuple(params),
        )
        return [
            TimelineRow(
                float(row[0]),
                row[1],
                int(row[2]),
                int(row[3]),
                int(row[4]),
                int(row[5]),
                int(row[6]),
                row[7],
            )
            for row in rows
        ]

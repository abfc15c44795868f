"""The SQLite store's group admission and group commit: calls that arrive while a transaction is
in flight share the next one, and every decision is the one the calls would get one by one.

Transactions are counted with SQLite's own trace callback on the store's real connections; a
second connection holding the write lock (as another worker would) makes calls queue, so that
what goes into one batch, and in which order, is known."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.test_store import key
from trio_router.store import ClientKey, Refusal, RequestRecord
from trio_router.store.sqlite import BATCH_CALLS, SQLiteStore


class CountingStore(SQLiteStore):
    """The real store; ``begun`` counts the write transactions SQLite was asked to begin."""

    def __init__(self, path: Path) -> None:
        self.begun = 0
        super().__init__(path)
        self.begun = 0  # not the migration's

    def _connect(self) -> sqlite3.Connection:
        conn = super()._connect()
        conn.set_trace_callback(self._trace)
        return conn

    def _trace(self, statement: str) -> None:
        if statement == "BEGIN IMMEDIATE":
            self.begun += 1


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "usage.sqlite3"


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """What another connection reads from the file: only what was committed."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold the file's write lock from another connection (another worker mid-transaction)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("COMMIT")
        conn.close()


async def queued(
    path: Path, nursery: trio.Nursery, calls: list[Callable[[], Awaitable[object]]]
) -> list[object]:
    """Run ``calls`` in this arrival order while another connection holds the lock: the first
    waits alone in ``BEGIN IMMEDIATE``, the rest queue behind it. Returns each call's result
    (or the exception it raised) once all have ended."""
    results: list[object] = [None] * len(calls)

    async def run(i: int) -> None:
        try:
            results[i] = await calls[i]()
        except Exception as error:
            results[i] = error

    async with trio.open_nursery() as inner:
        with write_lock(path):
            for i in range(len(calls)):
                inner.start_soon(run, i)
                await trio.testing.wait_all_tasks_blocked()
    return results


def record(
    session: str, tokens: int = 10, key_id: str | None = None, **fields: Any
) -> RequestRecord:
    return RequestRecord(session, "p", tokens, 1, key_id=key_id, model="m", **fields)


async def test_200_concurrent_admits_of_rpm_50_admit_exactly_50_in_a_few_transactions(
    path: Path,
) -> None:
    store = CountingStore(path)
    limited = key("k", rpm=50, concurrent=500)
    await store.create_key(limited)
    results: list[Refusal | None] = []

    async def admit(i: int) -> None:
        results.append(await store.admit(limited, f"lease-{i}", "w", 30.0))

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(admit, i)
    assert len(results) == 200
    assert results.count(None) == 50
    assert {r.limit for r in results if r is not None} == {"rpm"}
    assert rows(path, "SELECT SUM(requests) FROM rate_buckets") == [(50,)]
    assert rows(path, "SELECT COUNT(*) FROM leases") == [(50,)]
    # One by one this was 200 transactions; the queue is taken whole while one is in flight.
    assert store.begun <= 10, store.begun
    await store.aclose()


async def test_a_long_queue_runs_in_capped_batches_first_come_first_served(path: Path) -> None:
    store = CountingStore(path)
    limited = key("k", rpm=50)
    await store.create_key(limited)
    async with trio.open_nursery() as nursery:
        results = await queued(
            path,
            nursery,
            [lambda: store.record(record("blocker"))]
            + [lambda: store.admit(limited, None, "w", 30.0) for _ in range(3 * BATCH_CALLS)],
        )
    admitted = [i for i, result in enumerate(results[1:]) if result is None]
    assert admitted == list(range(50))  # the first 50 to arrive, whichever batch they fell in
    assert store.begun == 1 + 3  # the blocker, then three full batches
    await store.aclose()


async def test_a_batch_left_empty_by_cancelled_callers_holds_up_nobody(path: Path) -> None:
    store = CountingStore(path)
    rpm = key("k", rpm=10**6)
    await store.create_key(rpm)
    callers: list[trio.CancelScope] = []
    behind: list[Refusal | None] = []

    async def admit() -> None:
        with trio.CancelScope() as scope:
            callers.append(scope)
            await store.admit(rpm, None, "w", 30.0)

    async def admit_behind() -> None:
        behind.append(await store.admit(rpm, None, "w", 30.0))

    # A call stuck behind the empty batch would wait (cancellably) until this deadline.
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            with write_lock(path):
                nursery.start_soon(store.record, record("blocker"))
                await trio.testing.wait_all_tasks_blocked()
                for _ in range(BATCH_CALLS):  # one whole batch, withdrawn below
                    nursery.start_soon(admit)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(admit_behind)
                await trio.testing.wait_all_tasks_blocked()
                for scope in callers:
                    scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
    assert behind == [None]
    assert rows(path, "SELECT SUM(requests) FROM rate_buckets") == [(1,)]
    assert store.begun == 2
    await store.aclose()


async def test_concurrent_records_sum_exactly(path: Path) -> None:
    store = CountingStore(path)
    await store.create_key(key("k"))
    async with trio.open_nursery() as nursery:
        for i in range(300):
            nursery.start_soon(store.record, record(f"s{i % 7}", tokens=i, key_id="k"))
    usage = await store.key_usage("k")
    assert usage is not None
    assert usage.total_requests == 300
    assert usage.total_input_tokens == sum(range(300))
    assert usage.total_output_tokens == 300
    sessions = await store.sessions()
    assert sum(s.total_requests for s in sessions) == 300
    assert sum(s.total_input_tokens for s in sessions) == sum(range(300))
    assert store.begun <= 10, store.begun
    await store.aclose()


async def test_a_call_alone_is_not_held_for_company(path: Path) -> None:
    store = CountingStore(path)
    for i in range(5):
        await store.record(record(f"s{i}"))
    assert store.begun == 5
    assert rows(path, "SELECT SUM(requests) FROM usage") == [(5,)]
    await store.aclose()


async def test_each_call_in_a_batch_sees_the_ones_before_it(path: Path) -> None:
    store = CountingStore(path)
    one: ClientKey = key("one", concurrent=1)
    tpm: ClientKey = key("tpm", tpm=100)
    for made in (one, tpm):
        await store.create_key(made)
    assert await store.admit(one, "a", "w", 30.0) is None
    store.begun = 0
    async with trio.open_nursery() as nursery:
        results = await queued(
            path,
            nursery,
            [
                lambda: store.record(record("blocker")),
                # A is released before B asks: B gets the slot; C, after B, does not.
                lambda: store.record(record("s", key_id="one", lease="a")),
                lambda: store.admit(one, "b", "w", 30.0),
                lambda: store.admit(one, "c", "w", 30.0),
                # Tokens recorded before an admit count against it; an admit first is let in.
                lambda: store.admit(tpm, None, "w", 30.0),
                lambda: store.record(record("s", tokens=150, key_id="tpm", rated=True)),
                lambda: store.admit(tpm, None, "w", 30.0),
            ],
        )
    assert results[:3] == [None, None, None]
    assert isinstance(results[3], Refusal) and results[3].limit == "concurrent"
    assert results[4:6] == [None, None]
    assert isinstance(results[6], Refusal) and results[6].limit == "tpm"
    assert rows(path, "SELECT id FROM leases") == [("b",)]
    assert store.begun == 2  # the blocker alone, then the six queued behind it together
    await store.aclose()


async def test_a_failing_call_does_not_fail_the_others_in_its_batch(path: Path) -> None:
    store = CountingStore(path)
    # SQLite cannot bind an object: this record fails after writing its session row.
    bad = record("bad", user=object())
    async with trio.open_nursery() as nursery:
        results = await queued(
            path,
            nursery,
            [
                lambda: store.record(record("blocker")),
                lambda: store.record(record("before")),
                lambda: store.record(bad),
                lambda: store.record(record("after")),
            ],
        )
    assert results[:2] == [None, None] and results[3] is None
    assert isinstance(results[2], sqlite3.Error)
    assert store.begun == 2
    # The failed call's own writes are undone, the others' kept.
    assert rows(path, "SELECT session FROM usage ORDER BY session") == [
        ("after",),
        ("before",),
        ("blocker",),
    ]
    await store.aclose()


async def test_a_cancelled_callers_record_still_lands(path: Path) -> None:
    store = SQLiteStore(path)
    caller = trio.CancelScope()

    async def cancelled_record() -> None:
        with caller:
            await store.record(record("cancelled"))

    async with trio.open_nursery() as nursery:
        with write_lock(path):
            nursery.start_soon(store.record, record("first"))
            await trio.testing.wait_all_tasks_blocked()
            # Handed in behind "first", then its caller is cancelled while it waits.
            nursery.start_soon(cancelled_record)
            await trio.testing.wait_all_tasks_blocked()
            caller.cancel()
            await trio.testing.wait_all_tasks_blocked()
    await store.aclose()
    assert rows(path, "SELECT session FROM usage ORDER BY session") == [
        ("cancelled",),
        ("first",),
    ]


async def test_a_cancelled_admit_that_has_not_started_never_counts(path: Path) -> None:
    store = SQLiteStore(path)
    once = key("once", rpm=1)
    await store.create_key(once)
    async with trio.open_nursery() as nursery:
        with write_lock(path):
            nursery.start_soon(store.record, record("first"))
            await trio.testing.wait_all_tasks_blocked()
            with trio.move_on_after(0.05) as scope:
                await store.admit(once, None, "w", 30.0)
            assert scope.cancelled_caught
    # Withdrawn before its batch began, as a wait for the store's thread could be before.
    assert await store.admit(once, None, "w", 30.0) is None
    assert await store.admit(once, None, "w", 30.0) is not None
    await store.aclose()


async def test_aclose_commits_every_call_handed_in(path: Path) -> None:
    store = SQLiteStore(path)
    async with trio.open_nursery() as nursery:
        with write_lock(path):
            for i in range(50):
                nursery.start_soon(store.record, record(f"s{i}"))
            await trio.testing.wait_all_tasks_blocked()
        # The worker stops: its calls are written before aclose returns, even when cancelled.
        with trio.CancelScope() as scope:
            scope.cancel()
            await store.aclose()
        assert rows(path, "SELECT SUM(requests) FROM usage") == [(50,)]

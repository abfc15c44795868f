"""The shared store: migrations of an existing usage.sqlite3, and the contract every backend
keeps (issues 16 and 18): the lease and queue rules the limits rest on, the cost sums, budgets,
the timeline and the recent errors. Each contract test runs on SQLite and on a real PostgreSQL
(tests/postgres.py)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio

from tests.conftest import StartFake, StartRouter
from tests.test_client_keys import ADMIN, USER, answer, config, make_key
from trio_router.store import ClientKey, Limits, RequestRecord, Store
from trio_router.store.postgres import PostgresStore
from trio_router.store.sqlite import SQLiteStore, _statements, migrations

pytest_plugins = ["tests.postgres"]

# usage.sqlite3 as trio-router wrote it before the store had versions.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    session TEXT NOT NULL,
    provider TEXT NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session, provider)
)
"""


def old_usage_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(OLD_SCHEMA)
    conn.executemany(
        "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?)",
        [("s-old", "p", 1000, 200, 30, 4), ("s-old", "q", 10, 2, 0, 1), ("s-2", "p", 5, 5, 0, 1)],
    )
    conn.commit()
    conn.close()


async def test_an_old_usage_file_is_migrated_with_every_row(
    start_router: StartRouter, start_fake: StartFake, tmp_path: Path
) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    old_usage_file(directory / "usage.sqlite3")
    fake = await start_fake(answer)
    router = await start_router(config(fake), directory=directory)
    async with router.client(headers=ADMIN) as http:
        total = (await http.get("/api/usage")).json()
        assert total == {
            "providers": {
                # Requests of before prices were kept were never priced: no made-up 0.
                "p": {
                    "inputTokens": 1005,
                    "outputTokens": 205,
                    "cacheReadTokens": 30,
                    "requests": 5,
                    "costUsd": None,
                    "unpricedRequests": 5,
                },
                "q": {
                    "inputTokens": 10,
                    "outputTokens": 2,
                    "cacheReadTokens": 0,
                    "requests": 1,
                    "costUsd": None,
                    "unpricedRequests": 1,
                },
            },
            "totalInputTokens": 1015,
            "totalOutputTokens": 207,
            "totalRequests": 6,
            "costUsd": None,
            "sessions": 2,
        }
        made = await make_key(router, name="after the upgrade")
        response = await http.post(
            "/v1/messages",
            json={"model": "m", "max_tokens": 5, "messages": USER},
            headers={"x-api-key": made["key"], "x-session-id": "s-old"},
        )
        assert response.status_code == 200, response.text
        session = (await http.get("/api/usage/sessions/s-old")).json()
    assert session["providers"]["p"] == {
        "inputTokens": 1011,
        "outputTokens": 207,
        "cacheReadTokens": 30,
        "requests": 5,
        "costUsd": None,  # model "m" has no price
        "unpricedRequests": 5,
    }
    versions = [v for v, _ in migrations()]
    conn = sqlite3.connect(directory / "usage.sqlite3")
    applied = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    conn.close()
    assert applied == versions and versions[:3] == [1, 2, 3]
    # A restart (another worker, the same file) applies nothing twice and keeps the keys.
    again = SQLiteStore(directory / "usage.sqlite3")
    assert [k.id for k in await again.keys()] == [made["id"]]


async def test_an_upgrade_keeps_each_keys_last_minute(tmp_path: Path) -> None:
    """Version 4 kept a row per request in ``rate_events``; version 5's per-second buckets
    take them over, so a key at its rpm before the upgrade is still refused after it."""
    path = tmp_path / "usage.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for version, script in migrations():
        if version > 4:
            break
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (4)")
    now = time.time()
    conn.executemany(
        "INSERT INTO rate_events (key_id, at, requests, tokens) VALUES (?, ?, ?, ?)",
        [
            ("k", now - 10.5, 1, 0),
            ("k", now - 10.2, 1, 0),
            ("k", now - 5, 1, 0),
            ("k", now - 5, 0, 700),
            ("other", now - 120, 1, 0),
        ],
    )
    conn.close()
    store = SQLiteStore(path)
    refusal = await store.admit(key("k", rpm=3), None, "w", 30.0)
    assert refusal is not None and refusal.limit == "rpm" and 49 <= refusal.retry_after <= 51
    refusal = await store.admit(key("k", tpm=700), None, "w", 30.0)
    assert refusal is not None and refusal.limit == "tpm" and 54 <= refusal.retry_after <= 56
    assert await store.admit(key("other", rpm=1), None, "w", 30.0) is None


def test_a_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "usage.sqlite3")
    conn = sqlite3.connect(tmp_path / "usage.sqlite3")
    conn.execute("INSERT INTO schema_version VALUES (999)")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this trio-router"):
        SQLiteStore(tmp_path / "usage.sqlite3")


@dataclass
class Backend:
    store: Store
    rows: Callable[[str], list[tuple[Any, ...]]]  # one SQL query, straight to the database


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store's place: a SQLite file, or a new database on the test run's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "usage.sqlite3")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def backend(store_url: str) -> AsyncIterator[Backend]:
    """A fresh store of each kind, and a way to look at its tables."""
    if not store_url.startswith("postgresql://"):

        def sqlite_rows(sql: str) -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(store_url)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()

        store: Store = SQLiteStore(store_url)
        rows = sqlite_rows
    else:

        def postgres_rows(sql: str) -> list[tuple[Any, ...]]:
            with psycopg.connect(store_url) as conn:
                return conn.execute(sql).fetchall()

        store = PostgresStore(store_url)
        rows = postgres_rows
    yield Backend(store, rows)
    await store.aclose()


def key(key_id: str, user: str = "", **limits: Any) -> ClientKey:
    return ClientKey(
        id=key_id,
        name=key_id,
        user=user,
        prefix="tr-xxxxxxxx",
        secret_hash=key_id * 4,
        limits=Limits(**limits),  # type: ignore[arg-type]
        routes=None,
        models=None,
        expires_at=None,
        disabled=False,
        created_at=time.time(),
    )


async def test_a_dead_workers_lease_expires_and_a_live_one_is_renewed(backend: Backend) -> None:
    store = backend.store
    one = key("k1", concurrent=1)
    await store.create_key(one)
    # Worker A takes the only slot and dies: it never renews nor releases.
    assert await store.admit(one, "lease-a", "worker-a", 0.3) is None
    refusal = await store.admit(one, "lease-b", "worker-b", 0.3)
    assert refusal is not None and refusal.limit == "concurrent"
    await trio.sleep(0.4)
    assert await store.admit(one, "lease-b", "worker-b", 0.3) is None
    # Worker B lives: its heartbeat keeps the slot.
    await store.heartbeat(["lease-b"], 5.0)
    await trio.sleep(0.4)
    assert await store.admit(one, "lease-c", "worker-c", 0.3) is not None
    # Released with the request's usage, in one transaction.
    await store.record(RequestRecord("s", "p", 1, 1, key_id="k1", lease="lease-b"))
    assert await store.admit(one, "lease-c", "worker-c", 0.3) is None


async def test_a_freed_slot_goes_to_the_key_holding_fewest(backend: Backend) -> None:
    store = backend.store

    async def take(key_id: str, lease: str) -> bool:
        return await store.take_slot("p", 2, key_id, lease, "w", 30.0)

    assert await take("a", "a1") and await take("a", "a2")
    assert not await take("a", "a3")  # waits first
    assert not await take("b", "b1")  # waits second
    await store.record(RequestRecord("s", "p", lease="a1"))
    # a3 waited longer, but alice holds one slot and bob none: bob's turn.
    assert not await take("a", "a3")
    assert await take("b", "b1")
    await store.record(RequestRecord("s", "p", lease="a2"))
    assert await take("a", "a3")
    # A waiter that stops waiting (a client that left) is forgotten at once.
    assert not await take("c", "c1")
    await store.leave_queue("c1")
    await store.record(RequestRecord("s", "p", lease="b1"))
    assert await take("a", "a4")


async def test_rpm_retry_after_counts_from_the_oldest_request(backend: Backend) -> None:
    store = backend.store
    limited = key("k2", rpm=3)
    for _ in range(3):
        assert await store.admit(limited, None, "w", 30.0) is None
    refusal = await store.admit(limited, None, "w", 30.0)
    assert refusal is not None and refusal.limit == "rpm" and 59 <= refusal.retry_after <= 61
    # Refusals do not count as requests in the window.
    assert backend.rows("SELECT SUM(requests) FROM rate_buckets") == [(3,)]


HOUR = 3600.0
DAY = 86400.0


async def test_costs_sum_the_priced_requests_and_count_the_others(backend: Backend) -> None:
    store = backend.store
    await store.create_key(key("k1", user="alice"))
    priced = {"key_id": "k1", "user": "alice", "model": "m"}
    await store.record(RequestRecord("s1", "p", 10, 5, cost_usd=0.25, **priced))
    await store.record(RequestRecord("s1", "p", 1, 1, cost_usd=0.5, **priced))
    await store.record(RequestRecord("s1", "p", 2, 2, cost_usd=None, **priced))
    await store.record(RequestRecord("s1", "q", 3, 3, cost_usd=None, **priced))
    # APIKEY's requests (no key) count in the session views alike.
    await store.record(RequestRecord("s2", "q", 4, 4, model="x"))
    session = await store.session("s1")
    assert session is not None
    assert session.cost_usd == pytest.approx(0.75)
    p, q = session.providers["p"], session.providers["q"]
    assert (p.requests, p.cost_usd, p.unpriced_requests) == (3, pytest.approx(0.75), 1)
    assert (q.requests, q.cost_usd, q.unpriced_requests) == (1, None, 1)
    only_unpriced = await store.session("s2")
    assert only_unpriced is not None and only_unpriced.cost_usd is None
    totals = await store.totals()
    assert totals["costUsd"] == pytest.approx(0.75)
    assert totals["providers"] == {
        "p": {
            "inputTokens": 13,
            "outputTokens": 8,
            "cacheReadTokens": 0,
            "requests": 3,
            "costUsd": pytest.approx(0.75),
            "unpricedRequests": 1,
        },
        "q": {
            "inputTokens": 7,
            "outputTokens": 7,
            "cacheReadTokens": 0,
            "requests": 2,
            "costUsd": None,
            "unpricedRequests": 2,
        },
    }
    usage = await store.key_usage("k1")
    assert usage is not None and usage.cost_usd == pytest.approx(0.75)
    assert usage.providers["p"].unpriced_requests == 1 and usage.providers["q"].cost_usd is None
    user = await store.user_usage("alice")
    assert user is not None and user.cost_usd == pytest.approx(0.75)
    assert user.providers["q"].unpriced_requests == 1


async def test_a_usd_budget_refuses_once_the_priced_requests_spent_it(backend: Backend) -> None:
    store = backend.store
    budgeted = key("k1", budget_usd=1.0)
    await store.create_key(budgeted)
    assert await store.admit(budgeted, None, "w", 30.0) is None
    await store.record(RequestRecord("s", "p", 10, 10, key_id="k1", model="m", cost_usd=0.6))
    # Unpriced requests spend nothing of a USD budget.
    await store.record(RequestRecord("s", "p", 10, 10, key_id="k1", model="x"))
    assert await store.admit(budgeted, None, "w", 30.0) is None
    await store.record(RequestRecord("s", "p", 10, 10, key_id="k1", model="m", cost_usd=0.4))
    refusal = await store.admit(budgeted, None, "w", 30.0)
    assert refusal is not None and refusal.limit == "budget_usd"
    assert 1 <= refusal.retry_after <= DAY  # at the next UTC midnight
    # Another key's budget is its own.
    other = key("k2", budget_usd=1.0)
    assert await store.admit(other, None, "w", 30.0) is None


async def test_the_timeline_buckets_usage_by_group_and_time(backend: Backend) -> None:
    store = backend.store
    day = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    ended = [day + 10, day + 20, day + HOUR + 5, day + DAY + 7]
    rows = [
        RequestRecord("s", "p", 1, 2, 3, key_id="k1", user="alice", model="m", cost_usd=0.5),
        RequestRecord("s", "p", 10, 20, key_id="k2", user="bob", model="n", error=True),
        RequestRecord("s", "q", 100, 200, key_id="k1", user="alice", model="m", cost_usd=1.0),
        RequestRecord("s", "p", 5, 5, key_id="k1", user="alice", model="m", cost_usd=0.25),
    ]
    for entry, at in zip(rows, ended, strict=True):
        entry.ended_at = at
        await store.record(entry)

    def shape(found: list[Any]) -> list[tuple[Any, ...]]:
        return [
            (r.start, r.group, r.requests, r.errors, r.input_tokens, r.output_tokens, r.cost_usd)
            for r in found
        ]

    by_provider = await store.timeline(day, day + 2 * DAY, "hour", "provider")
    assert shape(by_provider) == [
        (day, "p", 2, 1, 11, 22, pytest.approx(0.5)),
        (day + HOUR, "q", 1, 0, 100, 200, pytest.approx(1.0)),
        (day + DAY, "p", 1, 0, 5, 5, pytest.approx(0.25)),
    ]
    assert by_provider[0].cache_read_tokens == 3
    by_model = await store.timeline(day, day + 2 * DAY, "day", "model")
    assert shape(by_model) == [
        (day, "m", 2, 0, 101, 202, pytest.approx(1.5)),
        (day, "n", 1, 1, 10, 20, None),  # nothing priced: null, not 0
        (day + DAY, "m", 1, 0, 5, 5, pytest.approx(0.25)),
    ]
    by_user = await store.timeline(day, day + DAY, "day", "user")
    assert [(r.group, r.requests) for r in by_user] == [("alice", 2), ("bob", 1)]
    one_key = await store.timeline(day, day + 2 * DAY, "day", "key", key_id="k2")
    assert [(r.start, r.group, r.requests) for r in one_key] == [(day, "k2", 1)]
    alice = await store.timeline(day, day + 2 * DAY, "day", "provider", user="alice")
    assert [(r.group, r.requests) for r in alice] == [("p", 1), ("q", 1), ("p", 1)]
    # [since, until): the second day alone.
    later = await store.timeline(day + DAY, day + 2 * DAY, "hour", "provider")
    assert [(r.start, r.requests) for r in later] == [(day + DAY, 1)]


async def test_recent_errors_are_newest_first_and_at_least_1000_are_kept(
    backend: Backend,
) -> None:
    store = backend.store
    await store.record(RequestRecord("fine", "p", 1, 1, model="m"))

    async def fail(i: int) -> None:
        await store.record(
            RequestRecord(
                f"s{i}",
                "p" if i % 2 else None,
                key_id="k1" if i % 3 else None,
                model="m" if i % 2 else "",
                error=True,
                status=502 if i % 2 else 400,
                error_message=f"failure {i}",
                ended_at=1_767_225_600.0 + i,
            )
        )

    for i in range(1010):
        await fail(i)
    newest = await store.recent_errors(3)
    assert [(e.message, e.status, e.provider, e.key_id) for e in newest] == [
        ("failure 1009", 502, "p", "k1"),
        ("failure 1008", 400, None, None),
        ("failure 1007", 502, "p", "k1"),
    ]
    assert newest[0].at == 1_767_225_600.0 + 1009 and newest[0].session == "s1009"
    kept = await store.recent_errors(5000)
    assert len(kept) >= 1000
    assert [e.message for e in kept[:1000]] == [f"failure {i}" for i in range(1009, 9, -1)]
    assert "fine" not in {e.session for e in kept}

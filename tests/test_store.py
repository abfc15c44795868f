"""The shared store: migrations of an existing usage.sqlite3, and the lease and queue rules the
limits rest on (issue 16)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import trio

from tests.conftest import StartFake, StartRouter
from tests.test_client_keys import ADMIN, USER, answer, config, make_key
from trio_router.store import ClientKey, Limits, RequestRecord
from trio_router.store.sqlite import SQLiteStore, migrations

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
                "p": {
                    "inputTokens": 1005,
                    "outputTokens": 205,
                    "cacheReadTokens": 30,
                    "requests": 5,
                },
                "q": {"inputTokens": 10, "outputTokens": 2, "cacheReadTokens": 0, "requests": 1},
            },
            "totalInputTokens": 1015,
            "totalOutputTokens": 207,
            "totalRequests": 6,
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
    }
    versions = [v for v, _ in migrations()]
    conn = sqlite3.connect(directory / "usage.sqlite3")
    applied = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    conn.close()
    assert applied == versions and versions[:2] == [1, 2]
    # A restart (another worker, the same file) applies nothing twice and keeps the keys.
    again = SQLiteStore(directory / "usage.sqlite3")
    assert [k.id for k in await again.keys()] == [made["id"]]


def test_a_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "usage.sqlite3")
    conn = sqlite3.connect(tmp_path / "usage.sqlite3")
    conn.execute("INSERT INTO schema_version VALUES (999)")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this trio-router"):
        SQLiteStore(tmp_path / "usage.sqlite3")


def key(key_id: str, **limits: int) -> ClientKey:
    return ClientKey(
        id=key_id,
        name=key_id,
        user="",
        prefix="tr-xxxxxxxx",
        secret_hash=key_id * 4,
        limits=Limits(**limits),  # type: ignore[arg-type]
        routes=None,
        models=None,
        expires_at=None,
        disabled=False,
        created_at=time.time(),
    )


async def test_a_dead_workers_lease_expires_and_a_live_one_is_renewed(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "usage.sqlite3")
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


async def test_a_freed_slot_goes_to_the_key_holding_fewest(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "usage.sqlite3")

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


async def test_rpm_retry_after_counts_from_the_oldest_request(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "usage.sqlite3")
    limited = key("k2", rpm=3)
    for _ in range(3):
        assert await store.admit(limited, None, "w", 30.0) is None
    refusal = await store.admit(limited, None, "w", 30.0)
    assert refusal is not None and refusal.limit == "rpm" and 59 <= refusal.retry_after <= 60
    # Refusals do not count as requests in the window.
    conn = sqlite3.connect(tmp_path / "usage.sqlite3")
    assert conn.execute("SELECT COUNT(*) FROM rate_events").fetchone()[0] == 3
    conn.close()

"""The PostgreSQL store (issue 18): its URL and start-up checks, group commit, limits that hold
across nodes, and two router processes on one database.

The contract every store keeps runs on both backends in tests/test_store.py; these are what only
a shared store has to prove. Each test gets a fresh database on the run's one server
(tests/postgres.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest
import trio

from tests.conftest import ROOT, RouterProcess, StartFake, free_port
from tests.test_client_keys import ADMIN, USER, answer, config
from tests.test_store import key
from trio_router.config import ConfigError
from trio_router.store import ClientKey, Refusal, RequestRecord, check_url, open_store
from trio_router.store.postgres import PostgresStore, migrations

if TYPE_CHECKING:
    from tests.postgres import PostgresServer

pytest_plugins = ["tests.postgres"]


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    made = PostgresStore(postgres_url)
    yield made
    await made.aclose()


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


# The URL and the start-up checks.


def test_a_bad_or_unreachable_url_is_a_config_error_that_hides_the_password(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    closed = f"postgresql://trio:hunter2-secret@127.0.0.1:{postgres_server.port + 1}/x"
    with pytest.raises(ConfigError) as caught:
        check_url(closed)
    assert caught.value.source == "STORE_URL"
    assert "cannot open the PostgreSQL store" in str(caught.value)
    assert "hunter2-secret" not in caught.value.report()
    wrong = postgres_server.url().replace(postgres_server.password, "wrong-password-42")
    with pytest.raises(ConfigError, match="password authentication failed") as caught:
        open_store(tmp_path, wrong)
    assert "wrong-password-42" not in caught.value.report()
    with pytest.raises(ConfigError, match="port") as caught:
        check_url("postgresql://trio:hunter2-secret@127.0.0.1:notaport/x")
    assert "hunter2-secret" not in caught.value.report()
    with pytest.raises(ConfigError, match="is not a store URL") as caught:
        check_url("mysql://root:hunter2-secret@db/x")
    assert "hunter2-secret" not in caught.value.report()
    check_url("sqlite:///usage.sqlite3")  # a SQLite file is made by the workers
    open_store(tmp_path, "sqlite:///other.sqlite3")
    assert (tmp_path / "other.sqlite3").exists()


def test_start_with_an_unreachable_store_exits_1_with_a_clear_message(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text('{"LOG": false}')
    env = {k: v for k, v in os.environ.items() if k not in ("CONFIG_PATH", "HOST", "PORT")}
    env["STORE_URL"] = f"postgresql://trio:hunter2-secret@127.0.0.1:{postgres_server.port + 1}/x"
    done = subprocess.run(
        [sys.executable, "-m", "trio_router", "start", "--port", str(free_port())],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Invalid config STORE_URL:" in done.stderr
    assert "cannot open the PostgreSQL store" in done.stderr
    assert "Traceback" not in done.stderr and "hunter2-secret" not in done.stderr


def test_nodes_starting_together_migrate_once(postgres_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            PostgresStore(postgres_url, pool_size=1)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    applied = [r[0] for r in rows(postgres_url, "SELECT version FROM schema_version ORDER BY 1")]
    assert applied == [v for v, _ in migrations()] and applied[:2] == [1, 2]


def test_a_database_newer_than_the_code_is_refused(postgres_url: str) -> None:
    PostgresStore(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        conn.execute("INSERT INTO schema_version VALUES (999)")
    with pytest.raises(RuntimeError, match="newer than this trio-router"):
        PostgresStore(postgres_url)


# Group commit.


async def test_concurrent_records_are_committed_together_and_each_is_read_back(
    store: PostgresStore, postgres_url: str
) -> None:
    await store.create_key(key("k1"))

    async def one(i: int) -> None:
        await store.record(
            RequestRecord(
                f"s{i % 7}", "p", 3, 2, key_id="k1", rated=True, cost_usd=0.001,
                error=True, status=500, error_message="upstream 500",
            )
        )  # fmt: skip
        # Read after write: the caller's own row is committed when record() returns.
        mine = await store.session(f"s{i % 7}")
        assert mine is not None and mine.providers["p"].requests >= 1

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(one, i)
    totals = await store.totals()
    assert totals["totalRequests"] == 200 and totals["totalInputTokens"] == 600
    usage = await store.key_usage("k1")
    assert usage is not None and usage.total_requests == 200
    assert usage.cost_usd == pytest.approx(0.2)
    # One transaction stamps its rows with one clock reading (an error's ``at``, when the
    # record has no ``ended_at``): fewer stamps than records means they were committed together.
    stamps = rows(postgres_url, "SELECT COUNT(DISTINCT at), COUNT(*) FROM request_errors")
    assert stamps[0][1] == 200 and stamps[0][0] < 200


async def test_concurrent_admits_share_transactions_and_hold_the_limit(
    store: PostgresStore, postgres_url: str
) -> None:
    limited = key("k", rpm=50, concurrent=500)
    await store.create_key(limited)
    results: list[Refusal | None] = []

    async def admit(i: int) -> None:
        results.append(await store.admit(limited, f"lease-{i}", "w", 30.0))

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(admit, i)
    assert results.count(None) == 50
    assert {r.limit for r in results if r is not None} == {"rpm"}
    assert rows(postgres_url, "SELECT SUM(requests) FROM rate_buckets") == [(50,)]
    # A limits transaction reads the database's clock once: a lease's expiry is that clock
    # plus the TTL, so fewer distinct expiries than leases means admits ran together.
    stamps = rows(postgres_url, "SELECT COUNT(DISTINCT expires_at), COUNT(*) FROM leases")
    assert stamps[0][1] == 50 and stamps[0][0] < 50


async def test_two_nodes_batches_over_the_same_keys_never_deadlock(postgres_url: str) -> None:
    """Each batch takes its keys' and providers' locks in one order, whatever the order its
    calls came in; two nodes admitting the same keys in opposite orders all get answers."""
    nodes = [PostgresStore(postgres_url), PostgresStore(postgres_url)]
    keys = [key(f"k{i}", concurrent=10_000) for i in range(8)]
    for made in keys:
        await nodes[0].create_key(made)
    answers: list[Refusal | None] = []

    async def admit(node: PostgresStore, made: ClientKey, i: int) -> None:
        answers.append(await node.admit(made, f"{made.id}-{i}", "w", 30.0))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(40):
                for made in keys:
                    nursery.start_soon(admit, nodes[0], made, i)
                for made in reversed(keys):
                    nursery.start_soon(admit, nodes[1], made, 1000 + i)
                    nursery.start_soon(
                        nodes[1].take_slot, "p", 10_000, made.id, f"s-{made.id}-{i}", "w", 30.0
                    )
    assert answers == [None] * (2 * 40 * len(keys))
    assert rows(postgres_url, "SELECT COUNT(*) FROM leases") == [
        (2 * 40 * len(keys) + 40 * len(keys),)
    ]
    for node in nodes:
        await node.aclose()


async def test_a_record_whose_caller_is_cancelled_is_committed_all_the_same(
    store: PostgresStore,
) -> None:
    with trio.move_on_after(0) as scope:
        await store.record(RequestRecord("left", "p", 5, 5))
    assert scope.cancelled_caught is False  # shielded until its row was written
    with trio.CancelScope() as scope:
        scope.cancel()
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(store.record, RequestRecord("left", "p", 1, 1))
    await store.aclose()
    again = PostgresStore(store._url)
    found = await again.session("left")
    await again.aclose()
    assert found is not None and found.providers["p"].requests == 21


# Limits across nodes: two stores on one database stand for two nodes.


async def test_rpm_and_concurrent_hold_across_two_nodes(postgres_url: str) -> None:
    nodes = [PostgresStore(postgres_url), PostgresStore(postgres_url)]
    limited = key("k-rpm", rpm=7)
    capped = key("k-cap", concurrent=3)
    await nodes[0].create_key(limited)
    await nodes[0].create_key(capped)
    admitted: list[str] = []

    async def ask(i: int) -> None:
        node = nodes[i % 2]
        if await node.admit(limited, None, f"w{i}", 30.0) is None:
            admitted.append("rpm")
        if await node.admit(capped, f"lease-{i}", f"w{i}", 30.0) is None:
            admitted.append("cap")

    async with trio.open_nursery() as nursery:
        for i in range(40):
            nursery.start_soon(ask, i)
    assert admitted.count("rpm") == 7 and admitted.count("cap") == 3
    for node in nodes:
        await node.aclose()


async def test_a_providers_slots_hold_across_two_nodes(postgres_url: str) -> None:
    nodes = [PostgresStore(postgres_url), PostgresStore(postgres_url)]
    taken: list[str] = []

    async def take(i: int) -> None:
        if await nodes[i % 2].take_slot("p", 4, f"k{i % 3}", f"l{i}", "w", 30.0):
            taken.append(f"l{i}")

    async with trio.open_nursery() as nursery:
        for i in range(30):
            nursery.start_soon(take, i)
    assert len(taken) == 4
    for node in nodes:
        await node.aclose()


async def test_a_config_published_on_one_node_reaches_the_other(postgres_url: str) -> None:
    one, other = PostgresStore(postgres_url), PostgresStore(postgres_url)
    assert other.shares_config and await other.config_version() == 0
    got: list[Any] = []

    async def follow() -> None:
        got.append(await other.next_config(0))
        got.append(time.monotonic())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        await trio.sleep(0.3)  # the follower waits on its NOTIFY, not on the poll
        sent = time.monotonic()
        assert await one.publish_config('{"LOG": false}\n', "node-1") == 1
    shared, arrived = got
    assert (shared.version, shared.body, shared.origin) == (1, '{"LOG": false}\n', "node-1")
    assert arrived - sent < 0.5  # far under the poll's CONFIG_POLL: the NOTIFY woke it
    assert await one.publish_config("{}", "node-2") == 2
    assert (await other.next_config(1)).body == "{}"
    for node in (one, other):
        await node.aclose()


# Two router processes, separate data directories, one database.

StartProcess = Callable[..., RouterProcess]


async def two_nodes(
    router_process: StartProcess, tmp_path: Path, url: str, settings: dict[str, Any]
) -> list[str]:
    """Two ``trio-router start`` processes on one PostgreSQL (``STORE_URL`` in each one's
    environment, as a deployment sets it); their URLs."""
    started: list[str] = []
    for name in ("node-a", "node-b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(settings, indent=2))
        node = await trio.to_thread.run_sync(
            lambda f=folder: router_process(
                "--config", str(f / "config.json"), env={"STORE_URL": url}
            )
        )
        started.append(node.url)
    return started


async def make_key_on(url: str, **spec: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/api/keys", json=spec, headers=ADMIN)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def ask(url: str, secret: str, session: str = "s") -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.post(
            "/v1/messages",
            json={"model": "m", "max_tokens": 5, "messages": USER},
            headers={"x-api-key": secret, "x-session-id": session},
        )


async def test_two_nodes_sum_usage_exactly_and_share_keys_and_limits(
    start_fake: StartFake, router_process: StartProcess, tmp_path: Path, postgres_url: str
) -> None:
    fake = await start_fake(answer)
    a, b = await two_nodes(router_process, tmp_path, postgres_url, config(fake))
    made = await make_key_on(a, name="shared")
    statuses: list[int] = []

    async def one(i: int) -> None:
        statuses.append((await ask((a, b)[i % 2], made["key"], "both")).status_code)

    async with trio.open_nursery() as nursery:
        for i in range(60):
            nursery.start_soon(one, i)
    assert statuses == [200] * 60
    async with httpx.AsyncClient(timeout=30, headers=ADMIN) as http:
        for node in (a, b):
            session = (await http.get(f"{node}/api/usage/sessions/both")).json()
            assert session["providers"]["p"]["requests"] == 60
            assert session["totalInputTokens"] == 60 * 11
            usage = (await http.get(f"{node}/api/usage/keys/{made['id']}")).json()
            assert usage["totalRequests"] == 60 and usage["totalOutputTokens"] == 60 * 7

    # A key revoked on one node is refused by the other within a second.
    assert (await ask(b, made["key"])).status_code == 200
    async with httpx.AsyncClient(timeout=30, headers=ADMIN) as http:
        assert (await http.delete(f"{a}/api/keys/{made['id']}")).status_code == 200
    revoked = time.monotonic()
    while (status := (await ask(b, made["key"])).status_code) == 200:
        assert time.monotonic() - revoked < 1.0, "node b still accepts the revoked key"
        await trio.sleep(0.05)
    assert status == 401

    # An rpm limit counts the requests of both nodes together.
    limited = await make_key_on(b, name="rpm", limits={"rpm": 5})
    answers: list[int] = []

    async def limited_one(i: int) -> None:
        answers.append((await ask((a, b)[i % 2], limited["key"])).status_code)

    async with trio.open_nursery() as nursery:
        for i in range(16):
            nursery.start_soon(limited_one, i)
    assert sorted(answers) == [200] * 5 + [429] * 11

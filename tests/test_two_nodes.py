"""Two nodes, one database: two ``trio-router start`` processes with data directories of their
own and one PostgreSQL store (``STORE_URL``), behind deploy/nginx.conf.

What one node counts or decides, the other must see: usage totals exact under 200 concurrent
streams, a key revoked on one refused by the other within a second, an ``rpm`` limit that holds
across both (API.md, "Client keys" and "Limits").
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from tests import openai_wire as wire
from tests.conftest import RouterProcess, StartFake
from tests.fakeserver import Reply, Request
from tests.nginx import (
    StartNginx,
    router_config,
    start_nginx,  # noqa: F401  (the fixture)
)

pytest_plugins = ["tests.postgres"]  # postgres_url

APIKEY = "k-two-nodes-0123456789"
ADMIN = {"x-api-key": "admin-two-nodes-0123456789"}
MESSAGE = {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def provider(request: Request) -> Reply:
    """Every answer is 5 tokens in, 3 out; a stream takes about a second, so that 200 of them
    are open at once."""
    if request.json().get("stream"):
        frames = wire.text_stream(["a ", "b ", "c ", "d "], prompt=5, completion=3)
        return wire.stream_reply(frames, delay=0.12)
    return Reply.json(wire.completion("ok", prompt=5, completion_tokens=3))


async def two_nodes(
    start_fake: StartFake, router_process: Any, tmp_path: Path, store_url: str
) -> list[RouterProcess]:
    fake = await start_fake(provider)
    settings = {"APIKEY": APIKEY, "ADMIN_KEY": ADMIN["x-api-key"], "STORE_URL": store_url}
    configs = [router_config(tmp_path / name, fake.url, **settings) for name in ("a", "b")]
    return [
        await trio.to_thread.run_sync(partial(router_process, "--config", str(c))) for c in configs
    ]


def client(node: RouterProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=node.url, timeout=60, trust_env=False)


async def test_usage_totals_are_exact_across_nodes_under_200_concurrent_streams(
    start_fake: StartFake,
    router_process: Any,
    start_nginx: StartNginx,  # noqa: F811
    postgres_url: str,
    tmp_path: Path,
) -> None:
    nodes = await two_nodes(start_fake, router_process, tmp_path, postgres_url)
    nginx = await trio.to_thread.run_sync(lambda: start_nginx([n.port for n in nodes]))
    finished: list[bool] = []

    async def one(front: httpx.AsyncClient, i: int) -> None:
        body = {**MESSAGE, "stream": True}
        headers = {"x-api-key": APIKEY, "x-session-id": f"s{i % 4}"}
        async with front.stream("POST", "/v1/messages", json=body, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            text = (await response.aread()).decode()
        events = [line for line in text.splitlines() if line.startswith("event:")]
        finished.append(events[-1:] == ["event: message_stop"])

    async with nginx.client() as front, trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(one, front, i)
    assert len(finished) == 200 and all(finished)

    async def totals(node: RouterProcess) -> dict[str, Any]:
        async with client(node) as direct:
            response = await direct.get("/api/usage", headers=ADMIN)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    # Writes may be batched: wait until each node sees all 200, then the counts must be exact.
    for node in nodes:
        with trio.fail_after(10):
            while (seen := await totals(node))["totalRequests"] < 200:
                await trio.sleep(0.1)
        assert seen["totalRequests"] == 200, seen
        assert seen["totalInputTokens"] == 200 * 5, seen
        assert seen["totalOutputTokens"] == 200 * 3, seen
        assert seen["providers"]["fake"]["requests"] == 200, seen
        assert seen["sessions"] == 4, seen
    for name in ("a", "b"):
        log = (tmp_path / name / "logs" / "trio-router.log").read_text()
        assert "POST /v1/messages 200" in log, f"node {name} should have served streams"


async def make_key(node: RouterProcess, **fields: Any) -> dict[str, Any]:
    async with client(node) as direct:
        response = await direct.post(
            "/api/keys", json={"name": "two nodes", **fields}, headers=ADMIN
        )
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def ask(node: RouterProcess, key: str) -> httpx.Response:
    async with client(node) as direct:
        return await direct.post("/v1/messages", json=MESSAGE, headers={"x-api-key": key})


async def test_a_key_revoked_on_one_node_is_refused_by_the_other_within_a_second(
    start_fake: StartFake, router_process: Any, postgres_url: str, tmp_path: Path
) -> None:
    a, b = await two_nodes(start_fake, router_process, tmp_path, postgres_url)
    made = await make_key(a)
    # B knows a key made on A, and holds it in its cache when A revokes it.
    assert (await ask(b, made["key"])).status_code == 200
    async with client(a) as direct:
        response = await direct.delete(f"/api/keys/{made['id']}", headers=ADMIN)
    assert response.status_code == 200, response.text
    revoked = trio.current_time()
    while (answer := await ask(b, made["key"])).status_code == 200:
        assert trio.current_time() - revoked < 1.0, "node b still takes the revoked key"
        await trio.sleep(0.02)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["type"] == "authentication_error"
    assert (await ask(a, made["key"])).status_code == 401


async def test_an_rpm_limit_holds_across_both_nodes(
    start_fake: StartFake, router_process: Any, postgres_url: str, tmp_path: Path
) -> None:
    a, b = await two_nodes(start_fake, router_process, tmp_path, postgres_url)
    made = await make_key(a, limits={"rpm": 4})
    statuses = []
    for i in range(8):
        response = await ask((a, b)[i % 2], made["key"])
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.json()["error"]["type"] == "rate_limit_error", response.text
            assert int(response.headers["retry-after"]) >= 1
    # Two on each node are let in; the limit counts both, so every later one is refused.
    assert statuses == [200] * 4 + [429] * 4, statuses

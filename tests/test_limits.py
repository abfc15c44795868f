"""Per-key limits and a provider's fair-share cap, over the real server (issue 16).

The store decides every limit (see trio_router/limits.py), so the in-process server here
enforces them as several workers would; the per-worker parts (cache, leases) are covered by
the ``--workers 2`` test in test_client_keys.py and by test_store.py.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
import trio

from tests.conftest import RunningRouter, StartFake, StartRouter
from tests.fakeserver import Reply, Request
from tests.test_client_keys import ADMIN, USER, answer, config, make_key, sdk
from trio_router import limits


async def ask(router: RunningRouter, secret: str, stream: bool = False) -> None:
    """One request; a stream is read to its end."""
    client = sdk(router, secret)
    if stream:
        async with client.messages.stream(model="m", max_tokens=5, messages=USER) as events:
            await events.get_final_message()
    else:
        await client.messages.create(model="m", max_tokens=5, messages=USER)


async def key_usage(router: RunningRouter, key_id: str) -> dict[str, Any]:
    async with router.client(headers=ADMIN) as http:
        usage: dict[str, Any] = (await http.get(f"/api/usage/keys/{key_id}")).json()
    return usage


def refused(caught: pytest.ExceptionInfo[anthropic.RateLimitError]) -> int:
    """The 429's retry-after, after checking it is Anthropic's rate_limit_error."""
    error = caught.value
    assert error.status_code == 429
    assert error.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    return int(error.response.headers["retry-after"])


async def test_rpm_2_refuses_the_third_request_with_retry_after(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answer)
    router = await start_router(config(fake))
    made = await make_key(router, name="rpm", limits={"rpm": 2})
    other = await make_key(router, name="free")
    await ask(router, made["key"])
    await ask(router, made["key"], stream=True)
    with pytest.raises(anthropic.RateLimitError, match="requests per minute") as caught:
        await ask(router, made["key"])
    assert 55 <= refused(caught) <= 61  # its second's bucket leaves the window in 60-61 s
    assert len(fake.requests) == 2, "the refused request never went upstream"
    await ask(router, other["key"])  # another key is not limited by it
    usage = await key_usage(router, made["id"])
    assert usage["totalRequests"] == 3 and usage["rateLimited"] == 1
    assert usage["totalErrors"] == 1 and usage["providers"]["p"]["requests"] == 2


async def test_tpm_and_budget_refuse_once_spent(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answer)  # 11 + 7 = 18 tokens a request
    router = await start_router(config(fake))
    tpm = await make_key(router, name="tpm", limits={"tpm": 30})
    await ask(router, tpm["key"])  # 18 < 30: the next may start
    await ask(router, tpm["key"], stream=True)  # 36 now
    with pytest.raises(anthropic.RateLimitError, match="tokens per minute") as caught:
        await ask(router, tpm["key"])
    assert 55 <= refused(caught) <= 61

    daily = await make_key(router, name="day", limits={"budget_tokens": 10})
    await ask(router, daily["key"])
    with pytest.raises(anthropic.RateLimitError, match="token budget") as caught:
        await ask(router, daily["key"])
    # Until the next UTC midnight.
    assert 1 <= refused(caught) <= 86400
    monthly = await make_key(
        router, name="month", limits={"budget_tokens": 10, "budget_period": "month"}
    )
    await ask(router, monthly["key"])
    with pytest.raises(anthropic.RateLimitError) as caught:
        await ask(router, monthly["key"])
    assert refused(caught) <= 31 * 86400
    assert (await key_usage(router, daily["id"]))["rateLimited"] == 1


Gate = Callable[[Request], Awaitable[Reply]]


def gated() -> tuple[Gate, list[trio.Event], Callable[[int], Awaitable[None]]]:
    """A provider that holds each request open until the test releases it."""
    gates: list[trio.Event] = []

    async def handler(request: Request) -> Reply:
        gate = trio.Event()
        gates.append(gate)
        await gate.wait()
        return answer(request)

    async def until_open(n: int) -> None:
        with trio.fail_after(10):
            while sum(not g.is_set() for g in gates) < n:
                await trio.sleep(0.01)

    return handler, gates, until_open


async def test_concurrent_1_refuses_a_second_open_stream(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    handler, gates, until_open = gated()
    fake = await start_fake(handler)
    router = await start_router(config(fake))
    made = await make_key(router, name="one at a time", limits={"concurrent": 1})
    client = sdk(router, made["key"])

    async def stream() -> None:
        async with client.messages.stream(model="m", max_tokens=5, messages=USER) as s:
            await s.get_final_message()

    async def through() -> None:
        """One stream, its upstream answer let go as soon as it is asked."""
        async with trio.open_nursery() as nursery:

            async def release() -> None:
                await until_open(1)
                gates[-1].set()

            nursery.start_soon(release)
            await stream()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream)
        await until_open(1)
        with pytest.raises(anthropic.RateLimitError, match="concurrent") as caught:
            await stream()
        assert refused(caught) >= 1
        gates[0].set()
    await through()  # released when it ended: the next one runs

    # A stream the client leaves releases its slot too.
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream)
            await until_open(1)
            scope.cancel()
    gates[-1].set()
    with trio.fail_after(10):
        while True:
            try:
                await through()
                break
            except anthropic.RateLimitError:
                await trio.sleep(0.05)  # the router has not yet seen the client leave
    usage = await key_usage(router, made["id"])
    assert usage["rateLimited"] >= 1 and usage["providers"]["p"]["requests"] >= 4


async def test_two_keys_sharing_max_concurrent_2_each_get_one_slot(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    handler, gates, until_open = gated()
    fake = await start_fake(handler)
    cfg = config(fake)
    cfg["Providers"][0]["max_concurrent"] = 2
    router = await start_router(cfg)
    alice = (await make_key(router, name="alice"))["key"]
    bob = (await make_key(router, name="bob"))["key"]
    done: list[str] = []

    async def call(secret: str, tag: str) -> None:
        await sdk(router, secret).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": tag}]
        )
        done.append(tag)

    def upstream_tags() -> list[str]:
        return [r.json()["messages"][-1]["content"] for r in fake.requests]

    async with trio.open_nursery() as nursery:
        # Alice alone takes both slots (work-conserving); her third request waits.
        for tag in ("a1", "a2"):
            nursery.start_soon(call, alice, tag)
        await until_open(2)
        nursery.start_soon(call, alice, "a3")
        await trio.sleep(0.3)
        assert sorted(upstream_tags()) == ["a1", "a2"]
        nursery.start_soon(call, bob, "b1")
        await trio.sleep(0.3)  # bob is queued now, after a3
        assert len(fake.requests) == 2, "the cap holds"
        # A slot frees: it goes to bob, who holds none, not to alice's earlier a3.
        gates[0].set()
        await until_open(2)
        await trio.sleep(0.3)
        assert upstream_tags()[2] == "b1" and len(fake.requests) == 3
        # Now each key has one slot; alice's next waits for hers.
        gates[1].set()
        await until_open(2)
        assert upstream_tags()[3] == "a3"
        for gate in gates:
            gate.set()
        with trio.fail_after(10):
            while len(done) < 4:
                await trio.sleep(0.01)
                for gate in gates:
                    gate.set()
    assert sorted(done) == ["a1", "a2", "a3", "b1"]


async def test_a_request_waiting_too_long_for_a_slot_gets_429(
    start_router: StartRouter, start_fake: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "SLOT_WAIT_SECONDS", 0.5)
    handler, gates, until_open = gated()
    fake = await start_fake(handler)
    cfg = config(fake)
    cfg["Providers"][0]["max_concurrent"] = 1
    router = await start_router(cfg)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, router, "client-apikey-0123456789")
        await until_open(1)
        with pytest.raises(anthropic.RateLimitError, match="max_concurrent") as caught:
            await ask(router, "client-apikey-0123456789")
        assert refused(caught) >= 1
        gates[0].set()
    # The slot came back, and the waiter left the queue.
    async with trio.open_nursery() as nursery:

        async def release() -> None:
            await until_open(1)
            gates[-1].set()

        nursery.start_soon(release)
        await ask(router, "client-apikey-0123456789")
    async with httpx.AsyncClient(base_url=router.url, headers=ADMIN) as http:
        total = (await http.get("/api/usage")).json()
    assert total["totalRequests"] == 3  # the refused one counts too


async def test_limits_hold_across_two_workers(
    start_fake: StartFake, router_process: Any, tmp_path: Path
) -> None:
    handler, gates, until_open = gated()
    fake = await start_fake(handler)
    (tmp_path / "config.json").write_text(json.dumps(config(fake)))
    router = await trio.to_thread.run_sync(lambda: router_process("--workers", "2"))
    made = await make_key(router.url, name="shared", limits={"rpm": 5, "concurrent": 3})
    codes: list[int] = []

    async def one() -> None:
        # A new connection each time, so the kernel spreads them over both workers.
        async with httpx.AsyncClient(base_url=router.url, timeout=30) as fresh:
            response = await fresh.post(
                "/v1/messages",
                json={"model": "m", "max_tokens": 5, "messages": USER},
                headers={"x-api-key": made["key"]},
            )
        codes.append(response.status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(12):
            nursery.start_soon(one)
        # Three open at most, whichever worker holds them.
        await until_open(3)
        with trio.fail_after(10):
            while len(codes) < 9:
                await trio.sleep(0.01)
        assert sorted(codes) == [429] * 9 and len(fake.requests) == 3
        for gate in gates:
            gate.set()
    # Two more fit in the minute; then the rpm is spent for every worker.
    for _ in range(4):
        nursery_codes = len(codes)
        async with trio.open_nursery() as nursery:

            async def release() -> None:
                with trio.move_on_after(2):
                    await until_open(1)
                for gate in gates:
                    gate.set()

            nursery.start_soon(release)
            await one()
        assert len(codes) == nursery_codes + 1
    assert sorted(codes[12:]) == [200, 200, 429, 429]

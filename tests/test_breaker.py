"""The circuit breaker (issue 17): a provider that keeps failing is skipped for a cool-down,
then one request probes it."""

from __future__ import annotations

from typing import Any

import trio

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request

USER = [{"role": "user", "content": "hi"}]


class Flaky:
    def __init__(self) -> None:
        self.failing = True

    def __call__(self, request: Request) -> Reply:
        if self.failing:
            return wire.error_reply(502, "bad gateway", "server_error")
        return Reply.json(wire.completion("back"))


async def post(router: Any) -> Any:
    body = {"model": "claude-sonnet-4", "max_tokens": 20, "messages": USER}
    async with router.client() as client:
        return await client.post("/v1/messages", json=body)


BREAKER = {"BREAKER_FAILURES": 2, "BREAKER_COOLDOWN_MS": 1000}


async def test_the_breaker_opens_and_recovers(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    flaky = Flaky()
    fake = await start_fake(flaky)
    router = await start_router(
        {
            **BREAKER,
            "Providers": [provider_config(fake, name="p", models=["m"], retries=0)],
            "Router": {"default": "p,m"},
        }
    )
    for _ in range(2):
        assert (await post(router)).status_code == 502
    assert len(fake.requests) == 2
    skipped = await post(router)  # open: answered without asking the provider
    assert skipped.status_code == 503
    assert skipped.json()["error"]["type"] == "overloaded_error"
    assert "circuit breaker" in skipped.json()["error"]["message"]
    assert skipped.headers["retry-after"] == "1"
    assert len(fake.requests) == 2
    await trio.sleep(1.1)
    flaky.failing = False
    probe = await post(router)
    assert probe.status_code == 200, probe.text
    assert (await post(router)).status_code == 200
    assert len(fake.requests) == 4


async def test_a_failed_probe_opens_it_again(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(Flaky())
    router = await start_router(
        {
            **BREAKER,
            "Providers": [provider_config(fake, name="p", models=["m"], retries=0)],
            "Router": {"default": "p,m"},
        }
    )
    for _ in range(2):
        await post(router)
    await trio.sleep(1.1)
    assert (await post(router)).status_code == 502  # the probe
    assert (await post(router)).status_code == 503  # open again at once
    assert len(fake.requests) == 3


async def test_an_open_breaker_goes_straight_to_the_fallback(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(Flaky())
    backup = await start_fake(lambda r: Reply.json(wire.completion("backup")))
    router = await start_router(
        {
            **BREAKER,
            "Providers": [
                provider_config(fake, name="p", models=["m"], retries=0),
                provider_config(backup, name="b", models=["m"]),
            ],
            "Router": {"default": ["p,m", "b,m"]},
        }
    )
    for _ in range(4):
        response = await post(router)
        assert response.json()["content"][0]["text"] == "backup"
    assert len(fake.requests) == 2  # then skipped
    assert len(backup.requests) == 4

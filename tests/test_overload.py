"""Overload shedding (issue 17): past MAX_OPEN_STREAMS a new request is told to come back at
once, and the streams already open keep flowing."""

from __future__ import annotations

import trio

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request

USER = [{"role": "user", "content": "hi"}]
PARTS = [f"w{i} " for i in range(12)]


def slow_stream(request: Request) -> Reply:
    return wire.stream_reply(wire.text_stream(PARTS), delay=0.1)


async def test_overload_is_an_immediate_529_and_open_streams_flow(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(slow_stream)
    router = await start_router(
        {
            "MAX_OPEN_STREAMS": 2,
            "Providers": [provider_config(fake, name="p", models=["m"])],
            "Router": {"default": "p,m"},
        }
    )
    body = {"model": "claude-sonnet-4", "max_tokens": 20, "messages": USER, "stream": True}
    texts: list[str] = []
    gaps: list[float] = []

    async def stream() -> None:
        async with (
            router.client() as client,
            client.stream("POST", "/v1/messages", json=body) as response,
        ):
            assert response.status_code == 200
            last = trio.current_time()
            text = ""
            async for piece in response.aiter_text():
                now = trio.current_time()
                gaps.append(now - last)
                last = now
                text += piece
            texts.append(text)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream)
        nursery.start_soon(stream)
        with trio.fail_after(5):
            while len(fake.requests) < 2:
                await trio.sleep(0.01)
        async with router.client() as client:
            started = trio.current_time()
            for _ in range(5):
                refused = await client.post("/v1/messages", json=body)
                assert refused.status_code == 529
                assert refused.json()["error"]["type"] == "overloaded_error"
                assert refused.headers["retry-after"] == "1"
            assert trio.current_time() - started < 2  # answered, not queued
    assert len(texts) == 2
    for text in texts:
        assert "w11" in text and "message_stop" in text
    assert max(gaps) < 2  # generous: chunks come every 0.1 s
    assert len(fake.requests) == 2
    async with router.client() as client:  # and the next one, once they ended, is served
        assert (await client.post("/v1/messages", json=body)).status_code == 200

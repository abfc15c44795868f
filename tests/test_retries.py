"""Retries before the first byte (issue 17): the real server against a fake OpenAI-compatible
provider that fails on purpose."""

from __future__ import annotations

from typing import Any

import trio

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request
from trio_router.retry import hinted_delay

USER = [{"role": "user", "content": "hi"}]


def failing(statuses: list[int], headers: list[tuple[str, str]] | None = None) -> Any:
    """Answers each status of ``statuses`` in turn (an OpenAI error body), then 200."""
    left = list(statuses)

    def answer(request: Request) -> Reply:
        if left:
            status = left.pop(0)
            return wire.error_reply(status, f"failure {status}", "server_error", headers or [])
        if request.json().get("stream"):
            return wire.stream_reply(wire.text_stream(["he", "llo"]))
        return Reply.json(wire.completion("hello"))

    return answer


def config(fake: Any, **extra: Any) -> dict[str, Any]:
    return {
        "Providers": [provider_config(fake, name="p", models=["m"], **extra)],
        "Router": {"default": "p,m"},
    }


async def post(router: Any, stream: bool = False) -> Any:
    body = {"model": "claude-sonnet-4", "max_tokens": 20, "messages": USER, "stream": stream}
    async with router.client() as client:
        return await client.post("/v1/messages", json=body)


async def test_503_twice_then_200_is_one_success(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(failing([503, 503]))
    router = await start_router(config(fake))
    started = trio.current_time()
    response = await post(router)
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "hello"
    assert len(fake.requests) == 3
    # Full jitter: at most 0.5 s then 1 s of waiting, well inside the 30 s budget.
    assert trio.current_time() - started < 10


async def test_streamed_request_is_retried_before_its_first_byte(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(failing([500, 529]))
    router = await start_router(config(fake))
    response = await post(router, stream=True)
    assert response.status_code == 200
    assert '"text":"llo"' in response.text.replace(" ", "")
    assert "event: error" not in response.text
    assert len(fake.requests) == 3


async def test_429_waits_for_its_retry_after(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(failing([429], [("retry-after", "1")]))
    router = await start_router(config(fake))
    started = trio.current_time()
    response = await post(router)
    assert response.status_code == 200, response.text
    assert len(fake.requests) == 2
    assert trio.current_time() - started >= 1.0


async def test_retries_run_out_and_the_client_gets_the_error(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(failing([503] * 10, [("retry-after", "0")]))
    router = await start_router(config(fake, retries=1))
    response = await post(router)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "overloaded_error"
    assert len(fake.requests) == 2  # the first attempt and its one retry


async def test_a_wait_past_the_budget_is_not_taken(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(failing([429], [("retry-after", "5")]))
    router = await start_router(config(fake, retry_budget_ms=1000))
    started = trio.current_time()
    response = await post(router)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"  # the client may wait it itself
    assert len(fake.requests) == 1
    assert trio.current_time() - started < 4


async def test_client_errors_are_never_retried(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    for status in (400, 401, 403, 404, 413):
        fake = await start_fake(failing([status]))
        router = await start_router(config(fake))
        response = await post(router)
        assert response.status_code == status, (status, response.text)
        assert len(fake.requests) == 1, status


async def test_a_connection_refused_is_retried(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    dead = {"name": "p", "api_base_url": "http://127.0.0.1:9/v1/chat/completions"}
    router = await start_router(
        {
            "LOG": True,
            "Providers": [{**dead, "api_key": "k-123456789", "models": ["m"]}],
            "Router": {"default": "p,m"},
        }
    )
    response = await post(router)
    assert response.status_code == 502
    log = router.log_file.read_text()
    assert "retry 1 of 2" in log and "retry 2 of 2" in log


async def test_a_stream_that_failed_after_its_first_byte_is_not_retried(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    def cut(request: Request) -> Reply:
        frames = wire.text_stream(["partial"])[:2]
        return wire.stream_reply(frames, then="cut")

    fake = await start_fake(cut)
    router = await start_router(config(fake))
    response = await post(router, stream=True)
    assert response.status_code == 200  # the head went out with the first byte
    assert "event: error" in response.text
    assert len(fake.requests) == 1


def test_retry_hints() -> None:
    assert hinted_delay({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert hinted_delay({"retry-after": "3"}) == 3.0
    assert hinted_delay({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480) == 10
    assert hinted_delay({"x-ratelimit-reset": "1445412490000"}, now=1445412480) == 10
    assert hinted_delay({"retry-after": "soon"}) is None
    assert hinted_delay({}) is None

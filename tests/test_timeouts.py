"""The three upstream timeouts through the real server, each at its own small setting while the
other two are long: connect (TCP, a proxy's tunnel, TLS), first byte (the response head), and
idle (between body reads, ``API_TIMEOUT_MS``); each error names the one that fired.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request

ASK = {
    "model": "fake,fake-model",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}
LONG = 20_000
# Far above each small setting, far below the long ones: the one that fired is the small one.
BOUND = 5.0


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def silent_listener(nursery: trio.Nursery) -> int:
    """A port that accepts connections and never says a word: no TLS handshake, no answer to
    CONNECT."""

    async def hold(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, hold, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


def settings(
    connect: int = LONG, first_byte: int = LONG, idle: int = LONG, **provider: Any
) -> dict[str, Any]:
    return {
        "CONNECT_TIMEOUT_MS": connect,
        "FIRST_BYTE_TIMEOUT_MS": first_byte,
        "API_TIMEOUT_MS": idle,
        "Router": {"default": "fake,fake-model"},
        **provider,
    }


async def timed(url: str, **extra: Any) -> tuple[httpx.Response, float]:
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:
        started = trio.current_time()
        response = await client.post("/v1/messages", json={**ASK, **extra})
        return response, trio.current_time() - started


def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, str(response.json()["error"]["message"])


def stream_error(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    assert events[-1]["type"] == "error", events
    return str(events[-1]["error"]["message"])


async def test_connect_timeout_covers_the_tls_handshake(
    nursery: trio.Nursery, start_router: StartRouter
) -> None:
    port = await silent_listener(nursery)
    provider = {
        "name": "fake",
        "api_base_url": f"https://127.0.0.1:{port}/v1/chat/completions",
        "models": ["fake-model"],
    }
    router = await start_router(settings(connect=300, Providers=[provider]))
    response, took = await timed(router.url)
    assert error_of(response) == (
        504,
        "provider 'fake' timed out: could not connect within 0.3 s (connect timeout)",
    )
    assert 0.3 <= took < BOUND


async def test_connect_timeout_covers_the_proxy_tunnel(
    nursery: trio.Nursery, start_router: StartRouter
) -> None:
    port = await silent_listener(nursery)
    provider = {
        "name": "fake",
        "api_base_url": "https://localhost:1/v1/chat/completions",
        "models": ["fake-model"],
        "proxy": f"http://127.0.0.1:{port}",
    }
    router = await start_router(settings(connect=400, Providers=[provider]))
    response, took = await timed(router.url)
    assert error_of(response) == (
        504,
        f"provider 'fake' timed out: could not connect through proxy http://127.0.0.1:{port} "
        "within 0.4 s (connect timeout)",
    )
    assert 0.4 <= took < BOUND


@pytest.mark.parametrize("stream", [False, True])
async def test_first_byte_timeout_when_no_headers_come(
    start_router: StartRouter, start_fake: StartFake, stream: bool
) -> None:
    async def never_answers(request: Request) -> Reply:
        await trio.sleep(30)
        return Reply.json({})

    fake = await start_fake(never_answers)
    router = await start_router(settings(first_byte=300, Providers=[provider_config(fake)]))
    response, took = await timed(router.url, stream=stream)
    assert error_of(response) == (
        504,
        "provider 'fake' timed out: it sent no response headers within 0.3 s (first-byte timeout)",
    )
    assert 0.3 <= took < BOUND


async def test_idle_timeout_mid_stream_is_an_error_event(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    frames = wire.text_stream(["partial"])[:2]
    fake = await start_fake(lambda request: wire.stream_reply(frames, then="hang"))
    router = await start_router(settings(idle=300, Providers=[provider_config(fake)]))
    response, took = await timed(router.url, stream=True)
    assert stream_error(response) == (
        "provider 'fake' timed out: it was silent for 0.3 s (idle timeout, API_TIMEOUT_MS)"
    )
    assert '"text":"partial"' in response.text
    assert 0.3 <= took < BOUND


async def test_idle_timeout_in_an_answer_body_is_a_504(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    body = json.dumps(wire.completion("cut short")).encode()
    fake = await start_fake(
        lambda request: Reply(200, [("content-type", "application/json")], [body[:20]], then="hang")
    )
    router = await start_router(settings(idle=300, Providers=[provider_config(fake)]))
    response, took = await timed(router.url)
    assert error_of(response) == (
        504,
        "provider 'fake' timed out: it was silent for 0.3 s (idle timeout, API_TIMEOUT_MS)",
    )
    assert 0.3 <= took < BOUND


async def test_each_timeout_leaves_the_other_phases_alone(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    """Slow headers under a short idle timeout, and slow chunks under a short first-byte one,
    both succeed: each timeout bounds its own phase only."""

    async def slow_head(request: Request) -> Reply:
        await trio.sleep(0.6)
        return Reply.json(wire.completion("slow head"))

    slow_chunks = wire.stream_reply(wire.text_stream(["slow ", "chunks"]), delay=0.3)
    head_fake = await start_fake(slow_head)
    chunk_fake = await start_fake(lambda request: slow_chunks)
    providers = [provider_config(head_fake), provider_config(chunk_fake, name="chunks")]
    router = await start_router(settings(first_byte=2000, idle=300, Providers=providers))
    response, _ = await timed(router.url)
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "slow head"

    router = await start_router(settings(first_byte=200, idle=2000, Providers=providers))
    response, took = await timed(router.url, model="chunks,fake-model", stream=True)
    assert response.status_code == 200, response.text
    assert '"type":"error"' not in response.text
    assert "chunks" in response.text and took >= 0.9

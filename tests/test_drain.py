"""SIGTERM drains ``trio-router start``: open streams finish (or, past DRAIN_TIMEOUT_MS, end
with an SSE error), health says 503, new connections are refused, and it exits 0 early."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests import openai_wire as wire
from tests.conftest import StartFake
from tests.fakeserver import FakeServer, Reply, Request
from trio_router.store import open_store

KEY = "k-drain-0123456789"
BODY = {
    "model": "m",
    "max_tokens": 50,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}
PARTS = [f"part{i} " for i in range(8)]


def _config(tmp_path: Path, fake: FakeServer, drain_ms: int) -> None:
    config = {
        "APIKEY": KEY,
        "HOST": "127.0.0.1",
        "DRAIN_TIMEOUT_MS": drain_ms,
        "Providers": [
            {"name": "fake", "api_base_url": fake.url + "/v1/chat/completions", "models": ["m"]}
        ],
        "Router": {"default": "fake,m"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))


def _raw(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on a kept-alive connection, and its response (status, headers, body)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed without a response")
        data += more
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def _kept_alive(port: int) -> socket.socket:
    """A connection that has served one health check and stays open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    status, _, _ = _raw(sock, b"GET / HTTP/1.1\r\nhost: router\r\n\r\n")
    assert status == 200
    return sock


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def _events(text: str) -> list[str]:
    return [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")]


async def _usage(tmp_path: Path) -> dict[str, Any]:
    store = open_store(tmp_path)
    try:
        return dict(await store.totals())
    finally:
        await store.aclose()


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_stream_open_at_sigterm_finishes_whole(
    start_fake: StartFake, router_process: Any, tmp_path: Path, workers: str
) -> None:
    def handler(request: Request) -> Reply:
        if not request.json().get("stream"):
            return Reply.json(wire.completion("late", prompt=3, completion_tokens=2))
        # 11 s: longer than the 10 s graceful_timeout hypercorn used to cut streams at.
        return wire.stream_reply(wire.text_stream(PARTS, prompt=5, completion=8), delay=1.0)

    fake = await start_fake(handler)
    _config(tmp_path, fake, drain_ms=60_000)
    router = await trio.to_thread.run_sync(lambda: router_process("--workers", workers))
    # Kept-alive connections opened before SIGTERM: requests on them are still served while
    # their worker drains, and their connection then closes. (With two, the other worker has
    # nothing open: it exits at once.)
    health_conn = await trio.to_thread.run_sync(_kept_alive, router.port)
    post_conn = await trio.to_thread.run_sync(_kept_alive, router.port)
    alone = workers == "1"
    headers = {"x-api-key": KEY}
    async with (
        httpx.AsyncClient(base_url=router.url, timeout=60) as client,
        client.stream("POST", "/v1/messages", json=BODY, headers=headers) as response,
    ):
        assert response.status_code == 200
        chunks = response.aiter_text()
        text = await chunks.__anext__()
        os.kill(router.process.pid, signal.SIGTERM)
        signalled = time.monotonic()
        with trio.fail_after(10):
            while not await trio.to_thread.run_sync(_refused, router.port):
                await trio.sleep(0.05)
        if alone:
            status, health_headers, health = await trio.to_thread.run_sync(
                _raw, health_conn, b"GET / HTTP/1.1\r\nhost: router\r\n\r\n"
            )
            assert status == 503
            assert json.loads(health)["status"] == "draining"
            assert health_headers["connection"] == "close"
            body = json.dumps({**BODY, "stream": False}).encode()
            status, post_headers, answer = await trio.to_thread.run_sync(
                _raw,
                post_conn,
                b"POST /v1/messages HTTP/1.1\r\nhost: router\r\ncontent-type: application/json"
                + f"\r\nx-api-key: {KEY}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                + body,
            )
            assert status == 200
            assert json.loads(answer)["content"] == [{"type": "text", "text": "late"}]
            assert post_headers["connection"] == "close"
        async for piece in chunks:
            text += piece
    assert _events(text)[-1] == "message_stop"
    assert "".join(PARTS) == "".join(
        json.loads(line[6:])["delta"]["text"]
        for line in text.splitlines()
        if line.startswith("data: ") and '"text_delta"' in line
    )
    code = await trio.to_thread.run_sync(lambda: router.process.wait(timeout=50))
    assert code == 0
    # It exits once the stream ended, not at the end of the 60 s drain timeout.
    assert time.monotonic() - signalled < 40
    usage = await _usage(tmp_path)
    served = (2, 10) if alone else (1, 8)  # the late request too
    assert (usage["totalRequests"], usage["totalOutputTokens"]) == served


async def test_past_the_drain_timeout_a_stream_gets_an_error_event(
    start_fake: StartFake, router_process: Any, tmp_path: Path
) -> None:
    def handler(request: Request) -> Reply:
        frames = wire.sse([wire.chunk({"role": "assistant", "content": "started"})], done=False)
        return wire.stream_reply(frames, then="hang")  # never ends: only a cut ends it

    fake = await start_fake(handler)
    _config(tmp_path, fake, drain_ms=1500)
    router = await trio.to_thread.run_sync(router_process)
    async with (
        httpx.AsyncClient(base_url=router.url, timeout=60) as client,
        client.stream("POST", "/v1/messages", json=BODY, headers={"x-api-key": KEY}) as response,
    ):
        chunks = response.aiter_text()
        text = ""
        with trio.fail_after(10):
            while "started" not in text:
                text += await chunks.__anext__()
            os.kill(router.process.pid, signal.SIGTERM)
        with trio.fail_after(30):
            async for piece in chunks:
                text += piece
    assert _events(text)[-1] == "error"
    error = json.loads(text.rstrip().splitlines()[-1][len("data: ") :])
    assert error["type"] == "error"
    assert error["error"]["type"] == "overloaded_error"
    with trio.fail_after(10):
        while not fake.closed_at:  # the provider saw its request cancelled
            await trio.sleep(0.05)
    code = await trio.to_thread.run_sync(lambda: router.process.wait(timeout=30))
    assert code == 0
    assert (await _usage(tmp_path))["totalRequests"] == 1
    store = open_store(tmp_path)
    try:
        errors = await store.recent_errors(10)
    finally:
        await store.aclose()
    assert [(e.status, e.provider) for e in errors] == [(503, "fake")]  # counted as an error

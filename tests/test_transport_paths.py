"""The upstream transport's rarer paths, through the real router to a raw loopback server that
writes what h11 would never send: a pooled connection reset by the provider (retried on a new
connection), a response head past the 64 KiB limit, and a non-chunked Transfer-Encoding (the body
is then read to the connection's close, RFC 9112 §6.3)."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from tests import openai_wire as wire
from tests.conftest import RunningRouter, StartRouter

ASK = {"model": "fake,m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
ANSWER = json.dumps(wire.completion("Hi there")).encode()
Script = Callable[[trio.SocketStream, int], Awaitable[None]]


async def read_request(stream: trio.SocketStream, buffer: bytearray) -> bool:
    """Reads one request with a Content-Length body into nothing; False at EOF."""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            return False
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        data = await stream.receive_some(65536)
        if not data:
            return False
        rest += data
    buffer[:] = rest[length:]
    return True


def sized(body: bytes, *headers: bytes) -> bytes:
    fields = b"".join(h + b"\r\n" for h in headers)
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + fields
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


async def serve(nursery: trio.Nursery, script: Script) -> tuple[str, list[int]]:
    """A raw server running ``script(stream, n)`` for the n-th connection, and the list of
    connections it accepted."""
    counts: list[int] = []

    async def handle(stream: trio.SocketStream) -> None:
        counts.append(len(counts) + 1)
        try:
            await script(stream, len(counts))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}", counts


async def router_at(start_router: StartRouter, url: str) -> RunningRouter:
    provider = {
        "name": "fake",
        "api_base_url": url + "/v1/chat/completions",
        "api_key": "sk-fake-provider-key-0123456789",
        "models": ["m"],
    }
    return await start_router({"Providers": [provider], "Router": {"default": "fake,m"}})


async def test_a_pooled_connection_reset_by_the_provider_is_retried(
    start_router: StartRouter, nursery: trio.Nursery
) -> None:
    async def script(stream: trio.SocketStream, n: int) -> None:
        buffer = bytearray()
        answered = 0
        while await read_request(stream, buffer):
            if n == 1 and answered == 1:
                # The second request on the kept-alive connection: reset it (RST, not FIN).
                stream.socket.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                return
            await stream.send_all(sized(ANSWER))
            answered += 1

    url, counts = await serve(nursery, script)
    router = await router_at(start_router, url)
    async with router.client() as client:
        first = await client.post("/v1/messages", json=ASK)
        second = await client.post("/v1/messages", json=ASK)
    assert first.status_code == second.status_code == 200, second.text
    assert second.json()["content"][0]["text"] == "Hi there"
    assert len(counts) == 2  # the retry went on a new connection


async def test_a_response_head_over_64_kib_is_a_502(
    start_router: StartRouter, nursery: trio.Nursery
) -> None:
    async def script(stream: trio.SocketStream, n: int) -> None:
        if await read_request(stream, bytearray()):
            pad = b"x-pad: " + b"a" * 1000 + b"\r\n"
            await stream.send_all(b"HTTP/1.1 200 OK\r\n" + pad * 70)
            await trio.sleep(5)

    url, _ = await serve(nursery, script)
    router = await router_at(start_router, url)
    async with router.client() as client:
        response = await client.post("/v1/messages", json=ASK)
    assert response.status_code == 502
    assert response.json()["error"] == {
        "type": "api_error",
        "message": "connection to provider 'fake' failed: RemoteProtocolError: "
        "response head too large",
    }


async def test_a_non_chunked_transfer_encoding_is_read_to_the_close(
    start_router: StartRouter, nursery: trio.Nursery
) -> None:
    async def script(stream: trio.SocketStream, n: int) -> None:
        if await read_request(stream, bytearray()):
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"transfer-encoding: identity\r\n\r\n" + ANSWER[:20]
            )
            await trio.sleep(0.05)
            await stream.send_all(ANSWER[20:])

    url, counts = await serve(nursery, script)
    router = await router_at(start_router, url)
    async with router.client() as client:
        first = await client.post("/v1/messages", json=ASK)
        again = await client.post("/v1/messages", json=ASK)
    assert first.status_code == 200, first.text
    assert first.json()["content"][0]["text"] == "Hi there"
    assert again.status_code == 200
    assert len(counts) == 2  # a body read to the close leaves no connection to reuse

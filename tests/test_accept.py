"""The worker's accept loop (trio_router/accept.py, used by workers._serve): a burst of
connections already waiting in the backlog is taken in a few loop passes, not one pass per
connection as with trio.serve_listeners; every one is served; after SIGTERM nothing more is
accepted."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.utils import wrap_app

from tests.conftest import free_port
from tests.test_drain import _refused
from trio_router import workers
from trio_router.drain import Drain

BURST = 300
REQUEST = b"GET /n HTTP/1.1\r\nhost: router\r\n\r\n"


def _counting_app(seen: list[int], all_in: trio.Event) -> Callable[..., Any]:
    """An ASGI app answering each request with its arrival number; ``all_in`` is set when
    :data:`BURST` requests have arrived."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        seen.append(len(seen) + 1)
        if len(seen) == BURST:
            all_in.set()
        body = str(seen[-1]).encode()
        length = str(len(body)).encode()
        headers = [(b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def _read_body(sock: trio.socket.SocketType) -> bytes:
    """One response's body (it has a content-length)."""
    data = b""
    while True:
        head, _, body = data.partition(b"\r\n\r\n")
        if _ and len(body) >= int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]):
            return body
        more = await sock.recv(65536)
        assert more, f"closed before a whole response: {data!r}"
        data += more


async def test_a_burst_waiting_in_the_backlog_is_accepted_in_a_few_loop_passes() -> None:
    port = free_port()
    [listening] = workers.listen("127.0.0.1", port, 1, 4096)
    # The burst: connected (the kernel completes the handshakes into the backlog) and each
    # request sent before the worker takes the first one.
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(BURST)]
    for client in clients:
        client.sendall(REQUEST)
    seen: list[int] = []
    all_in = trio.Event()
    app = wrap_app(_counting_app(seen, all_in), 2**24, "asgi")
    passes = 0

    async def count_passes() -> None:
        nonlocal passes
        while not all_in.is_set():
            await trio.lowlevel.checkpoint()  # runs once per scheduler pass
            passes += 1

    hc = HypercornConfig()
    serve = partial(workers._serve, app, hc, listening, Drain(), 5.0, None)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            nursery.start_soon(count_passes)
            await all_in.wait()
            answers: list[bytes] = []

            async def read(client: socket.socket) -> None:
                answers.append(await _read_body(trio.socket.from_stdlib_socket(client)))

            async with trio.open_nursery() as readers:
                for client in clients:
                    readers.start_soon(read, client)
            os.kill(os.getpid(), signal.SIGTERM)  # the worker drains: its listener closes
            while not await trio.to_thread.run_sync(_refused, port):
                await trio.sleep(0.05)
    for client in clients:
        client.close()
    assert sorted(int(answer) for answer in answers) == list(range(1, BURST + 1))
    # trio.serve_listeners needs a pass per connection (BURST at least); batches of up to
    # accept.BATCH take BURST / BATCH wakes, plus hypercorn's few passes per request.
    assert passes < BURST / 3, passes


async def test_a_real_router_serves_a_burst_and_accepts_nothing_after_sigterm(
    router_process: Any,
) -> None:
    router = await trio.to_thread.run_sync(router_process)

    async def health(client: httpx.AsyncClient, codes: list[int]) -> None:
        codes.append((await client.get("/")).status_code)

    codes: list[int] = []
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    async with (
        httpx.AsyncClient(base_url=router.url, timeout=60, limits=limits) as client,
        trio.open_nursery() as nursery,
    ):
        for _ in range(BURST):
            nursery.start_soon(health, client, codes)
    assert codes == [200] * BURST
    os.kill(router.process.pid, signal.SIGTERM)
    with trio.fail_after(10):
        while not await trio.to_thread.run_sync(_refused, router.port):
            await trio.sleep(0.05)
    code = await trio.to_thread.run_sync(lambda: router.process.wait(timeout=30))
    assert code == 0

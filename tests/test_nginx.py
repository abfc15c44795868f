"""deploy/nginx.conf run by Debian's nginx in front of two ``trio-router start`` processes.

Streams must reach the client event by event, a client that leaves must free the provider, and
neither ``nginx -s reload`` nor a router restarted with SIGTERM may cut a stream that started.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from tests import openai_wire as wire
from tests.conftest import RouterProcess, StartFake, free_port
from tests.fakeserver import Reply, Request
from tests.nginx import (
    Nginx,
    StartNginx,
    router_config,
    start_nginx,  # noqa: F401  (the fixture)
)

BODY = {
    "model": "m",
    "max_tokens": 50,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


def streaming(parts: int, delay: float, then: str = "end") -> Callable[[Request], Reply]:
    """A provider that streams ``parts`` text deltas, ``delay`` seconds before each frame."""
    frames = wire.text_stream([f"p{i} " for i in range(parts)], prompt=5, completion=3)
    if then == "hang":
        frames = frames[: parts + 1]  # the role and the text deltas, then nothing more

    def handler(request: Request) -> Reply:
        return wire.stream_reply(frames, delay=delay, then=then)

    return handler


async def two_routers(
    router_process: Callable[..., RouterProcess], tmp_path: Path, url: str, **settings: Any
) -> list[RouterProcess]:
    """Two routers with data directories of their own, in front of the same provider."""
    configs = [router_config(tmp_path / name, url, **settings) for name in ("a", "b")]
    return [
        await trio.to_thread.run_sync(partial(router_process, "--config", str(c))) for c in configs
    ]


async def behind_nginx(start: StartNginx, routers: list[RouterProcess]) -> Nginx:
    return await trio.to_thread.run_sync(lambda: start([r.port for r in routers]))


@dataclass
class Stream:
    """One streamed request through nginx: its status and each SSE event with its arrival."""

    status: int = 0
    events: list[tuple[str, float]] = field(default_factory=list)
    error: str = ""  # the error body's error.type, when not a 200

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    @property
    def started(self) -> bool:
        return self.names[:1] == ["message_start"]

    @property
    def finished(self) -> bool:
        return self.names[-1:] == ["message_stop"]


async def stream(client: httpx.AsyncClient, into: list[Stream] | None = None) -> Stream:
    """POST a streamed message; the events as they arrive (SSE: one ``event:`` line each,
    https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)."""
    result = Stream()
    if into is not None:
        into.append(result)
    try:
        async with client.stream("POST", "/v1/messages", json=BODY) as response:
            result.status = response.status_code
            if response.status_code != 200:
                result.error = json.loads(await response.aread())["error"]["type"]
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    result.events.append((line[6:].strip(), trio.current_time()))
    except httpx.HTTPError as error:
        result.events.append((f"transport error: {error!r}", trio.current_time()))
    return result


def served(directory: Path) -> int:
    """How many messages the router with data directory ``directory`` logged as answered."""
    log = directory / "logs" / "trio-router.log"
    return log.read_text().count("POST /v1/messages 200") if log.exists() else 0


def connections_to(port: int) -> int:
    """Established TCP connections to loopback ``port``, as the kernel lists them
    (/proc/net/tcp: local address as hex ``IP:PORT``, state ``01`` = ESTABLISHED)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1
        for line in lines
        if (fields := line.split())[1].endswith(f":{port:04X}") and fields[3] == "01"
    )


async def test_chunks_arrive_one_by_one_through_nginx(
    start_fake: StartFake,
    router_process: Any,
    start_nginx: StartNginx,  # noqa: F811
    tmp_path: Path,
) -> None:
    fake = await start_fake(streaming(parts=10, delay=0.3))
    nginx = await behind_nginx(start_nginx, await two_routers(router_process, tmp_path, fake.url))
    async with nginx.client() as client:
        result = await stream(client)
    assert result.status == 200 and result.finished, (result.names, nginx.error_log()[-2000:])
    deltas = [at for name, at in result.events if name == "content_block_delta"]
    assert len(deltas) == 10
    gaps = sorted(b - a for a, b in itertools.pairwise(deltas))
    # Sent 0.3 s apart: buffered, they would come together at the end.
    assert deltas[-1] - deltas[0] > 9 * 0.3 * 0.5, gaps
    assert gaps[len(gaps) // 2] > 0.15, gaps


async def test_a_client_leaving_nginx_cancels_the_provider_request(
    start_fake: StartFake,
    router_process: Any,
    start_nginx: StartNginx,  # noqa: F811
    tmp_path: Path,
) -> None:
    fake = await start_fake(streaming(parts=2, delay=0.0, then="hang"))
    nginx = await behind_nginx(start_nginx, await two_routers(router_process, tmp_path, fake.url))
    async with nginx.client() as client:
        async with client.stream("POST", "/v1/messages", json=BODY) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("event: content_block_delta"):
                    break
            with trio.fail_after(5):
                await fake.hanging.wait()
        left = trio.current_time()  # the response is closed: so is the client's connection
    with trio.fail_after(5):
        while not fake.closed_at:
            await trio.sleep(0.05)
    assert fake.closed_at[0] - left < 5


async def _load(
    client: httpx.AsyncClient,
    streams: list[Stream],
    stop: trio.Event,
    every: float = 0.1,
) -> None:
    """New streams every ``every`` seconds until ``stop``, each left to finish."""
    async with trio.open_nursery() as nursery:
        while not stop.is_set():
            nursery.start_soon(stream, client, streams)
            with trio.move_on_after(every):
                await stop.wait()


def _report(streams: list[Stream]) -> str:
    broken = [s for s in streams if not (s.status == 200 and s.finished)]
    return f"{len(broken)} of {len(streams)} streams not whole: " + "; ".join(
        f"{s.status} {s.error} {s.names[-3:]}" for s in broken[:5]
    )


async def test_nginx_reload_under_load_drops_no_stream(
    start_fake: StartFake,
    router_process: Any,
    start_nginx: StartNginx,  # noqa: F811
    tmp_path: Path,
) -> None:
    fake = await start_fake(streaming(parts=10, delay=0.2))  # about 3 s per stream
    nginx = await behind_nginx(start_nginx, await two_routers(router_process, tmp_path, fake.url))
    before = nginx.worker_pids()
    streams: list[Stream] = []
    stop = trio.Event()
    async with nginx.client() as client, trio.open_nursery() as nursery:
        nursery.start_soon(_load, client, streams, stop)
        await trio.sleep(1.5)  # streams open, some halfway
        open_at_reload = [s for s in streams if s.started and not s.finished]
        await trio.to_thread.run_sync(nginx.reload)
        await trio.sleep(1.5)  # more streams start on the new workers
        stop.set()
    assert open_at_reload, "no stream was open at the reload"
    assert nginx.worker_pids().isdisjoint(before), "the reload should have replaced the workers"
    assert all(s.status == 200 and s.finished for s in streams), _report(streams)
    assert len(streams) >= 20


async def test_router_restart_under_load_drops_no_stream(
    start_fake: StartFake,
    router_process: Any,
    start_nginx: StartNginx,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Streams of about 12 s: longer than hypercorn's own graceful_timeout (10 s), shorter than
    # the router's drain (DRAIN_TIMEOUT_MS).
    fake = await start_fake(streaming(parts=20, delay=0.5))
    routers = await two_routers(router_process, tmp_path, fake.url, DRAIN_TIMEOUT_MS=25_000)
    nginx = await behind_nginx(start_nginx, routers)
    first = routers[0]
    streams: list[Stream] = []
    stop = trio.Event()
    async with nginx.client() as client, trio.open_nursery() as nursery:
        nursery.start_soon(_load, client, streams, stop, 0.5)
        await trio.sleep(2)
        assert any(s.started and not s.finished for s in streams)
        os.kill(first.process.pid, signal.SIGTERM)
        code = await trio.to_thread.run_sync(lambda: first.process.wait(timeout=40))
        assert code == 0, first.process.stderr.read() if first.process.stderr else code
        # Every stream it had open (all started before the SIGTERM, 12 s long) ended whole.
        drained = served(tmp_path / "a")
        again = await trio.to_thread.run_sync(
            lambda: router_process("--config", str(tmp_path / "a" / "config.json"), port=first.port)
        )
        # nginx sends to it again once the failure it saw is fail_timeout (10 s) old.
        with trio.fail_after(30):
            while not connections_to(first.port):
                await trio.sleep(0.2)
        await trio.sleep(1)
        stop.set()
    assert drained, "router a had no stream open to drain"
    started = [s for s in streams if s.started]
    assert all(s.status == 200 and s.finished for s in started), _report(started)
    # A request that reached the draining router on a connection nginx kept open is served
    # there, and that connection closed after it (drain.py): no request is refused.
    refused = [s for s in streams if not s.started]
    assert not refused, _report(refused)
    assert again.process.poll() is None


async def test_nginx_answers_its_own_errors_in_anthropic_format(
    start_nginx: StartNginx,  # noqa: F811
) -> None:
    nobody = [free_port(), free_port()]  # nothing listens there
    nginx = await trio.to_thread.run_sync(lambda: start_nginx(nobody))
    async with nginx.client() as client:
        response = await client.post("/v1/messages", json=BODY)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"
    # Over client_max_body_size (the router's 32 MiB): refused from the header alone.
    head = (
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {32 * 1024 * 1024 + 1}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
        sock.sendall(head.encode())
        reply = b""
        while b"}}" not in reply and (data := sock.recv(65536)):
            reply += data
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.split()[1] == b"413", reply
    assert b'"type":"request_too_large"' in rest, reply

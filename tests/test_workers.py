"""``trio-router start --workers 2`` as users run it: workers share usage and serve together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from tests import openai_wire as wire
from tests.conftest import StartFake
from tests.fakeserver import Reply, Request


def _pids(text: str) -> set[str]:
    return {part.split("]")[0] for part in text.split("[pid ")[1:]}


async def test_two_workers_share_usage_and_stop_on_sigterm(
    start_fake: StartFake, router_process: Any, tmp_path: Path
) -> None:
    def handler(request: Request) -> Reply:
        if request.json().get("stream"):
            return wire.stream_reply(wire.text_stream(["ok"], prompt=5, completion=3))
        return Reply.json(wire.completion("ok", prompt=5, completion_tokens=3))

    fake = await start_fake(handler)
    config = {
        "APIKEY": "k-workers-0123",
        "HOST": "127.0.0.1",
        "Providers": [
            {
                "name": "fake",
                "api_base_url": fake.url + "/v1/chat/completions",
                "models": ["m"],
            }
        ],
        "Router": {"default": "fake,m"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    router = await trio.to_thread.run_sync(lambda: router_process("--workers", "2"))
    headers = {"x-api-key": "k-workers-0123"}
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}

    async def one(client: httpx.AsyncClient, i: int) -> None:
        # A new connection each time, so the kernel spreads them over both workers.
        async with httpx.AsyncClient(base_url=router.url, timeout=30) as fresh:
            response = await fresh.post(
                "/v1/messages",
                json={**body, "stream": i % 2 == 0},
                headers={**headers, "x-session-id": f"w{i % 4}"},
            )
        assert response.status_code == 200, response.text

    async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
        async with trio.open_nursery() as nursery:
            for i in range(80):
                nursery.start_soon(one, client, i)
        # Usage is recorded before a response ends, so it is all there now.
        total = (await client.get("/api/usage", headers=headers)).json()
    assert total["totalRequests"] == 80
    assert total["totalInputTokens"] == 400
    assert total["totalOutputTokens"] == 240
    assert total["sessions"] == 4

    log_file = tmp_path / "logs" / "trio-router.log"
    # The request line is written once the response is out: give the last ones a moment.
    with trio.fail_after(5):
        while (log := log_file.read_text()).count("POST /v1/messages 200") < 80:
            await trio.sleep(0.02)
    assert len(_pids(log)) == 2, "both workers should have served requests"

    os.kill(router.process.pid, signal.SIGTERM)
    code = await trio.to_thread.run_sync(lambda: router.process.wait(timeout=20))
    assert code == 0


def _listening_inodes(port: int) -> set[str]:
    """The inodes of the sockets listening on ``port`` (Linux's /proc/net/tcp, proc(5))."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    fields = [row.split() for row in rows]
    return {f[9] for f in fields if f[3] == "0A" and int(f[1].split(":")[1], 16) == port}


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


async def test_each_worker_listens_on_its_own_socket_and_connections_split(
    router_process: Any, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"HOST": "127.0.0.1"}))
    router = await trio.to_thread.run_sync(lambda: router_process("--workers", "2"))

    def health_checks() -> None:
        for _ in range(200):  # a new connection each: the kernel picks a socket for each
            with httpx.Client(base_url=router.url, timeout=30) as client:
                assert client.get("/").status_code == 200

    await trio.to_thread.run_sync(health_checks)
    log_file = tmp_path / "logs" / "trio-router.log"
    with trio.fail_after(10):
        while (log := log_file.read_text()).count("GET / 200") < 200:
            await trio.sleep(0.05)
    served = [
        line.split("[pid ")[1].split("]")[0] for line in log.splitlines() if "GET / 200" in line
    ]
    counts = {pid: served.count(pid) for pid in set(served)}
    assert len(counts) == 2, counts
    # Hashed over 200 connections, each worker's share is 100 +- 7: 60 is far outside.
    assert min(counts.values()) >= 60, counts
    listening = _listening_inodes(router.port)
    owned = [listening & _socket_inodes(int(pid)) for pid in counts]
    assert all(len(inodes) == 1 for inodes in owned), owned
    assert owned[0] != owned[1], "each worker should have a listening socket of its own"
    assert not listening & _socket_inodes(router.process.pid), "the master keeps no socket"


async def test_a_second_instance_on_a_served_port_exits_1(
    router_process: Any, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"HOST": "127.0.0.1"}))
    first = await trio.to_thread.run_sync(lambda: router_process("--workers", "2"))
    env = {k: v for k, v in os.environ.items() if k not in ("CONFIG_PATH", "HOST")}
    for workers in ("2", "1"):
        second = subprocess.Popen(
            [sys.executable, "-m", "trio_router", "start", "--workers", workers],
            cwd=tmp_path,
            env={**env, "PORT": str(first.port), "XDG_DATA_HOME": str(tmp_path / "xdg")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _, err = await trio.to_thread.run_sync(partial(second.communicate, timeout=30))
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        assert second.returncode == 1, err
        assert f"port {first.port} on 127.0.0.1 is already in use" in err
    async with httpx.AsyncClient(base_url=first.url, timeout=10) as client:
        assert (await client.get("/")).status_code == 200  # the first one serves on


async def test_workers_auto_is_one_per_usable_core(router_process: Any, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"HOST": "127.0.0.1"}))
    router = await trio.to_thread.run_sync(lambda: router_process("--workers", "auto"))
    cores = len(os.sched_getaffinity(0))
    assert router.process.stderr is not None
    started = await trio.to_thread.run_sync(router.process.stderr.readline)
    assert f"({cores} worker{'s' if cores != 1 else ''}," in started, started

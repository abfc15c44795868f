"""Live config: POST /api/config, an edit of the file and SIGHUP apply to every worker at once,
while a stream opened before finishes on the config it started with."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
import trio

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter
from tests.fakeserver import FakeServer, Reply, Request

KEY = "k-live-config-0123456789"
HEADERS = {"x-api-key": KEY}
BODY = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "hi"}],
}


class Gated:
    """A stream's chunks: the first ones at once, the rest once ``gate`` is set (h11 sends
    nothing for the empty chunks written while it waits), so a test holds a stream open."""

    def __init__(self, first: list[bytes], rest: list[bytes], gate: trio.Event) -> None:
        self.first, self.rest, self.gate = first, rest, gate

    def __len__(self) -> int:
        return len(self.first) + len(self.rest)

    def __iter__(self) -> Iterator[bytes]:
        yield from self.first
        while not self.gate.is_set():
            yield b""
        yield from self.rest


def provider(name: str, gate: trio.Event) -> Any:
    """Answers with its own name; streams ``<name>-1 <name>-2``, the second part held by gate."""

    def handler(request: Request) -> Reply:
        if request.json().get("stream"):
            frames = wire.text_stream([f"{name}-1", f" {name}-2"], prompt=5, completion=3)
            return Reply(
                200,
                [("content-type", "text/event-stream")],
                Gated(frames[:2], frames[2:], gate),
                delay=0.02,
            )
        return Reply.json(wire.completion(name, prompt=5, completion_tokens=3))

    return handler


def config(
    old: FakeServer, new: FakeServer, default: str = "old,m", **extra: Any
) -> dict[str, Any]:
    return {
        "APIKEY": KEY,
        "Providers": [
            {"name": "old", "api_base_url": old.url + "/v1/chat/completions", "models": ["m"]},
            {"name": "new", "api_base_url": new.url + "/v1/chat/completions", "models": ["m"]},
        ],
        "Router": {"default": default},
        **extra,
    }


def write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2))


async def answer(url: str) -> str:
    """Who answers a request on a new connection (so the kernel spreads them over workers)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as fresh:
        response = await fresh.post("/v1/messages", json=BODY, headers=HEADERS)
    assert response.status_code == 200, response.text
    text: str = response.json()["content"][0]["text"]
    return text


async def until_every_worker_answers(url: str, name: str) -> int:
    """Requests until 20 in a row (on new connections) are answered by ``name``; how many."""
    sent = in_a_row = 0
    with trio.fail_after(20):
        while in_a_row < 20:
            sent += 1
            in_a_row = in_a_row + 1 if await answer(url) == name else 0
    return sent


def pids_logging(log: Path, text: str) -> set[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return {line.split("[pid ")[1].split("]")[0] for line in lines if text in line}


async def until_logged(log: Path, text: str, workers: int) -> None:
    with trio.move_on_after(20):
        while len(pids_logging(log, text)) < workers:
            await trio.sleep(0.05)
    assert len(pids_logging(log, text)) == workers, log.read_text()


async def until_both_workers_serve(url: str, log: Path) -> int:
    """Requests until both workers have answered one (a worker listens before it has loaded the
    config, so one that is still starting would load the new config instead of applying it)."""
    sent = 0
    with trio.fail_after(30):
        while len(pids_logging(log, "POST /v1/messages 200")) < 2:
            assert await answer(url) == "old"
            sent += 1
    return sent


async def two_workers(
    start_fake: StartFake, router_process: Any, tmp_path: Path
) -> tuple[trio.Event, FakeServer, FakeServer, Any]:
    """Providers ``old`` and ``new`` (both held by the gate), and ``trio-router start --workers
    2`` on ``tmp_path/config.json`` routing to ``old``."""
    gate = trio.Event()
    old = await start_fake(provider("old", gate))
    new = await start_fake(provider("new", gate))
    write(tmp_path / "config.json", config(old, new))
    router = await trio.to_thread.run_sync(lambda: router_process("--workers", "2"))
    return gate, old, new, router


async def total_requests(url: str) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        count: int = (await client.get("/api/usage", headers=HEADERS)).json()["totalRequests"]
    return count


@pytest.mark.parametrize("trigger", ["post", "file", "sighup"])
async def test_a_new_config_reaches_every_worker_and_an_open_stream_finishes_on_the_old(
    trigger: str, start_fake: StartFake, router_process: Any, tmp_path: Path
) -> None:
    gate, old, new, router = await two_workers(start_fake, router_process, tmp_path)
    path, log = tmp_path / "config.json", tmp_path / "logs" / "trio-router.log"
    served = await until_both_workers_serve(router.url, log)
    assert await total_requests(router.url) == served
    sdk = anthropic.AsyncAnthropic(base_url=router.url, api_key=KEY, max_retries=0)
    async with sdk.messages.stream(**BODY) as stream:
        async for event in stream:
            if event.type == "content_block_delta":
                break  # the stream is open, its first text is here
        if trigger == "post":
            async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
                shown = (await client.get("/api/config", headers=HEADERS)).json()
                shown["Router"]["default"] = "new,m"
                posted = await client.post("/api/config", json=shown, headers=HEADERS)
                assert posted.status_code == 200, posted.text
                result = posted.json()
                assert result["success"] is True and result["applied"] is True
                assert "Router.default old,m -> new,m" in result["message"]
                assert Path(result["backup"]).parent == tmp_path / ".backups"
                # Applied before the answer in the worker that got it (same connection).
                again = await client.post("/v1/messages", json=BODY, headers=HEADERS)
                assert again.json()["content"][0]["text"] == "new"
            extra = 1
        elif trigger == "file":
            write(path, config(old, new, "new,m"))
            extra = 0
        else:
            # The same size, inode and mtime: only the signal can tell the workers.
            unseen = os.stat(path)
            write(path, config(old, new, "new,m"))
            os.utime(path, ns=(unseen.st_atime_ns, unseen.st_mtime_ns))
            after = os.stat(path)
            assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
                unseen.st_ino,
                unseen.st_size,
                unseen.st_mtime_ns,
            )
            os.kill(router.process.pid, signal.SIGHUP)
            extra = 0
        sent = await until_every_worker_answers(router.url, "new")
        gate.set()
        message = await stream.get_final_message()
    assert [block.text for block in message.content if block.type == "text"] == ["old-1 old-2"]
    assert message.stop_reason == "end_turn"
    # The stream went to the old provider, and nothing else streamed.
    assert [bool(r.json().get("stream")) for r in old.requests].count(True) == 1
    assert not any(r.json().get("stream") for r in new.requests)
    assert len(old.requests) + len(new.requests) == served + 1 + sent + extra
    why = {"post": "(POST /api/config)", "file": "(file change)", "sighup": "(SIGHUP)"}[trigger]
    await until_logged(log, "config applied", workers=2)
    applied = [line for line in log.read_text().splitlines() if "config applied" in line]
    assert len(applied) == 2, applied
    assert all("Router.default old,m -> new,m" in line for line in applied)
    assert any(why in line for line in applied)
    if trigger != "post":
        assert all(why in line for line in applied)
    # A reload changes no count.
    assert await total_requests(router.url) == served + 1 + sent + extra
    assert router.process.poll() is None


async def test_a_broken_file_is_logged_once_and_the_old_config_keeps_serving(
    start_fake: StartFake, router_process: Any, tmp_path: Path
) -> None:
    _gate, old, new, router = await two_workers(start_fake, router_process, tmp_path)
    path, log = tmp_path / "config.json", tmp_path / "logs" / "trio-router.log"
    await until_both_workers_serve(router.url, log)
    path.write_text(json.dumps(config(old, new, "new,m"))[:-20])  # a torn write
    await until_logged(log, "config not applied (file change): invalid JSON", workers=2)
    assert await answer(router.url) == "old"
    write(path, config(old, new, "gone,m"))
    await until_logged(log, "provider 'gone' is not configured", workers=2)
    await trio.sleep(1)  # four more polls of an unchanged file log nothing more
    lines = log.read_text().splitlines()
    assert sum("config not applied" in line for line in lines) == 4, lines
    assert not any("config applied" in line for line in lines)
    for _ in range(6):
        assert await answer(router.url) == "old"
    write(path, config(old, new, "new,m"))
    await until_every_worker_answers(router.url, "new")


MARKER_HOOK = """
from pathlib import Path

Path({marker!r}).write_text("imported")


class MarkerHook:
    name = "marker-hook"

    def transform_request(self, request, route):
        return request
"""


async def test_a_reload_never_imports_code_and_names_what_needs_a_restart(
    start_router: StartRouter, start_fake: StartFake, tmp_path: Path
) -> None:
    gate = trio.Event()
    old = await start_fake(provider("old", gate))
    new = await start_fake(provider("new", gate))
    site = tmp_path / "site"
    (site / "transformers").mkdir(parents=True)
    marker = tmp_path / "marker"
    (site / "transformers" / "marker_hook.py").write_text(MARKER_HOOK.format(marker=str(marker)))
    router = await start_router(config(old, new, TRANSFORMERS_DIR="transformers"), directory=site)

    def stalls(request: Request) -> Reply:
        # The head at once, then 5 s of silence: longer than API_TIMEOUT_MS between two reads.
        body = json.dumps(wire.completion("slow")).encode()
        return Reply(200, [("content-type", "application/json")], [body], delay=5)

    slow = await start_fake(stalls)
    hooked = config(old, new, "new,m", TRANSFORMERS_DIR="transformers")
    hooked["transformers"] = [{"path": "transformers/marker_hook.py"}]
    hooked["Providers"][1]["transformer"] = {"use": ["marker-hook"]}
    async with router.client(headers=HEADERS) as client:
        posted = (await client.post("/api/config", json=hooked)).json()
        assert posted["success"] is True and posted["applied"] is False
        assert "restart required to load 'transformers/marker_hook.py'" in posted["message"]
        assert "The previous config keeps serving." in posted["message"]
        assert json.loads(router.config_path.read_text())["transformers"] == hooked["transformers"]
        assert await answer(router.url) == "old"
        # The same refusal for an edit on disk, of a file anywhere.
        hooked["transformers"] = [{"path": str(site / "transformers" / "marker_hook.py")}]
        write(router.config_path, hooked)
        with trio.fail_after(10):
            while not [
                line
                for line in router.log_file.read_text().splitlines()
                if "config not applied (file change)" in line and "restart required" in line
            ]:
                await trio.sleep(0.05)
        assert await answer(router.url) == "old"
        assert not marker.exists()
        # Where the server listens is fixed at start; the rest applies, the timeout too.
        moved = config(old, new, "slow,m", TRANSFORMERS_DIR="transformers", PORT=9)
        moved["Providers"].append(
            {"name": "slow", "api_base_url": slow.url + "/v1/chat/completions", "models": ["m"]}
        )
        moved["API_TIMEOUT_MS"] = 300
        posted = (await client.post("/api/config", json=moved)).json()
        assert posted["applied"] is True and posted["restartRequired"] == ["PORT"]
        assert "PORT: set when the server starts, applied at a restart." in posted["message"]
        assert "API_TIMEOUT_MS 600000 -> 300" in posted["message"]
        assert "provider slow added" in posted["message"]
        timed_out = await client.post("/v1/messages", json=BODY)
        assert timed_out.status_code == 504, timed_out.text
        assert "timed out" in timed_out.json()["error"]["message"]

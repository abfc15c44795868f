"""``trio-router start --workers 2`` as users run it: workers share usage and serve together."""

from __future__ import annotations

import json
import os
import signal
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

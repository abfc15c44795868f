"""Every request the real Claude Code CLI sent (captured in tests/fixtures/claude_code/), replayed
byte for byte with its headers through the router to each provider format.

The CLI tests run a few scenarios end to end; this one checks each captured shape against every
format, and what reached the upstream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from tests import openai_wire as wire
from tests.conftest import RunningRouter, StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURED = ["default", "sonnet_4_5", "unknown_model", "tool_use_1", "tool_use_2", "broken_stream_2"]
BILLING = "x-anthropic-billing-header"
EVENTS: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)


def captured(name: str) -> tuple[bytes, dict[str, str], str]:
    body = json.loads((FIXTURES / "claude_code" / f"{name}.json").read_text())
    head = json.loads((FIXTURES / "claude_code" / f"{name}.headers.json").read_text())
    headers = {
        k: v
        for k, v in head["headers"].items()
        if k.lower() not in ("host", "content-length", "connection", "accept-encoding")
    }
    return json.dumps(body).encode(), headers, head["target"]


def openai_reply(request: Request) -> Reply:
    if request.json().get("stream"):
        return wire.stream_reply(wire.text_stream(["Hi", " there"]))
    return Reply.json(wire.completion("Hi there"))


def deepseek_reply(request: Request) -> Reply:
    if request.json().get("stream"):
        return Reply.sse([(FIXTURES / "deepseek" / "stream_reasoner.sse").read_bytes()])
    return Reply.json(wire.completion("Hi there", reasoning=None))


def gemini_reply(request: Request) -> Reply:
    if request.path.endswith(":streamGenerateContent"):
        return Reply.sse([(FIXTURES / "gemini" / "stream_text.sse").read_bytes()])
    return Reply.json(json.loads((FIXTURES / "gemini" / "response_text.json").read_text()))


def anthropic_reply(request: Request) -> Reply:
    if request.json().get("stream"):
        return Reply.sse(
            [(FIXTURES / "openai" / "passthrough" / "anthropic_text.sse").read_bytes()]
        )
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "Hi there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    return Reply.json(message)


FORMATS: dict[str, tuple[Any, str, str]] = {
    "openrouter": (openai_reply, "/v1/chat/completions", "vendor/some-model"),
    "deepseek": (deepseek_reply, "/chat/completions", "deepseek-chat"),
    "gemini": (gemini_reply, "/v1beta/models/", "gemini-3-pro-preview"),
    "anthropic": (anthropic_reply, "/v1/messages", "claude-compatible"),
}


async def replay(
    router: RunningRouter, name: str, model: str
) -> tuple[int, dict[str, Any] | list[Any]]:
    body, headers, target = captured(name)
    data = json.loads(body)
    if data["model"].startswith("openrouter,"):
        data["model"] = model  # the unknown-name capture asked for "provider,model"
    async with router.client() as client:
        response = await client.post(target, content=json.dumps(data), headers=headers)
    if data.get("stream"):
        assert response.headers["content-type"].startswith("text/event-stream")
        return response.status_code, parse_events(response.text)
    return response.status_code, response.json()


def parse_events(text: str) -> list[Any]:
    events = []
    for frame in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if fields["event"] != "ping":  # the SDK's union has no ping: it skips them
            events.append(EVENTS.validate_python(json.loads(fields["data"])))
    return events


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", CAPTURED)
async def test_captured_claude_code_request(
    start_router: StartRouter, start_fake: StartFake, fmt: str, name: str
) -> None:
    handler, path, model = FORMATS[fmt]
    fake = await start_fake(handler)
    router = await start_router(
        {
            "APIKEY": "test-key",
            "Providers": [
                provider_config(
                    fake, name="up", path=path, models=[model], transformer={"use": [fmt]}
                )
            ],
            "Router": {"default": f"up,{model}"},
        }
    )
    status, answer = await replay(router, name, f"up,{model}")
    assert status == 200, answer
    if isinstance(answer, list):
        message = None
        buffers: dict[int, bytes] = {}
        for event in answer:
            message = accumulate_event(event=event, current_snapshot=message, json_bufs=buffers)
        assert answer[-1].type == "message_stop"
        assert message is not None
        text = "".join(b.text for b in message.content if b.type == "text")
    else:
        text = "".join(b["text"] for b in answer["content"] if b["type"] == "text")
    assert text

    (upstream,) = fake.requests
    sent = upstream.json()
    assert upstream.headers.get("x-api-key") != "test-key" or fmt == "anthropic"
    if fmt == "anthropic":
        # Passed through whole, even the fields the router does not model.
        original = json.loads(captured(name)[0])
        assert sent["model"] == model
        assert {k: v for k, v in sent.items() if k != "model"} == {
            k: v for k, v in original.items() if k != "model"
        }
        return
    assert BILLING not in upstream.body.decode()
    if fmt == "gemini":
        assert "$schema" not in upstream.body.decode()
        assert "additionalProperties" not in upstream.body.decode()
        assert sent["generationConfig"]["maxOutputTokens"] <= 65536
        assert "systemInstruction" in sent
        assert {c["role"] for c in sent["contents"]} <= {"user", "model"}
    else:
        roles = [m["role"] for m in sent["messages"]]
        assert set(roles) <= {"system", "user", "assistant", "tool"}
        assert roles[0] == "system"
        assert len(sent["tools"]) == len(json.loads(captured(name)[0])["tools"])
    if fmt == "deepseek":
        assert sent["max_tokens"] <= 65536


async def _session_in_log(router: RunningRouter) -> str:
    return router.log_file.read_text()


async def test_session_comes_from_the_claude_code_header(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(openai_reply)
    router = await start_router(
        {
            "Providers": [provider_config(fake, models=["m"])],
            "Router": {"default": "fake,m"},
        }
    )
    await replay(router, "default", "fake,m")
    async with router.client() as client:
        usage = await client.get("/api/usage/sessions/00000000-0000-4000-8000-000000000001")
    assert usage.status_code == 200
    assert usage.json()["totalRequests"] == 1

"""Every request the real Claude Code CLI sent (captured in tests/fixtures/claude_code/, from
several CLI versions and with MCP tools), replayed byte for byte with its headers through the
router to each provider format, and judged there by the strict fakes: each answers what its real
API would, a 400 with the provider's error body included.

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

from tests.conftest import RunningRouter, StartFake, StartRouter, provider_config
from tests.fake_deepseek import FakeDeepSeek
from tests.fake_gemini import FakeGemini
from tests.fake_openai import FakeChatProvider
from tests.fakeserver import Reply, Request

FIXTURES = Path(__file__).parent / "fixtures"
# Every captured request body (the .headers.json and .output.json beside them are not).
CAPTURED = sorted(
    path.stem
    for path in (FIXTURES / "claude_code").glob("*.json")
    if "messages" in json.loads(path.read_text())
)
BILLING = "x-anthropic-billing-header"
EVENTS: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)
KEY = "sk-fake-provider-key-0123456789"  # provider_config's default key


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
    """A permissive OpenAI-shaped answer, for the tests below that look at the router only."""
    return FakeChatProvider(KEY, ["m"], "true").answer(request, request.json())


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


# format -> (transformer, endpoint path, model). Two Gemini model names: a Gemini 3 one and a
# 1.x one, whose tool schemas may take different forms (JSON Schema or the OpenAPI subset).
FORMATS: dict[str, tuple[str, str, str]] = {
    "openrouter": ("openrouter", FakeChatProvider.path, "vendor/some-model"),
    "deepseek": ("deepseek", FakeDeepSeek.path, "deepseek-chat"),
    "deepseek-v4": ("deepseek", FakeDeepSeek.path, "deepseek-v4-pro"),
    "gemini": ("gemini", "/v1beta/models/", "gemini-3-pro-preview"),
    "gemini-1.5": ("gemini", "/v1beta/models/", "gemini-1.5-pro"),
    "anthropic": ("anthropic", "/v1/messages", "claude-compatible"),
}


def strict_fake(transformer: str, model: str) -> Any:
    """The fake that enforces what the provider documents, or (Anthropic passthrough, which
    forwards the body as it came) a plain answer."""
    if transformer == "openrouter":
        return FakeChatProvider(KEY, [model], "true")
    if transformer == "deepseek":
        return FakeDeepSeek(KEY, [model], "true")
    if transformer == "gemini":
        return FakeGemini(KEY, [model], "true")
    return anthropic_reply


async def replay(
    router: RunningRouter, name: str, model: str
) -> tuple[int, dict[str, Any] | list[Any]]:
    body, headers, target = captured(name)
    data = json.loads(body)
    if data["model"].startswith("openrouter,"):
        data["model"] = model  # the unknown-name capture asked for "provider,model"
    async with router.client() as client:
        response = await client.post(target, content=json.dumps(data), headers=headers)
    if data.get("stream") and response.status_code == 200:
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
    transformer, path, model = FORMATS[fmt]
    handler = strict_fake(transformer, model)
    fake = await start_fake(handler)
    router = await start_router(
        {
            "APIKEY": "test-key",
            "Providers": [
                provider_config(
                    fake, name="up", path=path, models=[model], transformer={"use": [transformer]}
                )
            ],
            "Router": {"default": f"up,{model}"},
        }
    )
    status, answer = await replay(router, name, f"up,{model}")
    rejected = [r.message for _, r in getattr(handler, "rejected", [])]
    assert not rejected, f"the provider would refuse this request: {rejected}"
    assert status == 200, answer
    if isinstance(answer, list):
        message = None
        buffers: dict[int, bytes] = {}
        for event in answer:
            message = accumulate_event(event=event, current_snapshot=message, json_bufs=buffers)
        assert answer[-1].type == "message_stop"
        assert message is not None
        blocks = [b.model_dump() for b in message.content]
    else:
        blocks = answer["content"]
    # The fakes' model calls Bash when offered it and no result came back yet, else answers.
    assert any(b["type"] == "tool_use" and b["name"] == "Bash" for b in blocks) or "".join(
        b["text"] for b in blocks if b["type"] == "text"
    ), blocks

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
    tools = json.loads(captured(name)[0])["tools"]
    if transformer == "gemini":
        assert sent["generationConfig"]["maxOutputTokens"] <= 65536
        assert "systemInstruction" in sent
        assert {c["role"] for c in sent["contents"]} <= {"user", "model"}
        declared = [d["name"] for t in sent["tools"] for d in t.get("functionDeclarations", [])]
        assert declared == [t["name"] for t in tools]
    else:
        roles = [m["role"] for m in sent["messages"]]
        assert set(roles) <= {"system", "user", "assistant", "tool"}
        assert roles[0] == "system"
        assert [t["function"]["name"] for t in sent["tools"]] == [t["name"] for t in tools]


def test_the_record_typed_tool_schema_is_among_the_captures() -> None:
    """Claude Code 2.1.197's TaskCreate/TaskUpdate ``metadata`` is a record (a map with no
    properties), the shape that once reached users' Gemini sessions as a 400."""
    record = {"type": "object", "propertyNames": {"type": "string"}, "additionalProperties": {}}
    body = json.loads((FIXTURES / "claude_code" / "cli_2_1_197_default.json").read_text())
    schemas = {t["name"]: t["input_schema"] for t in body["tools"]}
    for name in ("TaskCreate", "TaskUpdate"):
        metadata = schemas[name]["properties"]["metadata"]
        assert {k: v for k, v in metadata.items() if k != "description"} == record
    assert any(
        t["name"].startswith("mcp__")
        for t in json.loads((FIXTURES / "claude_code" / "cli_2_1_197_mcp_tools.json").read_text())[
            "tools"
        ]
    )


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

"""The official ``anthropic`` SDK -> the real router -> a fake OpenAI-compatible provider."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest
import trio

from tests import openai_wire as wire
from tests.conftest import RunningRouter, StartFake, StartRouter, provider_config
from tests.fakeserver import FakeServer, Reply, Request
from tests.sdk import client
from trio_router import messages

PROVIDER_KEY = "sk-or-v1-provider-key-abcdef"


async def setup(
    start_router: StartRouter, start_fake: StartFake, handler: Any, **provider: Any
) -> tuple[RunningRouter, FakeServer]:
    fake = await start_fake(handler)
    router = await start_router(
        {
            "Providers": [
                provider_config(
                    fake,
                    api_key=PROVIDER_KEY,
                    transformer={"use": ["openrouter"]},
                    headers={"HTTP-Referer": "https://example.test", "X-Title": "trio-router"},
                    **provider,
                )
            ],
            "Router": {"default": "fake,fake-model"},
        }
    )
    return router, fake


USER = [{"role": "user", "content": "Say hello"}]


async def test_plain_text_create_and_stream(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    def handler(request: Request) -> Reply:
        if request.json().get("stream"):
            return wire.stream_reply(wire.text_stream(["Hel", "lo ", "wörld"]))
        return Reply.json(wire.completion("Hello wörld"))

    router, fake = await setup(start_router, start_fake, handler)
    async with client(router) as sdk:
        message = await sdk.messages.create(
            model="claude-sonnet-4-5", max_tokens=100, messages=USER, system="Be brief."
        )
        async with sdk.messages.stream(
            model="claude-sonnet-4-5", max_tokens=100, messages=USER
        ) as stream:
            texts = [text async for text in stream.text_stream]
            final = await stream.get_final_message()

    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello wörld"
    assert message.stop_reason == "end_turn"
    assert message.id.startswith("msg_")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)
    assert "".join(texts) == "Hello wörld"
    assert final.content[0].type == "text" and final.content[0].text == "Hello wörld"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 7

    sent = fake.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert sent.headers["http-referer"] == "https://example.test"
    assert sent.headers["x-title"] == "trio-router"
    assert "client-key" not in json.dumps(sent.headers)
    body = sent.json()
    assert body["model"] == "fake-model"
    assert body["max_tokens"] == 100
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    streamed = fake.requests[1].json()
    assert streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}


async def test_tool_use_round_trip_with_parallel_calls(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    # Two calls interleaved by index, arguments split across chunks (as OpenAI streams them).
    first_turn = wire.sse(
        [
            wire.chunk({"role": "assistant", "content": None}),
            wire.tool_call_delta(0, "", "call_weather1", "get_weather"),
            wire.tool_call_delta(0, '{"city": "Par'),
            wire.tool_call_delta(1, "", "call_time2", "get_time"),
            wire.tool_call_delta(1, '{"zone": '),
            wire.tool_call_delta(0, 'is"}'),
            wire.tool_call_delta(1, '"CET"}'),
            wire.chunk({}, "tool_calls"),
            wire.usage_chunk(50, 20),
        ]
    )

    def handler(request: Request) -> Reply:
        if len(fake.requests) == 1:
            return wire.stream_reply(first_turn)
        return wire.stream_reply(wire.text_stream(["Sunny, 14:00."]))

    tools = [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {
            "name": "get_time",
            "description": "Time in a zone",
            "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}},
        },
    ]
    router, fake = await setup(start_router, start_fake, handler)
    async with client(router) as sdk:
        async with sdk.messages.stream(
            model="claude-sonnet-4-5", max_tokens=200, messages=USER, tools=tools
        ) as stream:
            first = await stream.get_final_message()
        uses = [b for b in first.content if b.type == "tool_use"]
        assert first.stop_reason == "tool_use"
        assert [(u.name, u.input) for u in uses] == [
            ("get_weather", {"city": "Paris"}),
            ("get_time", {"zone": "CET"}),
        ]
        assert all(u.id.startswith("toolu_") for u in uses)
        history = [
            *USER,
            {"role": "assistant", "content": [u.model_dump() for u in uses]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": uses[0].id, "content": "Sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": uses[1].id,
                        "content": [{"type": "text", "text": "14:00"}],
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            },
        ]
        async with sdk.messages.stream(
            model="claude-sonnet-4-5", max_tokens=200, messages=history, tools=tools
        ) as stream:
            second = await stream.get_final_message()

    assert second.content[0].type == "text" and second.content[0].text == "Sunny, 14:00."
    sent = fake.requests[1].json()
    assert sent["tools"][0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    assistant, tool1, tool2, user = sent["messages"][1:]
    assert assistant["role"] == "assistant"
    calls = assistant["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert [c["id"] for c in calls] == [uses[0].id, uses[1].id]
    assert tool1 == {"role": "tool", "tool_call_id": uses[0].id, "content": "Sunny"}
    assert tool2["role"] == "tool" and tool2["tool_call_id"] == uses[1].id
    assert "14:00" in json.dumps(tool2["content"])
    assert user["role"] == "user" and "Summarise." in json.dumps(user["content"])


async def test_thinking_streams_as_a_thinking_block(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    frames = wire.sse(
        [
            wire.chunk({"role": "assistant", "content": "", "reasoning": "Let me "}),
            wire.chunk({"reasoning": "think."}),
            wire.chunk({"content": "Answer."}),
            wire.chunk({}, "stop"),
            wire.usage_chunk(5, 9),
        ]
    )
    router, fake = await setup(start_router, start_fake, lambda request: wire.stream_reply(frames))
    async with (
        client(router) as sdk,
        sdk.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=2000,
            messages=USER,
            thinking={"type": "enabled", "budget_tokens": 1024},
        ) as stream,
    ):
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Let me think."  # type: ignore[union-attr]
    assert final.content[1].text == "Answer."  # type: ignore[union-attr]
    assert fake.requests[0].json()["reasoning"] == {"max_tokens": 1024}


async def test_images_become_data_uris(start_router: StartRouter, start_fake: StartFake) -> None:
    router, fake = await setup(
        start_router, start_fake, lambda request: Reply.json(wire.completion("A red dot."))
    )
    data = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    async with client(router) as sdk:
        message = await sdk.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=50,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": data},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                        {"type": "text", "text": "What is this?"},
                    ],
                }
            ],
        )
    assert message.content[0].text == "A red dot."  # type: ignore[union-attr]
    parts = fake.requests[0].json()["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}
    assert parts[1] == {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}}
    assert parts[2] == {"type": "text", "text": "What is this?"}


@pytest.mark.parametrize(
    ("status", "kind", "exception", "error_type"),
    [
        (400, "invalid_request_error", anthropic.BadRequestError, "invalid_request_error"),
        (401, "invalid_api_key", anthropic.AuthenticationError, "authentication_error"),
        (403, "permission_denied", anthropic.PermissionDeniedError, "permission_error"),
        (404, "not_found", anthropic.NotFoundError, "not_found_error"),
        (413, "too_large", anthropic.APIStatusError, "request_too_large"),
        (429, "rate_limit_exceeded", anthropic.RateLimitError, "rate_limit_error"),
        (500, "server_error", anthropic.InternalServerError, "api_error"),
        (503, "overloaded", anthropic.InternalServerError, "overloaded_error"),
        (529, "overloaded", anthropic.InternalServerError, "overloaded_error"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors_become_typed_sdk_errors(
    start_router: StartRouter,
    start_fake: StartFake,
    status: int,
    kind: str,
    exception: type[anthropic.APIStatusError],
    error_type: str,
    stream: bool,
) -> None:
    headers = [("retry-after", "7")] if status == 429 else []
    router, _ = await setup(
        start_router,
        start_fake,
        lambda request: wire.error_reply(status, f"upstream says {status}", kind, headers),
    )
    async with client(router) as sdk:
        with pytest.raises(exception) as raised:
            if stream:
                async with sdk.messages.stream(
                    model="claude-sonnet-4-5", max_tokens=10, messages=USER
                ) as events:
                    await events.get_final_message()
            else:
                await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
    error = raised.value
    assert error.status_code == status
    assert error.body == {
        "type": "error",
        "error": {
            "type": error_type,
            "message": f"provider 'fake' answered {status}: upstream says {status}",
        },
    }
    if status == 429:
        assert error.response.headers["retry-after"] == "7"


async def test_unreachable_provider_is_a_clear_api_error(start_router: StartRouter) -> None:
    router = await start_router(
        {
            "Providers": [
                {
                    "name": "down",
                    "api_base_url": "http://127.0.0.1:9/v1/chat/completions",
                    "models": ["m"],
                }
            ],
            "Router": {"default": "down,m"},
        }
    )
    async with client(router) as sdk:
        with pytest.raises(anthropic.APIStatusError) as raised:
            await sdk.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=USER)
    assert raised.value.status_code == 502
    assert raised.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "cannot connect to provider 'down'" in raised.value.body["error"]["message"]  # type: ignore[index]


async def test_mid_stream_cut_ends_with_an_error_event(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    frames = wire.sse([wire.chunk({"role": "assistant", "content": "Partial"})], done=False)
    router, _ = await setup(
        start_router, start_fake, lambda request: wire.stream_reply(frames, then="cut")
    )
    async with router.client() as http:
        response = await http.post(
            "/v1/messages",
            json={"model": "m", "max_tokens": 10, "messages": USER, "stream": True},
        )
    assert response.status_code == 200
    events = _events(response.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-1] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in names

    async with client(router) as sdk:
        with pytest.raises(anthropic.APIStatusError):
            async with sdk.messages.stream(
                model="claude-sonnet-4-5", max_tokens=10, messages=USER
            ) as stream:
                await stream.get_final_message()


async def test_mid_stream_provider_error_is_passed_on(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    frames = wire.sse(
        [
            wire.chunk({"role": "assistant", "content": "Par"}),
            {"error": {"message": "Provider overloaded", "code": 502}},
        ],
        done=False,
    )
    router, _ = await setup(start_router, start_fake, lambda request: wire.stream_reply(frames))
    async with router.client() as http:
        response = await http.post(
            "/v1/messages",
            json={"model": "m", "max_tokens": 10, "messages": USER, "stream": True},
        )
    events = _events(response.text)
    assert events[-1][0] == "error"
    assert "Provider overloaded" in events[-1][1]["error"]["message"]


async def test_client_disconnect_closes_the_upstream_at_once(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    frames = wire.sse([wire.chunk({"role": "assistant", "content": "Never ending"})], done=False)
    router, fake = await setup(
        start_router, start_fake, lambda request: wire.stream_reply(frames, then="hang")
    )
    body = {"model": "m", "max_tokens": 10, "messages": USER, "stream": True}
    async with router.client() as http, http.stream("POST", "/v1/messages", json=body) as response:
        lines = response.aiter_lines()
        assert await _first_line_with(lines, "content_block_delta")
        await fake.hanging.wait()
        left_at = trio.current_time()
    # The client's connection is now closed; the router must close its upstream one.
    with trio.fail_after(1):
        while not fake.closed_at:
            await trio.sleep(0.01)
    assert fake.closed_at[0] - left_at < 1.0


async def _first_line_with(lines: AsyncIterator[str], needle: str) -> bool:
    async for line in lines:
        if needle in line:
            return True
    return False


def _events(text: str) -> list[tuple[str, Any]]:
    events = []
    for frame in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_usage_is_counted_per_session_under_concurrency(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    def handler(request: Request) -> Reply:
        if request.json().get("stream"):
            return wire.stream_reply(wire.text_stream(["ok"], prompt=3, completion=2))
        return Reply.json(wire.completion("ok", prompt=3, completion_tokens=2))

    router, _ = await setup(start_router, start_fake, handler)
    body = {"model": "m", "max_tokens": 10, "messages": USER}

    async def one(http: httpx.AsyncClient, i: int) -> None:
        session = f"s{i % 3}"
        response = await http.post(
            "/v1/messages",
            json={**body, "stream": i % 2 == 0},
            headers={"x-session-id": session},
        )
        assert response.status_code == 200

    async with router.client() as http:
        async with trio.open_nursery() as nursery:
            for i in range(60):
                nursery.start_soon(one, http, i)
        sessions = (await http.get("/api/usage/sessions")).json()["sessions"]
        s0 = (await http.get("/api/usage/sessions/s0")).json()
        total = (await http.get("/api/usage")).json()
        deleted = await http.delete("/api/usage/sessions/s0")
        gone = await http.get("/api/usage/sessions/s0")

    assert sorted(s["sessionId"] for s in sessions) == ["s0", "s1", "s2"]
    assert s0 == {
        "sessionId": "s0",
        "providers": {
            "fake": {
                "inputTokens": 60,
                "outputTokens": 40,
                "cacheReadTokens": 0,
                "requests": 20,
                "costUsd": None,  # model "m" has no price
                "unpricedRequests": 20,
            }
        },
        "totalInputTokens": 60,
        "totalOutputTokens": 40,
        "totalRequests": 20,
        "costUsd": None,
    }
    assert total["totalRequests"] == 60
    assert total["totalInputTokens"] == 180
    assert deleted.status_code == 200
    assert gone.status_code == 404
    assert gone.json()["error"]["type"] == "not_found_error"


async def test_silent_upstream_gets_keepalive_comments(
    start_router: StartRouter, start_fake: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(messages, "KEEPALIVE_SECONDS", 0.1)
    # A model that thinks for a while before each piece of its answer.
    frames = wire.text_stream(["Thought ", "it over."])
    router, _ = await setup(
        start_router, start_fake, lambda request: wire.stream_reply(frames, delay=0.35)
    )
    async with router.client() as http:
        raw = await http.post(
            "/v1/messages",
            json={"model": "m", "max_tokens": 10, "messages": USER, "stream": True},
        )
    text = raw.text
    assert text.startswith(": keep-alive\n\n")
    assert text.count(": keep-alive") >= 3
    assert text.index(": keep-alive") < text.index("event: message_start")
    async with (
        client(router) as sdk,
        sdk.messages.stream(model="claude-sonnet-4-5", max_tokens=10, messages=USER) as stream,
    ):
        final = await stream.get_final_message()
    assert final.content[0].text == "Thought it over."  # type: ignore[union-attr]

"""The official ``anthropic`` SDK -> the real router -> a fake DeepSeek API on loopback.

Every request the router sends upstream goes through tests/fake_deepseek.py's checks (OpenAI's
message rules plus DeepSeek's: the key, model names, ``max_tokens`` ranges, ``reasoning_content``
on tool-call turns in thinking mode), answered with DeepSeek's statuses and error bodies. The
answers are the recorded chunks of tests/fixtures/deepseek/: streamed after a ``: keep-alive``
comment and ending with ``[DONE]``, or merged into one ``chat.completion``.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam

from tests.conftest import RunningRouter, StartFake, StartRouter, provider_config
from tests.fake_deepseek import FakeDeepSeek
from tests.fake_openai import Rejection
from tests.fakeserver import FakeServer, Reply, Request
from tests.sdk import USER, ask, client, usage

JSON = dict[str, Any]
FIXTURES = Path(__file__).parent / "fixtures"
KEY = "sk-e2e-deepseek-key-0123456789abcdef"
MODELS = ["deepseek-chat", "deepseek-reasoner"]
# Claude Code's own tool list (Read, Grep, ... and the web_search server tool).
CLAUDE_CODE_TOOLS: list[JSON] = json.loads(
    (FIXTURES / "gemini" / "claude_code_tools.json").read_text()
)["tools"]


def recorded(name: str) -> list[JSON]:
    """The chunks of a recorded stream (comments and ``[DONE]`` left out)."""
    lines = (FIXTURES / "deepseek" / name).read_text().splitlines()
    return [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: {")]


def chunk(delta: JSON, finish: str | None = None, usage: JSON | None = None) -> JSON:
    # The envelope of tests/fixtures/deepseek/stream_length.sse.
    return {
        "id": "5a8e0f3b-7d21-4c6a-b9e8-2f4d1c0a9b36",
        "object": "chat.completion.chunk",
        "created": 1760000000,
        "model": "deepseek-chat",
        "system_fingerprint": "fp_ffc7281d48_prod0820_fp8_kvcache",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }


def completion(chunks: list[JSON]) -> JSON:
    """What DeepSeek answers without ``stream`` for the answer the stream sends in pieces
    (shaped as tests/fixtures/deepseek/response_tool_call.json)."""
    content, reasoning = "", ""
    calls: dict[int, JSON] = {}
    finish = None
    for piece in chunks:
        for choice in piece["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or ():
                whole = calls.setdefault(call["index"], copy.deepcopy(call))
                if whole is not call:
                    whole["function"]["arguments"] += call["function"]["arguments"]
            finish = choice["finish_reason"] or finish
    message: JSON = {"role": "assistant", "content": content}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    last = chunks[-1]
    return {
        "id": last["id"],
        "object": "chat.completion",
        "created": last["created"],
        "model": last["model"],
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": last["usage"],
        "system_fingerprint": last["system_fingerprint"],
    }


def sse(chunks: list[JSON], done: bool = True) -> list[bytes]:
    frames = [FakeDeepSeek.keep_alive]
    frames += [b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n" for c in chunks]
    if done:
        frames.append(b"data: [DONE]\n\n")
    return frames


def stream_reply(frames: list[bytes], then: str = "end") -> Reply:
    return Reply.sse(frames, then=then, content_type="text/event-stream; charset=utf-8")


@dataclass
class ScriptedDeepSeek(FakeDeepSeek):
    """FakeDeepSeek's checks on every request, answered from ``script`` instead of its Bash
    model: each accepted request gets the next answer (the last repeats), a list of chunks
    streamed or merged as the request asks, or a ready ``Reply``."""

    script: list[list[JSON] | Reply] = field(default_factory=list)
    bodies: list[JSON] = field(default_factory=list)

    def check(self, request: Request) -> JSON:
        body = super().check(request)
        # DeepSeek's chat models take text only: any other content part fails to deserialize,
        # 400 "Failed to deserialize the JSON body into the target type: messages[1]: unknown
        # variant `image_url`, expected `text` at line 1 column 679289" (as reported against
        # api.deepseek.com in github.com/rikkahub/rikkahub/issues/1433,
        # github.com/nesquena/hermes-webui/issues/2297).
        for i, message in enumerate(body["messages"]):
            content = message.get("content")
            for part in content if isinstance(content, list) else ():
                kind = part.get("type")
                if kind != "text":
                    column = request.body.find(json.dumps(kind).encode()) + len(kind) + 2
                    raise Rejection(
                        400,
                        "Failed to deserialize the JSON body into the target type: "
                        f"messages[{i}]: unknown variant `{kind}`, expected `text` at line 1 "
                        f"column {column}",
                    )
        return body

    def answer(self, request: Request, body: JSON) -> Reply:
        item = self.script[min(len(self.bodies), len(self.script) - 1)]
        self.bodies.append(body)
        if isinstance(item, Reply):
            return item
        if body.get("stream"):
            return stream_reply(sse(item))
        return Reply.json(completion(item))


async def setup(
    start_router: StartRouter,
    start_fake: StartFake,
    *script: list[JSON] | Reply,
    api_key: str = KEY,
    options: JSON | None = None,
) -> tuple[RunningRouter, FakeServer, ScriptedDeepSeek]:
    deepseek = ScriptedDeepSeek(KEY, MODELS, command="", script=list(script))
    fake = await start_fake(deepseek)
    use: list[Any] = [["deepseek", options]] if options else ["deepseek"]
    provider = provider_config(
        fake,
        name="deepseek",
        path=FakeDeepSeek.path,
        models=MODELS,
        transformer={"use": use},
        api_key=api_key,
    )
    router = await start_router(
        {"Providers": [provider], "Router": {"default": "deepseek,deepseek-chat"}}
    )
    return router, fake, deepseek


# --- text -----------------------------------------------------------------------------------

HELLO = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hello"}),
    chunk({"content": " wörld 👋"}),
    chunk(
        {"content": ""},
        "stop",
        # Cache hits reported DeepSeek's way only (tests/fixtures/deepseek/stream_length.sse).
        {
            "prompt_tokens": 30,
            "completion_tokens": 8,
            "total_tokens": 38,
            "prompt_cache_hit_tokens": 16,
            "prompt_cache_miss_tokens": 14,
        },
    ),
]


async def test_plain_text_create_and_stream(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    router, fake, deepseek = await setup(start_router, start_fake, HELLO)
    async with client(router) as sdk:
        # Claude Code asks for 32000 output tokens; deepseek-chat takes at most 8192 and
        # answers 400 above that (FakeDeepSeek checks it).
        message = await ask(sdk, False, system="Be brief.", max_tokens=16000)
        async with sdk.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=32000,
            messages=USER,
            extra_body={"temperature": 0.2, "top_p": 0.9},
        ) as stream:
            texts = [text async for text in stream.text_stream]
            final = await stream.get_final_message()

    assert not deepseek.rejected, deepseek.rejected
    for answer in (message, final):
        assert [b.type for b in answer.content] == ["text"]
        assert answer.content[0].text == "Hello wörld 👋"  # type: ignore[union-attr]
        assert answer.stop_reason == "end_turn"
        assert answer.id.startswith("msg_")
        assert usage(answer) == (14, 8, 16)
    assert "".join(texts) == "Hello wörld 👋"

    first, second = fake.requests
    for sent in (first, second):
        assert sent.method == "POST" and sent.target == "/chat/completions"
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert "client-key" not in json.dumps(sent.headers)
    assert first.json() == {
        "model": "deepseek-chat",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        "max_tokens": 8192,
        # V4 models think unless told not to; a request without thinking asks for none.
        "thinking": {"type": "disabled"},
    }
    assert second.json() == {
        "model": "deepseek-chat",
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 8192,
        "temperature": 0.2,
        "top_p": 0.9,
        "stream": True,
        "stream_options": {"include_usage": True},
        "thinking": {"type": "disabled"},
    }


@pytest.mark.parametrize("stream", [False, True])
async def test_length_finish_is_max_tokens(
    start_router: StartRouter, start_fake: StartFake, stream: bool
) -> None:
    router, _, deepseek = await setup(start_router, start_fake, recorded("stream_length.sse"))
    async with client(router) as sdk:
        message = await ask(sdk, stream, max_tokens=8)
    assert not deepseek.rejected
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "一、二、三、四"  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens"
    assert usage(message) == (14, 8, 16)


# --- thinking -------------------------------------------------------------------------------

REASONER = recorded("stream_reasoner.sse")


@pytest.mark.parametrize(
    ("model", "options", "sent_model", "toggle"),
    [
        # deepseek-chat has a thinking mode, switched on by the toggle
        # (https://api-docs.deepseek.com/guides/thinking_mode).
        ("deepseek-chat", None, "deepseek-chat", {"type": "enabled"}),
        # The reasoner always thinks and takes no toggle.
        ("deepseek-reasoner", None, "deepseek-reasoner", None),
        # The thinking_model option: the reasoner when thinking is asked for.
        ("deepseek-chat", {"thinking_model": "deepseek-reasoner"}, "deepseek-reasoner", None),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_content_becomes_a_thinking_block_before_the_text(
    start_router: StartRouter,
    start_fake: StartFake,
    model: str,
    options: JSON | None,
    sent_model: str,
    toggle: JSON | None,
    stream: bool,
) -> None:
    router, fake, deepseek = await setup(start_router, start_fake, REASONER, options=options)
    async with client(router) as sdk:
        message = await ask(
            sdk,
            stream,
            model=f"deepseek,{model}",
            max_tokens=16000,
            thinking={"type": "enabled", "budget_tokens": 4096},
            extra_body={"temperature": 0.7},
        )

    assert not deepseek.rejected, deepseek.rejected
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "9.11 vs 9.8: compare tenths — 1 < 8."  # type: ignore[union-attr]
    assert message.content[1].text == "9.8 is greater."  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    # 1290 prompt tokens, 1152 of them cache hits.
    assert usage(message) == (138, 61, 1152)

    sent = fake.requests[0].json()
    assert sent["model"] == sent_model
    assert sent.get("thinking") == toggle
    # Each model keeps its documented cap in thinking mode too (8K for deepseek-chat: nothing
    # public says the toggle raises it), and temperature has no effect.
    assert sent["max_tokens"] == (8192 if sent_model == "deepseek-chat" else 16000)
    assert "temperature" not in sent
    # The V3 names take no reasoning_effort.
    assert "reasoning_effort" not in sent


# --- tools ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_parallel_tool_calls_round_trip_in_thinking_mode(
    start_router: StartRouter, start_fake: StartFake, stream: bool
) -> None:
    router, fake, deepseek = await setup(
        start_router, start_fake, recorded("stream_tool_calls.sse"), REASONER
    )
    params: JSON = {
        "max_tokens": 16000,
        "thinking": {"type": "enabled", "budget_tokens": 4096},
        "tools": CLAUDE_CODE_TOOLS,
    }
    async with client(router) as sdk:
        first = await ask(sdk, stream, **params)
        uses = [b for b in first.content if b.type == "tool_use"]
        assert [b.type for b in first.content] == ["thinking", "tool_use", "tool_use"]
        assert first.content[0].thinking == "Need both files; read them in parallel."  # type: ignore[union-attr]
        assert first.stop_reason == "tool_use"
        assert [(u.name, u.input) for u in uses] == [
            ("Read", {"file_path": "/srv/app/main.py"}),
            ("Grep", {"pattern": "def main", "-n": True}),
        ]
        assert all(u.id.startswith("toolu_") for u in uses) and uses[0].id != uses[1].id
        history: list[MessageParam] = [
            *USER,
            # As a client does: the whole assistant turn, thinking included, sent back.
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": uses[0].id, "content": "main()"},
                    {
                        "type": "tool_result",
                        "tool_use_id": uses[1].id,
                        "content": [{"type": "text", "text": "3:def main():"}],
                    },
                    {"type": "text", "text": "Which runs first?"},
                ],
            },
        ]
        second = await ask(sdk, stream, **params, messages=history)

    # Every request passed DeepSeek's checks: tool messages answer the calls one for one, and
    # the assistant tool-call turn carries its reasoning_content back.
    assert not deepseek.rejected, deepseek.rejected
    assert [b.type for b in second.content] == ["thinking", "text"]
    assert second.stop_reason == "end_turn"
    # 20480 prompt tokens, 19968 of them cache hits.
    assert usage(first) == (512, 96, 19968)

    sent = fake.requests[1].json()
    assert sent["thinking"] == {"type": "enabled"}
    names = [t["function"]["name"] for t in sent["tools"]]
    assert names == [t["name"] for t in CLAUDE_CODE_TOOLS if "input_schema" in t]
    user, assistant, read, grep, question = sent["messages"]
    assert user == {"role": "user", "content": "Say hello"}
    calls = assistant.pop("tool_calls")
    assert assistant == {
        "role": "assistant",
        "reasoning_content": "Need both files; read them in parallel.",
    }
    assert [(c["type"], c["function"]["name"]) for c in calls] == [
        ("function", "Read"),
        ("function", "Grep"),
    ]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [u.input for u in uses]
    assert read == {"role": "tool", "tool_call_id": calls[0]["id"], "content": "main()"}
    assert grep == {"role": "tool", "tool_call_id": calls[1]["id"], "content": "3:def main():"}
    assert question == {"role": "user", "content": "Which runs first?"}


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_images_do_not_break_the_conversation(
    start_router: StartRouter, start_fake: StartFake, stream: bool
) -> None:
    """DeepSeek's chat models read text only and reject any image part with a 400, which
    would end a Claude Code session for good (a screenshot, or Read of a PNG, stays in the
    history). The request must reach DeepSeek in a form it accepts, the text kept."""
    router, fake, deepseek = await setup(start_router, start_fake, HELLO)
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    messages: list[MessageParam] = [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": png},
                },
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                {"type": "text", "text": "What is this?"},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_read1", "name": "Read", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_read1",
                    "content": [
                        {"type": "text", "text": "Read image (1 KB)"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": png},
                        },
                    ],
                }
            ],
        },
    ]
    async with client(router) as sdk:
        message = await ask(sdk, stream, messages=messages)

    assert not deepseek.rejected, [r.message for _, r in deepseek.rejected]
    assert message.content[0].text == "Hello wörld 👋"  # type: ignore[union-attr]
    sent = fake.requests[0].json()["messages"]
    assert "What is this?" in json.dumps(sent[0]["content"])
    assert sent[1]["tool_calls"][0]["function"]["name"] == "Read"
    assert sent[2]["role"] == "tool" and "Read image (1 KB)" in sent[2]["content"]
    assert png not in json.dumps(sent)


# --- errors ---------------------------------------------------------------------------------


def deepseek_error(status: int, message: str, kind: str = "invalid_request_error") -> Reply:
    # https://api-docs.deepseek.com/quick_start/error_codes; the body is OpenAI's shape with
    # code "invalid_request_error" (tests/fixtures/deepseek/error_balance.json).
    return FakeDeepSeek(KEY, MODELS, "").error_reply(Rejection(status, message, kind))


BALANCE = Reply(
    402,
    [("content-type", "application/json")],
    [(FIXTURES / "deepseek" / "error_balance.json").read_bytes()],
)

# (what goes wrong, upstream status, its message, SDK exception, Anthropic type)
ERRORS = [
    # Real rejections by FakeDeepSeek: an unknown model name is DeepSeek's 400, a wrong key 401.
    pytest.param(
        "unknown-model",
        400,
        "Model Not Exist",
        anthropic.BadRequestError,
        "invalid_request_error",
        id="400-model-not-exist",
    ),
    pytest.param(
        "wrong-key",
        401,
        "Authentication Fails, Your api key: ****cdef is invalid",
        anthropic.AuthenticationError,
        "authentication_error",
        id="401-authentication-fails",
    ),
    pytest.param(
        BALANCE,
        402,
        "Insufficient Balance",
        anthropic.PaymentRequiredError,
        "billing_error",
        id="402-insufficient-balance",
    ),
    pytest.param(
        deepseek_error(422, "Invalid Parameters"),
        422,
        "Invalid Parameters",
        anthropic.UnprocessableEntityError,
        "invalid_request_error",
        id="422",
    ),
    pytest.param(
        deepseek_error(429, "Rate Limit Reached", "rate_limit_error"),
        429,
        "Rate Limit Reached",
        anthropic.RateLimitError,
        "rate_limit_error",
        id="429",
    ),
    pytest.param(
        deepseek_error(500, "Server Error", "server_error"),
        500,
        "Server Error",
        anthropic.InternalServerError,
        "api_error",
        id="500",
    ),
    pytest.param(
        deepseek_error(503, "Server Overloaded", "server_error"),
        503,
        "Server Overloaded",
        anthropic.ServiceUnavailableError,
        "overloaded_error",
        id="503",
    ),
]


@pytest.mark.parametrize(("cause", "status", "upstream_message", "exception", "error_type"), ERRORS)
@pytest.mark.parametrize("stream", [False, True])
async def test_deepseek_errors_become_typed_sdk_errors(
    start_router: StartRouter,
    start_fake: StartFake,
    cause: Reply | str,
    status: int,
    upstream_message: str,
    exception: type[anthropic.APIStatusError],
    error_type: str,
    stream: bool,
) -> None:
    script = cause if isinstance(cause, Reply) else HELLO
    # The fake names the last four characters of its own key.
    api_key = "sk-not-the-key-0000" if cause == "wrong-key" else KEY
    model = "deepseek,deepseek-coder" if cause == "unknown-model" else "claude-sonnet-4-5"
    router, _, deepseek = await setup(start_router, start_fake, script, api_key=api_key)
    async with client(router) as sdk:
        with pytest.raises(anthropic.APIStatusError) as raised:
            await ask(sdk, stream, model=model)

    error = raised.value
    assert type(error) is exception
    assert len(deepseek.rejected) == (0 if isinstance(cause, Reply) else 1)
    assert error.status_code == status
    assert error.body == {
        "type": "error",
        "error": {
            "type": error_type,
            "message": f"provider 'deepseek' answered {status}: {upstream_message}",
        },
    }


# --- broken streams -------------------------------------------------------------------------


def sse_events(text: str) -> list[tuple[str, JSON]]:
    events = []
    for frame in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(stream_reply(sse(REASONER[:4], done=False), then="cut"), id="connection-cut"),
        # Ends cleanly, without a finish_reason or [DONE].
        pytest.param(stream_reply(sse(REASONER[:4], done=False)), id="ended-early"),
    ],
)
async def test_a_broken_stream_ends_with_an_error_event_and_the_sdk_raises(
    start_router: StartRouter, start_fake: StartFake, reply: Reply
) -> None:
    router, _, deepseek = await setup(start_router, start_fake, reply)
    async with router.client() as http:
        response = await http.post(
            "/v1/messages",
            json={"model": "m", "max_tokens": 10, "messages": USER, "stream": True},
        )
    assert response.status_code == 200
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert events[2][1]["content_block"]["type"] == "thinking"
    assert names[-1] == "error" and names.count("error") == 1
    assert "message_stop" not in names and "message_delta" not in names
    assert events[-1][1]["error"]["type"] == "api_error"

    async with client(router) as sdk:
        texts: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as raised:
            async with sdk.messages.stream(
                model="claude-sonnet-4-5", max_tokens=10, messages=USER
            ) as stream:
                async for text in stream.text_stream:
                    texts.append(text)
    # The text that came before the break reached the client; then the SDK raised.
    assert "".join(texts) == "9.8"
    assert raised.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert not deepseek.rejected


async def test_a_response_body_cut_short_is_a_502(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    body = json.dumps(completion(HELLO)).encode()
    reply = Reply(200, [("content-type", "application/json")], [body[:120]], then="cut")
    router, _, _ = await setup(start_router, start_fake, reply)
    async with client(router) as sdk:
        with pytest.raises(anthropic.InternalServerError) as raised:
            await ask(sdk, False)
    assert raised.value.status_code == 502
    assert raised.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "provider 'deepseek'" in raised.value.body["error"]["message"]  # type: ignore[index]

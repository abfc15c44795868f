"""The official ``anthropic`` SDK -> the real router -> a fake Gemini API on loopback.

Every request the router sends upstream goes through tests/fake_gemini.py's checks, which reject
what the real API rejects (unknown fields, roles, schema keywords, unpaired function calls,
missing or unknown thought signatures on Gemini 3), with Google's statuses and error bodies. The
answers are the recorded chunks of tests/fixtures/gemini/: streamed as ``alt=sse`` events, or
merged into the one ``GenerateContentResponse`` that ``generateContent`` returns.
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

from tests.conftest import RunningRouter, StartFake, StartRouter, provider_config
from tests.fake_gemini import FakeGemini
from tests.fakeserver import FakeServer, Reply, Request
from tests.sdk import USER, ask, client, usage

JSON = dict[str, Any]
FIXTURES = Path(__file__).parent / "fixtures" / "gemini"
KEY = "AIzaSyE2E-fake-gemini-key-0123456789abc"
MODELS = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-pro-preview"]
SIGNATURE: str = json.loads((FIXTURES / "signature.json").read_text())["signature"]
# Claude Code's own tool list: JSON Schemas with $schema, additionalProperties, exclusiveMinimum...
CLAUDE_CODE_TOOLS: list[JSON] = json.loads((FIXTURES / "claude_code_tools.json").read_text())[
    "tools"
]
# Google's front end answers with these (as recorded).
GOOGLE_HEADERS = [("server", "scaffolding on HTTPServer2"), ("vary", "Origin, X-Origin, Referer")]


def recorded(name: str) -> list[JSON]:
    """The chunks of a recorded stream, or a recorded response split into one chunk per part
    as Gemini streams it (usage on each, ``finishReason`` on the last)."""
    text = (FIXTURES / name).read_text()
    if name.endswith(".sse"):
        return [json.loads(line.removeprefix("data: ")) for line in text.splitlines() if line]
    whole = json.loads(text)
    candidate = whole["candidates"][0]
    parts = candidate["content"]["parts"]
    chunks = []
    for n, part in enumerate(parts, 1):
        piece: JSON = {"content": {"parts": [part], "role": "model"}, "index": 0}
        if n == len(parts):
            piece |= {k: v for k, v in candidate.items() if k not in ("content", "index")}
        chunks.append({**whole, "candidates": [piece]})
    return chunks


def merged(chunks: list[JSON]) -> JSON:
    """What ``generateContent`` answers for the answer the stream sends in pieces."""
    whole = copy.deepcopy(chunks[-1])
    if whole.get("candidates"):
        whole["candidates"][0]["content"]["parts"] = [
            part for chunk in chunks for part in chunk["candidates"][0]["content"]["parts"]
        ]
    return whole


def sse(chunks: list[JSON]) -> list[bytes]:
    # One event per chunk, CRLF pairs between them (tests/fixtures/gemini/stream_text.sse).
    return [b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks]


@dataclass
class ScriptedGemini(FakeGemini):
    """FakeGemini's checks on every request, answered from ``script`` instead of its Bash model.

    Each accepted request gets the next answer (the last repeats): a list of chunks, streamed or
    merged as the request's method asks, or a ready ``Reply``. The thought signatures the
    answers carry are the ones later requests may send back.
    """

    script: list[list[JSON] | Reply] = field(default_factory=list)
    issued: set[str] = field(default_factory=set)
    bodies: list[JSON] = field(default_factory=list)

    @property
    def signatures(self) -> set[str]:
        return self.issued

    def answer(self, request: Request, model: str, method: str, body: JSON) -> Reply:
        item = self.script[min(len(self.bodies), len(self.script) - 1)]
        self.bodies.append(body)
        if isinstance(item, Reply):
            return item
        for chunk in item:
            for candidate in chunk.get("candidates", ()):
                for part in candidate["content"]["parts"]:
                    if "thoughtSignature" in part:
                        self.issued.add(part["thoughtSignature"])
        if method == "generateContent":
            return Reply.json(merged(item), headers=GOOGLE_HEADERS)
        return Reply(200, [("content-type", "text/event-stream"), *GOOGLE_HEADERS], sse(item))


async def setup(
    start_router: StartRouter,
    start_fake: StartFake,
    *script: list[JSON] | Reply,
    api_key: str = KEY,
) -> tuple[RunningRouter, FakeServer, ScriptedGemini]:
    gemini = ScriptedGemini(KEY, MODELS, command="", script=list(script))
    fake = await start_fake(gemini)
    provider = provider_config(
        fake,
        name="gemini",
        path="/v1beta/models/",
        models=MODELS,
        transformer={"use": ["gemini"]},
        api_key=api_key,
    )
    router = await start_router(
        {"Providers": [provider], "Router": {"default": "gemini,gemini-2.5-flash"}}
    )
    return router, fake, gemini


def target(model: str, stream: bool) -> str:
    if stream:
        return f"/v1beta/models/{model}:streamGenerateContent?alt=sse"
    return f"/v1beta/models/{model}:generateContent"


# --- text -----------------------------------------------------------------------------------


async def test_plain_text_create_and_stream(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    router, fake, gemini = await setup(
        start_router, start_fake, recorded("response_text.json"), recorded("stream_text.sse")
    )
    params: JSON = {
        "system": "Be brief.",
        "max_tokens": 100,
        "stop_sequences": ["END"],
        # This SDK version has no sampling parameters of its own; clients send them like this.
        "extra_body": {"temperature": 0.2, "top_k": 40},
    }
    async with client(router) as sdk:
        message = await ask(sdk, False, **params)
        async with sdk.messages.stream(
            model="claude-sonnet-4-5", max_tokens=100, messages=USER
        ) as stream:
            texts = [text async for text in stream.text_stream]
            final = await stream.get_final_message()

    assert not gemini.rejected
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Paris is the capital of France."  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.model == "gemini-2.5-flash"
    assert message.id == "msg_nonstream-2"
    assert usage(message) == (9, 7, 0)

    expected = "Bonjour ! Voici un résumé : le module `sse.py` découpe le flux en événements — "
    expected += "rien de plus. 🚀"
    assert "".join(texts) == expected
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == expected  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.id == "msg_IZI2acSKMoWl0-kPmYj2yQc"
    # Anthropic's output_tokens include thinking: 22 candidates + 41 thoughts.
    assert usage(final) == (12, 63, 0)

    first, second = fake.requests
    assert first.target == target("gemini-2.5-flash", False)
    assert second.target == target("gemini-2.5-flash", True)
    for sent in (first, second):
        assert sent.headers["x-goog-api-key"] == KEY
        assert "authorization" not in sent.headers
        assert "client-key" not in json.dumps(sent.headers)
    assert first.json() == {
        "contents": [{"parts": [{"text": "Say hello"}], "role": "user"}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {
            "maxOutputTokens": 100,
            "temperature": 0.2,
            "topK": 40,
            "stopSequences": ["END"],
        },
    }
    assert second.json() == {
        "contents": [{"parts": [{"text": "Say hello"}], "role": "user"}],
        "generationConfig": {"maxOutputTokens": 100},
    }


@pytest.mark.parametrize(
    ("name", "text", "stop_reason", "tokens"),
    [
        ("stream_max_tokens.sse", "1, 2, 3, 4,", "max_tokens", (20, 10, 0)),
        ("stream_safety.sse", "I can", "refusal", (20, 2, 0)),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_finish_reasons(
    start_router: StartRouter,
    start_fake: StartFake,
    name: str,
    text: str,
    stop_reason: str,
    tokens: tuple[int, int, int],
    stream: bool,
) -> None:
    router, _, gemini = await setup(start_router, start_fake, recorded(name))
    async with client(router) as sdk:
        message = await ask(sdk, stream)
    assert not gemini.rejected
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == text  # type: ignore[union-attr]
    assert message.stop_reason == stop_reason
    assert usage(message) == tokens


# --- thinking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "budget", "max_tokens", "config"),
    [
        ("gemini-2.5-pro", 2000, 4096, {"includeThoughts": True, "thinkingBudget": 2000}),
        # Gemini 3 takes a level (ai.google.dev/gemini-api/docs/gemini-3); Pro has low and high.
        ("gemini-3-pro-preview", 18000, 20000, {"includeThoughts": True, "thinkingLevel": "high"}),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_thoughts_become_a_thinking_block_before_the_text(
    start_router: StartRouter,
    start_fake: StartFake,
    model: str,
    budget: int,
    max_tokens: int,
    config: JSON,
    stream: bool,
) -> None:
    router, fake, gemini = await setup(start_router, start_fake, recorded("stream_thinking.sse"))
    async with client(router) as sdk:
        message = await ask(
            sdk,
            stream,
            model=f"gemini,{model}",
            max_tokens=max_tokens,
            thinking={"type": "enabled", "budget_tokens": budget},
        )

    assert not gemini.rejected
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == (  # type: ignore[union-attr]
        "**Weighing the options**\n\nThe user wants the smaller diff, so"
        " I should keep the existing parser and only add the CR check."
    )
    assert message.content[1].text == (  # type: ignore[union-attr]
        "Keep the parser; add one check for a trailing `\\r`. That is the whole fix."
    )
    assert message.stop_reason == "end_turn"
    # 5210 prompt tokens, 4096 of them cached; 21 candidates + 412 thoughts.
    assert usage(message) == (1114, 433, 4096)

    (sent,) = fake.requests
    assert sent.target == target(model, stream)
    assert sent.json()["generationConfig"] == {
        "maxOutputTokens": max_tokens,
        "thinkingConfig": config,
    }


# --- tools ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["response_tools.json", "stream_parallel_tools.sse"])
@pytest.mark.parametrize("stream", [False, True])
async def test_parallel_tool_calls_round_trip_on_gemini_3(
    start_router: StartRouter, start_fake: StartFake, fixture: str, stream: bool
) -> None:
    answer = recorded(fixture)
    calls = [p for p in merged(answer)["candidates"][0]["content"]["parts"] if "functionCall" in p]
    assert len(calls) == 2 and calls[0]["thoughtSignature"] == SIGNATURE
    router, fake, gemini = await setup(
        start_router, start_fake, answer, recorded("response_text.json")
    )
    model = "gemini,gemini-3-pro-preview"
    async with client(router) as sdk:
        first = await ask(sdk, stream, model=model, tools=CLAUDE_CODE_TOOLS)
        uses = [b for b in first.content if b.type == "tool_use"]
        assert first.stop_reason == "tool_use"
        assert [b.type for b in first.content] == ["thinking", "text", "tool_use", "tool_use"]
        assert [(u.name, u.input) for u in uses] == [
            (c["functionCall"]["name"], c["functionCall"]["args"]) for c in calls
        ]
        assert all(u.id.startswith("toolu_") for u in uses) and uses[0].id != uses[1].id
        history = [
            *USER,
            # As a client does: the whole assistant turn, thinking included, sent back.
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": uses[1].id, "content": "second out"},
                    {
                        "type": "tool_result",
                        "tool_use_id": uses[0].id,
                        "content": [{"type": "text", "text": "first out"}],
                        "is_error": True,
                    },
                ],
            },
        ]
        second = await ask(sdk, stream, model=model, tools=CLAUDE_CODE_TOOLS, messages=history)

    # Every request passed Gemini's checks: schemas cleaned, calls answered one for one, and
    # the first call of the model turn carried the signature Gemini issued.
    assert not gemini.rejected, gemini.rejected
    assert second.content[0].text == "Paris is the capital of France."  # type: ignore[union-attr]
    assert second.stop_reason == "end_turn"

    tools = fake.requests[0].json()["tools"]
    declared = [d["name"] for d in tools[0]["functionDeclarations"]]
    assert declared == [t["name"] for t in CLAUDE_CODE_TOOLS if "input_schema" in t]
    sent = fake.requests[1].json()
    assert fake.requests[1].target == target("gemini-3-pro-preview", stream)
    user, model_turn, results = sent["contents"]
    assert user == {"parts": [{"text": "Say hello"}], "role": "user"}
    texts = [p for p in merged(answer)["candidates"][0]["content"]["parts"] if "text" in p]
    said = [p["text"] for p in texts if not p.get("thought")]
    assert model_turn == {
        "parts": [
            # The thought summary is not sent back: Gemini takes no thoughts as input.
            *({"text": t} for t in said),
            {"functionCall": calls[0]["functionCall"], "thoughtSignature": SIGNATURE},
            {"functionCall": calls[1]["functionCall"]},
        ],
        "role": "model",
    }
    # Each response named after its call, found from the tool_use id, in the client's order.
    names = [c["functionCall"]["name"] for c in calls]
    assert results == {
        "parts": [
            {"functionResponse": {"name": names[1], "response": {"result": "second out"}}},
            {"functionResponse": {"name": names[0], "response": {"error": "first out"}}},
        ],
        "role": "user",
    }
    expected_usage = {
        "response_tools.json": (1024, 117, 1024),  # 2048 prompt, 1024 cached; 40 + 77
        "stream_parallel_tools.sse": (18230, 154, 0),  # 58 candidates + 96 thoughts
    }
    assert usage(first) == expected_usage[fixture]


async def test_tool_choice_and_a_forced_tool(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    router, fake, gemini = await setup(start_router, start_fake, recorded("response_text.json"))
    async with client(router) as sdk:
        await ask(sdk, False, tools=CLAUDE_CODE_TOOLS, tool_choice={"type": "tool", "name": "Read"})
        await ask(sdk, False, tools=CLAUDE_CODE_TOOLS, tool_choice={"type": "any"})
    assert not gemini.rejected, gemini.rejected
    configs = [r.json()["toolConfig"] for r in fake.requests]
    assert configs == [
        {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["Read"]}},
        {"functionCallingConfig": {"mode": "ANY"}},
    ]


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_images_become_inline_data_and_file_data(
    start_router: StartRouter, start_fake: StartFake, stream: bool
) -> None:
    router, fake, gemini = await setup(start_router, start_fake, recorded("stream_text.sse"))
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0fake").decode()
    messages = [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": png},
                },
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                {"type": "text", "text": "What is this? Take a screenshot too."},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_shot1", "name": "Screenshot", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_shot1",
                    "content": [
                        {"type": "text", "text": "Captured"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/jpeg", "data": jpeg},
                        },
                    ],
                }
            ],
        },
    ]
    async with client(router) as sdk:
        message = await ask(sdk, stream, messages=messages)

    assert not gemini.rejected, gemini.rejected
    assert message.content[0].type == "text"
    assert fake.requests[0].json()["contents"] == [
        {
            "parts": [
                {"inlineData": {"mimeType": "image/png", "data": png}},
                {"fileData": {"fileUri": "https://x.test/a.jpg", "mimeType": "image/jpeg"}},
                {"text": "What is this? Take a screenshot too."},
            ],
            "role": "user",
        },
        {"parts": [{"functionCall": {"name": "Screenshot", "args": {}}}], "role": "model"},
        {
            "parts": [
                {"functionResponse": {"name": "Screenshot", "response": {"result": "Captured"}}},
                # The image a tool returned follows its response in the same turn.
                {"inlineData": {"mimeType": "image/jpeg", "data": jpeg}},
            ],
            "role": "user",
        },
    ]


# --- errors ---------------------------------------------------------------------------------


def google_error(status: int, code: str, message: str, *details: JSON) -> Reply:
    # https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes
    error: JSON = {"code": status, "message": message, "status": code}
    if details:
        error["details"] = list(details)
    return Reply.json({"error": error}, status=status, headers=GOOGLE_HEADERS)


RETRY_INFO = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"}
QUOTA = "You exceeded your current quota, please check your plan and billing details."
MODEL_404 = (
    "models/gemini-1.0-ultra is not found for API version v1beta, or is not supported for {}. "
    "Call ListModels to see the list of available models and their supported methods."
)
NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)

# (what goes wrong, upstream status, its message, SDK exception, Anthropic status and type)
ERRORS = [
    pytest.param(
        google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
        400,
        "Request contains an invalid argument.",
        anthropic.BadRequestError,
        400,
        "invalid_request_error",
        id="400-invalid-argument",
    ),
    # Real rejections by FakeGemini: a wrong key is Google's 400 API_KEY_INVALID, which an
    # Anthropic client knows as 401; no key at all is a 403; an unknown model a 404.
    pytest.param(
        "wrong-key",
        400,
        "API key not valid. Please pass a valid API key.",
        anthropic.AuthenticationError,
        401,
        "authentication_error",
        id="400-api-key-invalid",
    ),
    pytest.param(
        "no-key", 403, NO_KEY, anthropic.PermissionDeniedError, 403, "permission_error", id="403"
    ),
    pytest.param(
        "unknown-model",
        404,
        MODEL_404,
        anthropic.NotFoundError,
        404,
        "not_found_error",
        id="404",
    ),
    pytest.param(
        google_error(429, "RESOURCE_EXHAUSTED", QUOTA, RETRY_INFO),
        429,
        QUOTA,
        anthropic.RateLimitError,
        429,
        "rate_limit_error",
        id="429-resource-exhausted",
    ),
    pytest.param(
        # The streaming endpoint's form: a JSON array (tests/fixtures/gemini/error_array.json).
        Reply(
            429,
            [("content-type", "application/json"), *GOOGLE_HEADERS],
            [(FIXTURES / "error_array.json").read_bytes()],
        ),
        429,
        QUOTA,
        anthropic.RateLimitError,
        429,
        "rate_limit_error",
        id="429-array",
    ),
    pytest.param(
        google_error(500, "INTERNAL", "An internal error has occurred."),
        500,
        "An internal error has occurred.",
        anthropic.InternalServerError,
        500,
        "api_error",
        id="500-internal",
    ),
    pytest.param(
        google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        503,
        "The model is overloaded. Please try again later.",
        anthropic.ServiceUnavailableError,
        503,
        "overloaded_error",
        id="503-unavailable",
    ),
    pytest.param(
        google_error(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
        504,
        "Deadline expired before operation could complete.",
        anthropic.GatewayTimeoutError,
        504,
        "timeout_error",
        id="504-deadline-exceeded",
    ),
]


@pytest.mark.parametrize(
    ("cause", "upstream_status", "upstream_message", "exception", "status", "error_type"), ERRORS
)
@pytest.mark.parametrize("stream", [False, True])
async def test_gemini_errors_become_typed_sdk_errors(
    start_router: StartRouter,
    start_fake: StartFake,
    cause: Reply | str,
    upstream_status: int,
    upstream_message: str,
    exception: type[anthropic.APIStatusError],
    status: int,
    error_type: str,
    stream: bool,
) -> None:
    script = cause if isinstance(cause, Reply) else recorded("response_text.json")
    api_key = {"wrong-key": "AIzaSy-not-the-key", "no-key": ""}.get(str(cause), KEY)
    model = "gemini,gemini-1.0-ultra" if cause == "unknown-model" else "claude-sonnet-4-5"
    router, _, gemini = await setup(start_router, start_fake, script, api_key=api_key)
    async with client(router) as sdk:
        with pytest.raises(anthropic.APIStatusError) as raised:
            await ask(sdk, stream, model=model)

    error = raised.value
    assert type(error) is exception
    # The scripted errors answer requests Gemini accepted; the others are Gemini's rejections.
    assert len(gemini.rejected) == (0 if isinstance(cause, Reply) else 1)
    assert error.status_code == status
    message = upstream_message.format("streamGenerateContent" if stream else "generateContent")
    assert error.body == {
        "type": "error",
        "error": {
            "type": error_type,
            "message": f"provider 'gemini' answered {upstream_status}: {message}",
        },
    }


async def test_rate_limit_retry_delay_reaches_the_client_as_retry_after(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    """Gemini says when to retry only in the body (``RetryInfo.retryDelay``, no header);
    Anthropic clients (the SDK, Claude Code) wait as long as ``retry-after`` says."""
    reply = google_error(429, "RESOURCE_EXHAUSTED", QUOTA, RETRY_INFO)
    router, _, _ = await setup(start_router, start_fake, reply)
    async with client(router) as sdk:
        with pytest.raises(anthropic.RateLimitError) as raised:
            await ask(sdk, False)
    assert raised.value.response.headers.get("retry-after") == "38"


# --- broken streams -------------------------------------------------------------------------


def sse_events(text: str) -> list[tuple[str, JSON]]:
    events = []
    for frame in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


STREAM_TEXT = recorded("stream_text.sse")
BROKEN = [
    pytest.param(
        Reply(200, [("content-type", "text/event-stream")], sse(STREAM_TEXT[:2]), then="cut"),
        "Bonjour ! Voici un résumé : le module `sse.py` découpe",
        "api_error",
        None,
        id="connection-cut",
    ),
    pytest.param(
        # Ends cleanly, but no chunk ever said finishReason.
        Reply(200, [("content-type", "text/event-stream")], sse(recorded("stream_truncated.sse"))),
        "The answer is forty",
        "api_error",
        "finishReason",
        id="no-finish-reason",
    ),
    pytest.param(
        # Gemini's own mid-stream error event.
        Reply(200, [("content-type", "text/event-stream")], sse(recorded("stream_error.sse"))),
        "Let me check",
        "overloaded_error",
        "The model is overloaded. Please try again later.",
        id="error-event",
    ),
]


@pytest.mark.parametrize(("reply", "partial", "error_type", "says"), BROKEN)
async def test_a_broken_stream_ends_with_an_error_event_and_the_sdk_raises(
    start_router: StartRouter,
    start_fake: StartFake,
    reply: Reply,
    partial: str,
    error_type: str,
    says: str | None,
) -> None:
    router, _, gemini = await setup(start_router, start_fake, reply)
    async with router.client() as http:
        response = await http.post(
            "/v1/messages",
            json={"model": "m", "max_tokens": 10, "messages": USER, "stream": True},
        )
    assert response.status_code == 200
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    assert names[-1] == "error" and names.count("error") == 1
    assert "message_stop" not in names and "message_delta" not in names
    error = events[-1][1]["error"]
    assert error["type"] == error_type
    if says is not None:
        assert says in error["message"]

    async with client(router) as sdk:
        texts: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as raised:
            async with sdk.messages.stream(
                model="claude-sonnet-4-5", max_tokens=10, messages=USER
            ) as stream:
                async for text in stream.text_stream:
                    texts.append(text)
    # The text that came before the break reached the client; then the SDK raised.
    assert "".join(texts) == partial
    assert raised.value.body["error"]["type"] == error_type  # type: ignore[index]
    assert not gemini.rejected


async def test_a_response_body_cut_short_is_a_502(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    body = json.dumps(merged(STREAM_TEXT)).encode()
    reply = Reply(200, [("content-type", "application/json")], [body[:120]], then="cut")
    router, _, _ = await setup(start_router, start_fake, reply)
    async with client(router) as sdk:
        with pytest.raises(anthropic.InternalServerError) as raised:
            await ask(sdk, False)
    assert raised.value.status_code == 502
    assert raised.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "provider 'gemini'" in raised.value.body["error"]["message"]  # type: ignore[index]

"""The OpenAI chat-completions format: request mapping, responses, and stream translation."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_router.anthropic import MessagesRequest
from trio_router.config import Provider
from trio_router.errors import InvalidRequestError, UpstreamError
from trio_router.providers.base import ProviderFormat, Route, StreamOutput
from trio_router.providers.openai import (
    ChatStreamTranslator,
    OpenAIFormat,
    OpenAIPlatformFormat,
    openai,
    openrouter,
    repair_tool_json,
)

FIXTURES = Path(__file__).parent / "fixtures" / "openai"

PROVIDER = Provider(
    name="openrouter",
    api_base_url="https://openrouter.ai/api/v1/chat/completions",
    api_key="sk-or-v1-test",
    models=["openai/gpt-4o"],
    headers={"HTTP-Referer": "https://example.com", "X-Title": "trio-router"},
)
ROUTE = Route(provider=PROVIDER, model="openai/gpt-4o")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def request(**fields: Any) -> MessagesRequest:
    fields.setdefault("model", "claude-sonnet-4-20250514")
    fields.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return msgspec.convert(fields, MessagesRequest)


def body(req: MessagesRequest, fmt: OpenAIFormat | None = None) -> dict[str, Any]:
    upstream = (fmt or OpenAIFormat({})).build_request(req, ROUTE)
    decoded: dict[str, Any] = json.loads(upstream.body)
    return decoded


def messages(*turns: dict[str, Any], **fields: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = body(request(messages=list(turns), **fields))["messages"]
    return sent


# --- the formats ---------------------------------------------------------------------------


def test_registry_names_build_the_two_formats() -> None:
    fmt: ProviderFormat = openrouter({})
    assert fmt.name == "openrouter"
    assert isinstance(fmt, OpenAIFormat)
    platform: ProviderFormat = openai({})
    assert platform.name == "openai"
    assert isinstance(platform, OpenAIPlatformFormat)


def test_build_request_url_headers_and_model() -> None:
    upstream = OpenAIFormat({}).build_request(request(), ROUTE)
    assert upstream.method == "POST"
    assert upstream.url == "https://openrouter.ai/api/v1/chat/completions"
    assert upstream.headers == {
        "Content-Type": "application/json",
        "Authorization": "Bearer sk-or-v1-test",
        "HTTP-Referer": "https://example.com",
        "X-Title": "trio-router",
    }
    assert json.loads(upstream.body)["model"] == "openai/gpt-4o"


def test_no_authorization_header_without_a_key() -> None:
    provider = Provider(name="local", api_base_url="http://127.0.0.1:8000/v1/chat/completions")
    upstream = OpenAIFormat({}).build_request(request(), Route(provider, "qwen"))
    assert upstream.headers == {"Content-Type": "application/json"}


def test_absent_fields_are_not_sent() -> None:
    assert body(request()) == {
        "model": "openai/gpt-4o",
        "messages": [{"role": "user", "content": "Hi"}],
    }


@pytest.mark.parametrize(
    "options", [{"reasoning": "sometimes"}, {"unknown": 1}, {"repair_tool_json": "yes"}]
)
def test_bad_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="openrouter options"):
        OpenAIFormat(options)


def test_error_message_uses_the_provider_body() -> None:
    error = b'{"error": {"message": "No endpoints found", "code": 404}}'
    assert OpenAIFormat({}).error_message(404, error) == "No endpoints found"


# --- request mapping: messages ------------------------------------------------------------


def test_system_string_and_blocks_without_cache_control() -> None:
    assert messages({"role": "user", "content": "Hi"}, system="Be brief.")[0] == {
        "role": "system",
        "content": "Be brief.",
    }
    system = [
        {"type": "text", "text": "You are Claude Code."},
        {"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral"}},
    ]
    sent = body(request(system=system))
    assert sent["messages"][0] == {"role": "system", "content": "You are Claude Code.\n\nRules."}
    assert "cache_control" not in json.dumps(sent)


def test_user_text_blocks_become_one_string() -> None:
    turn = {
        "role": "user",
        "content": [
            {"type": "text", "text": "<system-reminder>x</system-reminder>"},
            {"type": "text", "text": "Fix it", "cache_control": {"type": "ephemeral"}},
        ],
    }
    assert messages(turn) == [
        {"role": "user", "content": "<system-reminder>x</system-reminder>\nFix it"}
    ]


def test_images_become_image_url_parts() -> None:
    turn = {
        "role": "user",
        "content": [
            {"type": "text", "text": "Compare"},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
            },
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
        ],
    }
    assert messages(turn) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        }
    ]


def test_assistant_text_and_tool_use_become_tool_calls() -> None:
    turn = {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Need the file.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "abc"},
            {"type": "text", "text": "Reading it."},
            {
                "type": "tool_use",
                "id": "toolu_call_1",
                "name": "Read",
                "input": {"file_path": "/a.py", "limit": 20},
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "tool_use", "id": "toolu_01XYZ", "name": "LS", "input": {}},
        ],
    }
    assert messages({"role": "user", "content": "Go"}, turn)[1] == {
        "role": "assistant",
        "content": "Reading it.",
        "tool_calls": [
            {
                "type": "function",
                "id": "toolu_call_1",
                "function": {"name": "Read", "arguments": '{"file_path":"/a.py","limit":20}'},
            },
            {
                "type": "function",
                "id": "toolu_01XYZ",
                "function": {"name": "LS", "arguments": "{}"},
            },
        ],
    }


def test_assistant_made_only_of_thinking_is_left_out() -> None:
    turns: list[dict[str, Any]] = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": ""}]},
        {"role": "user", "content": "b"},
    ]
    assert messages(*turns) == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ]


def test_reasoning_history_option_sends_thinking_back_as_reasoning_content() -> None:
    turn = {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Step one.", "signature": ""},
            {"type": "tool_use", "id": "call_1", "name": "LS", "input": {}},
        ],
    }
    fmt = OpenAIFormat({"reasoning_history": "reasoning_content"})
    sent = body(request(messages=[{"role": "user", "content": "go"}, turn]), fmt)
    assert sent["messages"][1]["reasoning_content"] == "Step one."


def test_tool_results_come_first_then_the_rest_of_the_user_turn() -> None:
    turn = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "file contents"},
            {"type": "text", "text": "Also look at this"},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_b",
                "is_error": True,
                "content": [
                    {"type": "text", "text": "No such file"},
                    {"type": "text", "text": "(exit 1)"},
                ],
            },
            {
                "type": "tool_result",
                "tool_use_id": "toolu_c",
                "content": [
                    {"type": "text", "text": "Screenshot:"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"},
                    },
                ],
            },
            {"type": "tool_result", "tool_use_id": "toolu_d"},
        ],
    }
    assert messages(turn) == [
        {"role": "tool", "content": "file contents", "tool_call_id": "toolu_a"},
        {"role": "tool", "content": "Error: No such file\n(exit 1)", "tool_call_id": "toolu_b"},
        {"role": "tool", "content": "Screenshot:", "tool_call_id": "toolu_c"},
        {"role": "tool", "content": "", "tool_call_id": "toolu_d"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Also look at this"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
            ],
        },
    ]


def test_long_tool_ids_from_other_providers_are_shortened_consistently() -> None:
    # A Gemini-made id carries a thought signature and runs to thousands of characters;
    # OpenAI rejects call ids over 40.
    long_id = "toolu_" + "a1b2" * 500
    sent = messages(
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": long_id, "name": "Bash", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": long_id, "content": "ok"}],
        },
    )
    call_id = sent[0]["tool_calls"][0]["id"]
    assert len(call_id) <= 40
    assert sent[1] == {"role": "tool", "content": "ok", "tool_call_id": call_id}
    short = messages(
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_short1", "name": "Bash", "input": {}}],
        }
    )
    assert short[0]["tool_calls"][0]["id"] == "toolu_short1"


def test_system_entries_mid_conversation_stay_in_place() -> None:
    turns: list[dict[str, Any]] = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "system", "content": "Context changed."},
        {"role": "system", "content": [{"type": "text", "text": "More."}]},
        {"role": "user", "content": "c"},
    ]
    assert messages(*turns) == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "system", "content": "Context changed."},
        {"role": "system", "content": "More."},
        {"role": "user", "content": "c"},
    ]


def test_documents() -> None:
    text_document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "A"},
    }
    turn = {
        "role": "user",
        "content": [
            text_document,
            {
                "type": "document",
                "source": {"type": "content", "content": [{"type": "text", "text": "B"}]},
            },
            {
                "type": "document",
                "title": "spec.pdf",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            },
        ],
    }
    assert messages(turn)[0]["content"] == [
        {"type": "text", "text": "A"},
        {"type": "text", "text": "B"},
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "spec.pdf"},
        },
    ]
    assert messages({"role": "user", "content": [text_document]}) == [
        {"role": "user", "content": "A"}
    ]


def test_unsupported_document_source_is_a_client_error() -> None:
    turn = {
        "role": "user",
        "content": [
            {
                "type": "document",
                "source": {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"},
            }
        ],
    }
    with pytest.raises(InvalidRequestError, match="'file'"):
        messages(turn)


def test_unknown_role_is_a_client_error() -> None:
    with pytest.raises(InvalidRequestError, match="unknown role 'developer'"):
        messages({"role": "developer", "content": "x"})


# --- request mapping: tools and parameters -------------------------------------------------

TOOLS = [
    {
        "name": "Read",
        "description": "Read a file",
        "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}},
        "cache_control": {"type": "ephemeral"},
    },
    {"name": "web_search", "type": "web_search_20250305", "max_uses": 5},
]


def test_tools_become_functions_and_server_tools_are_dropped() -> None:
    assert body(request(tools=TOOLS))["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Read",
                "parameters": {"type": "object", "properties": {"file_path": {"type": "string"}}},
                "description": "Read a file",
            },
        }
    ]


def test_only_server_tools_sends_no_tools_and_no_tool_choice() -> None:
    sent = body(request(tools=TOOLS[1:], tool_choice={"type": "any"}))
    assert "tools" not in sent
    assert "tool_choice" not in sent


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "Read"}, {"type": "function", "function": {"name": "Read"}}),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any) -> None:
    sent = body(request(tools=TOOLS, tool_choice=choice))
    assert sent["tool_choice"] == expected
    assert "parallel_tool_calls" not in sent


def test_disable_parallel_tool_use() -> None:
    sent = body(
        request(tools=TOOLS, tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    )
    assert sent["parallel_tool_calls"] is False


def test_bad_tool_choice_is_refused_while_decoding() -> None:
    with pytest.raises(msgspec.ValidationError, match="needs a `name`"):
        request(tools=TOOLS, tool_choice={"type": "tool"})
    with pytest.raises(msgspec.ValidationError, match="Invalid enum value 'sometimes'"):
        request(tools=TOOLS, tool_choice={"type": "sometimes"})


def test_sampling_stop_and_stream_parameters() -> None:
    sent = body(
        request(
            max_tokens=32000,
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            stop_sequences=["\n\nHuman:"],
            stream=True,
        )
    )
    del sent["messages"]
    assert sent == {
        "model": "openai/gpt-4o",
        "max_tokens": 32000,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\nHuman:"],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_openai_sends_max_completion_tokens() -> None:
    sent = body(request(max_tokens=1024), OpenAIPlatformFormat({}))
    assert sent["max_completion_tokens"] == 1024
    assert "max_tokens" not in sent
    overridden = OpenAIPlatformFormat({"max_tokens_field": "max_tokens"})
    assert body(request(max_tokens=1024), overridden)["max_tokens"] == 1024


def test_user_id_is_sent_as_user_and_hashed_when_too_long() -> None:
    assert body(request(metadata={"user_id": "user_abc"}))["user"] == "user_abc"
    claude_code = json.dumps(
        {"device_id": "d" * 64, "account_uuid": "a" * 36, "session_id": "s" * 36}
    )
    sent = body(request(metadata={"user_id": claude_code}))["user"]
    assert sent == hashlib.sha256(claude_code.encode()).hexdigest()
    assert len(sent) == 64


@pytest.mark.parametrize(
    ("thinking", "effort", "openrouter_reasoning", "openai_effort"),
    [
        ({"type": "enabled", "budget_tokens": 4000}, None, {"max_tokens": 4000}, "low"),
        ({"type": "enabled", "budget_tokens": 10000}, None, {"max_tokens": 10000}, "medium"),
        ({"type": "enabled", "budget_tokens": 31999}, None, {"max_tokens": 31999}, "high"),
        ({"type": "adaptive"}, "medium", {"effort": "medium"}, "medium"),
        ({"type": "adaptive"}, "max", {"effort": "xhigh"}, "xhigh"),
        ({"type": "adaptive"}, None, {"effort": "high"}, "high"),
        ({"type": "disabled"}, "low", None, None),
        (None, "low", None, None),
    ],
)
def test_thinking(
    thinking: dict[str, Any] | None,
    effort: str | None,
    openrouter_reasoning: dict[str, Any] | None,
    openai_effort: str | None,
) -> None:
    fields: dict[str, Any] = {"max_tokens": 32000}
    if thinking is not None:
        fields["thinking"] = thinking
    if effort is not None:
        fields["output_config"] = {"effort": effort}
    via_openrouter = body(request(**fields))
    assert via_openrouter.get("reasoning") == openrouter_reasoning
    assert "reasoning_effort" not in via_openrouter
    via_openai = body(request(**fields), OpenAIPlatformFormat({}))
    assert via_openai.get("reasoning_effort") == openai_effort
    assert "reasoning" not in via_openai
    silent = body(request(**fields), OpenAIFormat({"reasoning": "none"}))
    assert "reasoning" not in silent
    assert "reasoning_effort" not in silent


def test_output_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    sent = body(request(output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }
    titled = {**schema, "title": "Weather_Report"}
    sent = body(request(output_config={"format": {"type": "json_schema", "schema": titled}}))
    assert sent["response_format"]["json_schema"]["name"] == "Weather_Report"
    with pytest.raises(InvalidRequestError):
        body(request(output_config={"format": {"type": "xml"}}))


# --- complete responses ---------------------------------------------------------------------


def parse(raw: bytes | dict[str, Any], fmt: OpenAIFormat | None = None) -> dict[str, Any]:
    data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    message = (fmt or OpenAIFormat({})).parse_response(data, ROUTE)
    assert message.id.startswith("msg_") and len(message.id) == 28
    result: dict[str, Any] = msgspec.to_builtins(message)
    del result["id"]
    return result


def completion(
    message: dict[str, Any], finish: str | None = "stop", **extra: Any
) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish, **extra}]}


def test_tool_call_response() -> None:
    assert parse(fixture("openai_tool_response.json")) == {
        "type": "message",
        "model": "gpt-4o-2024-08-06",
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_call_3Ij8r0ZGa3SzhQ4XU9ehXDgD",
                "name": "get_weather",
                "input": {"location": "Paris, France"},
            },
            {
                "type": "tool_use",
                "id": "toolu_call_Wq8dTzN1xK5bV2mR7cJ4pL0s",
                "name": "get_time",
                "input": {"timezone": "Asia/Tokyo"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 86,
            "output_tokens": 300,
            "cache_creation_input_tokens": None,
            "cache_read_input_tokens": 1920,
        },
        "role": "assistant",
    }


def test_reasoning_response_with_cache_writes() -> None:
    result = parse(fixture("openrouter_reasoning_response.json"))
    assert result["model"] == "anthropic/claude-sonnet-4"
    assert result["content"] == [
        {"type": "thinking", "thinking": "Simple geography question.", "signature": ""},
        {"type": "text", "text": "Paris is the capital of France."},
    ]
    assert result["stop_reason"] == "end_turn"
    assert result["usage"] == {
        "input_tokens": 100,
        "output_tokens": 25,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 2000,
    }


def test_reasoning_content_and_deepseek_cache_hits() -> None:
    raw = completion({"content": "4", "reasoning_content": "2+2"})
    raw["usage"] = {"prompt_tokens": 100, "completion_tokens": 5, "prompt_cache_hit_tokens": 64}
    result = parse(raw)
    assert result["content"][0] == {"type": "thinking", "thinking": "2+2", "signature": ""}
    assert result["usage"]["input_tokens"] == 36
    assert result["usage"]["cache_read_input_tokens"] == 64


def test_model_falls_back_to_the_route() -> None:
    result = parse(completion({"content": "hi"}))
    assert result["model"] == "openai/gpt-4o"
    assert result["usage"]["input_tokens"] == 0


@pytest.mark.parametrize(
    ("finish", "extra", "expected"),
    [
        ("stop", {}, ("end_turn", None)),
        ("length", {}, ("max_tokens", None)),
        ("tool_calls", {}, ("tool_use", None)),
        ("function_call", {}, ("tool_use", None)),
        ("content_filter", {}, ("refusal", None)),
        (None, {}, ("end_turn", None)),
        ("stop", {"stop_reason": "###"}, ("stop_sequence", "###")),
        ("stop", {"stop_reason": 151645}, ("end_turn", None)),
    ],
)
def test_finish_reasons(
    finish: str | None, extra: dict[str, Any], expected: tuple[str, str | None]
) -> None:
    result = parse(completion({"content": "x"}, finish, **extra))
    assert (result["stop_reason"], result["stop_sequence"]) == expected


def test_stop_after_tool_calls_is_tool_use() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "LS", "arguments": "{}"}}
    assert parse(completion({"tool_calls": [call]}, "stop"))["stop_reason"] == "tool_use"


def test_refusal_is_text_with_stop_reason_refusal() -> None:
    result = parse(completion({"content": None, "refusal": "I can't help with that."}))
    assert result["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert result["stop_reason"] == "refusal"


def test_tool_ids_are_valid_anthropic_ids() -> None:
    calls = [
        {"id": "functions.Read:0", "function": {"name": "Read", "arguments": "{}"}},
        {"id": "toolu_01Abc", "function": {"name": "LS", "arguments": ""}},
        {"function": {"name": "Grep", "arguments": " "}},
    ]
    content = parse(completion({"tool_calls": calls}, "tool_calls"))["content"]
    assert content[0]["id"] == "toolu_functions_Read_0"
    assert content[1]["id"] == "toolu_01Abc"
    assert content[1]["input"] == {}
    assert content[2]["id"].startswith("toolu_") and content[2]["id"].endswith("_2")
    assert content[2]["input"] == {}


def test_malformed_tool_arguments_are_a_bad_gateway() -> None:
    call = {"id": "c", "function": {"name": "Edit", "arguments": '{"path": "a.py", "text": "x'}}
    with pytest.raises(UpstreamError, match="malformed JSON arguments for tool 'Edit'") as caught:
        parse(completion({"tool_calls": [call]}, "tool_calls"))
    assert caught.value.status == 502
    assert caught.value.error_type == "api_error"
    repaired = parse(completion({"tool_calls": [call]}), OpenAIFormat({"repair_tool_json": True}))
    assert repaired["content"][0]["input"] == {"path": "a.py", "text": "x"}


def test_errors_in_a_complete_response() -> None:
    with pytest.raises(UpstreamError, match="Rate limit exceeded") as caught:
        parse({"error": {"code": 429, "message": "Rate limit exceeded"}})
    assert caught.value.status == 429
    assert caught.value.error_type == "rate_limit_error"
    with pytest.raises(UpstreamError, match="no choices") as caught:
        parse({"choices": []})
    assert caught.value.status == 502
    with pytest.raises(UpstreamError, match="invalid chat completion"):
        parse(b"<html>Bad gateway</html>")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('{"a": [1, 2,], }', {"a": [1, 2]}),
        ('{"a": {"b": "cut', {"a": {"b": "cut"}}),
        ('{"a": "x\\', {"a": "x"}),
        ('{"a":', {"a": None}),
        ("", {}),
        ("[1, 2]", None),
        ("not json", None),
    ],
)
def test_repair_tool_json(text: str, expected: dict[str, Any] | None) -> None:
    assert repair_tool_json(text) == expected


# --- streams -----------------------------------------------------------------------------------


def norm(outputs: list[StreamOutput]) -> list[dict[str, Any]]:
    """Events as plain data, with the generated message id checked and then fixed."""
    events: list[dict[str, Any]] = []
    for output in outputs:
        assert not isinstance(output, bytes)
        event: dict[str, Any] = msgspec.to_builtins(output)
        if event["type"] == "message_start":
            assert event["message"]["id"].startswith("msg_")
            event["message"]["id"] = "msg_X"
        events.append(event)
    return events


def translate(data: bytes, cuts: list[int] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    translator = ChatStreamTranslator("route-model", **kwargs)
    outputs: list[StreamOutput] = []
    edges = [0, *(cuts or []), len(data)]
    for start, end in itertools.pairwise(edges):
        outputs += translator.feed(data[start:end])
    outputs += translator.close()
    return norm(outputs)


def message_start(model: str) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "type": "message",
            "id": "msg_X",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": None,
                "cache_read_input_tokens": None,
            },
            "role": "assistant",
        },
    }


PING = {"type": "ping"}
MESSAGE_STOP = {"type": "message_stop"}


def text_start(i: int) -> dict[str, Any]:
    return {
        "type": "content_block_start",
        "index": i,
        "content_block": {"type": "text", "text": ""},
    }


def thinking_start(i: int) -> dict[str, Any]:
    block = {"type": "thinking", "thinking": "", "signature": ""}
    return {"type": "content_block_start", "index": i, "content_block": block}


def tool_start(i: int, id: str, name: str) -> dict[str, Any]:
    block = {"type": "tool_use", "id": id, "name": name, "input": {}}
    return {"type": "content_block_start", "index": i, "content_block": block}


def text(i: int, value: str) -> dict[str, Any]:
    delta = {"type": "text_delta", "text": value}
    return {"type": "content_block_delta", "index": i, "delta": delta}


def thinking(i: int, value: str) -> dict[str, Any]:
    delta = {"type": "thinking_delta", "thinking": value}
    return {"type": "content_block_delta", "index": i, "delta": delta}


def args(i: int, value: str) -> dict[str, Any]:
    delta = {"type": "input_json_delta", "partial_json": value}
    return {"type": "content_block_delta", "index": i, "delta": delta}


def stop(i: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": i}


def message_delta(
    reason: str, usage: dict[str, int], sequence: str | None = None
) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": reason, "stop_sequence": sequence},
        "usage": usage,
    }


def error(message: str, kind: str = "api_error") -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


EXPECTED: dict[str, list[dict[str, Any]]] = {
    "openai_text.sse": [
        message_start("gpt-4o-2024-08-06"),
        PING,
        text_start(0),
        text(0, "Café"),
        text(0, " au lait"),
        text(0, " ☕"),
        text(0, " — 日本語"),
        text(0, "!"),
        stop(0),
        message_delta(
            "end_turn", {"output_tokens": 9, "input_tokens": 210, "cache_read_input_tokens": 1024}
        ),
        MESSAGE_STOP,
    ],
    "openrouter_reasoning.sse": [
        message_start("deepseek/deepseek-r1"),
        PING,
        thinking_start(0),
        thinking(0, "The user wants π"),
        thinking(0, " to five places — "),
        thinking(0, "easy."),
        stop(0),
        text_start(1),
        text(1, "π ≈ 3.14159"),
        text(1, "…"),
        stop(1),
        message_delta(
            "end_turn", {"output_tokens": 42, "input_tokens": 15, "cache_read_input_tokens": 0}
        ),
        MESSAGE_STOP,
    ],
    "openai_parallel_tools.sse": [
        message_start("gpt-4o-2024-08-06"),
        PING,
        tool_start(0, "toolu_call_3Ij8r0ZGa3SzhQ4XU9ehXDgD", "get_weather"),
        args(0, '{"lo'),
        args(0, "cation"),
        args(0, '": "Par'),
        args(0, "is, Fr"),
        args(0, 'ance"}'),
        stop(0),
        tool_start(1, "toolu_call_Wq8dTzN1xK5bV2mR7cJ4pL0s", "get_weather"),
        args(1, '{"lo'),
        args(1, 'cation": "T'),
        args(1, 'ōkyō"}'),
        stop(1),
        message_delta(
            "tool_use", {"output_tokens": 46, "input_tokens": 82, "cache_read_input_tokens": 0}
        ),
        MESSAGE_STOP,
    ],
    # Call b's arguments wait, buffered, until call a's are complete JSON.
    "interleaved_tools.sse": [
        message_start("qwen3-coder"),
        PING,
        text_start(0),
        text(0, "Reading both files."),
        stop(0),
        tool_start(1, "toolu_call_a1", "Read"),
        args(1, '{"file_path": "/src/a.py"'),
        args(1, "}"),
        stop(1),
        tool_start(2, "toolu_call_b2", "Read"),
        args(2, '{"file_path": '),
        args(2, '"/src/b.py"}'),
        stop(2),
        message_delta("tool_use", {"output_tokens": 0}),
        MESSAGE_STOP,
    ],
    "openrouter_error.sse": [
        message_start("openai/gpt-4o"),
        PING,
        text_start(0),
        text(0, "Half an"),
        text(0, " answer"),
        error("Provider disconnected unexpectedly"),
    ],
    "openai_error.sse": [
        message_start("gpt-4o-2024-08-06"),
        PING,
        text_start(0),
        text(0, "The"),
        text(0, " question"),
        error("The server had an error while processing your request. Sorry about that!"),
    ],
    "crlf_stop_sequence.sse": [
        message_start("Qwen/Qwen2.5-7B-Instruct"),
        PING,
        text_start(0),
        text(0, "A naïve"),
        text(0, " résumé"),
        text(0, " — done."),
        stop(0),
        message_delta(
            "stop_sequence", {"output_tokens": 7, "input_tokens": 40}, sequence="\nObservation:"
        ),
        MESSAGE_STOP,
    ],
    "truncated.sse": [
        message_start("gpt-4o-2024-08-06"),
        PING,
        text_start(0),
        text(0, "Hello"),
        text(0, ", wör"),
        error("upstream stream ended before completion"),
    ],
    "finish_without_done.sse": [
        message_start("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"),
        PING,
        thinking_start(0),
        thinking(0, "2 + 2 is"),
        thinking(0, " 4."),
        stop(0),
        text_start(1),
        text(1, "4"),
        stop(1),
        message_delta("end_turn", {"output_tokens": 9, "input_tokens": 12}),
        MESSAGE_STOP,
    ],
}

# What the anthropic SDK's own accumulator builds from each complete stream.
ACCUMULATED: dict[str, tuple[list[dict[str, Any]], str, str | None]] = {
    "openai_text.sse": ([{"type": "text", "text": "Café au lait ☕ — 日本語!"}], "end_turn", None),
    "openrouter_reasoning.sse": (
        [
            {"type": "thinking", "thinking": "The user wants π to five places — easy."},
            {"type": "text", "text": "π ≈ 3.14159…"},
        ],
        "end_turn",
        None,
    ),
    "openai_parallel_tools.sse": (
        [
            {
                "type": "tool_use",
                "id": "toolu_call_3Ij8r0ZGa3SzhQ4XU9ehXDgD",
                "name": "get_weather",
                "input": {"location": "Paris, France"},
            },
            {
                "type": "tool_use",
                "id": "toolu_call_Wq8dTzN1xK5bV2mR7cJ4pL0s",
                "name": "get_weather",
                "input": {"location": "Tōkyō"},
            },
        ],
        "tool_use",
        None,
    ),
    "interleaved_tools.sse": (
        [
            {"type": "text", "text": "Reading both files."},
            {
                "type": "tool_use",
                "id": "toolu_call_a1",
                "name": "Read",
                "input": {"file_path": "/src/a.py"},
            },
            {
                "type": "tool_use",
                "id": "toolu_call_b2",
                "name": "Read",
                "input": {"file_path": "/src/b.py"},
            },
        ],
        "tool_use",
        None,
    ),
    "crlf_stop_sequence.sse": (
        [{"type": "text", "text": "A naïve résumé — done."}],
        "stop_sequence",
        "\nObservation:",
    ),
    "finish_without_done.sse": (
        [{"type": "thinking", "thinking": "2 + 2 is 4."}, {"type": "text", "text": "4"}],
        "end_turn",
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_stream(name: str) -> None:
    assert translate(fixture(name)) == EXPECTED[name]


def test_every_fixture_has_an_expectation() -> None:
    assert {p.name for p in FIXTURES.glob("*.sse")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(ACCUMULATED))
def test_the_sdk_rebuilds_the_message(name: str) -> None:
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in translate(fixture(name)):
        if event["type"] != "ping":
            snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)  # type: ignore[arg-type]
    assert snapshot is not None
    content, reason, sequence = ACCUMULATED[name]
    built = [
        {
            k: v
            for k, v in block.to_dict().items()
            if k in ("type", "text", "thinking", "id", "name", "input")
        }
        for block in snapshot.content
    ]
    assert built == content
    assert snapshot.stop_reason == reason
    assert snapshot.stop_sequence == sequence


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_two_way_split_gives_the_same_events(name: str) -> None:
    """Covers every cut inside a UTF-8 sequence and between CR and LF, deterministically."""
    data = fixture(name)
    whole = EXPECTED[name]
    for cut in range(1, len(data)):
        assert translate(data, [cut]) == whole, cut


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_byte_by_byte_gives_the_same_events(name: str) -> None:
    data = fixture(name)
    assert translate(data, list(range(1, len(data)))) == EXPECTED[name]


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(EXPECTED)), data=st.data())
def test_any_chunking_gives_the_same_events(name: str, data: st.DataObject) -> None:
    raw = fixture(name)
    cuts = data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=40, unique=True).map(sorted))
    assert translate(raw, cuts) == EXPECTED[name]


def sse(*chunks: dict[str, Any] | str) -> bytes:
    lines = []
    for chunk in chunks:
        payload = chunk if isinstance(chunk, str) else json.dumps(chunk)
        lines.append(f"data: {payload}\n\n")
    return "".join(lines).encode()


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "model": "m",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
        **extra,
    }


def call(
    index: int, arguments: str | None = None, id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    result: dict[str, Any] = {"index": index, "function": function}
    if id is not None:
        result["id"] = id
    return result


def test_usage_attribute_is_kept_current() -> None:
    translator = ChatStreamTranslator("m")
    assert translator.usage.input_tokens == 0
    translator.feed(
        sse(chunk({"content": "hi"}, usage={"prompt_tokens": 5, "completion_tokens": 1}))
    )
    assert (translator.usage.input_tokens, translator.usage.output_tokens) == (5, 1)
    translator.feed(
        sse(
            chunk({}, "stop"),
            {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}},
        )
    )
    assert translator.usage.output_tokens == 3


def test_done_without_a_finish_reason_ends_the_turn() -> None:
    events = translate(sse(chunk({"content": "ok"}), "[DONE]"))
    assert events[-2] == message_delta("end_turn", {"output_tokens": 0})


def test_done_alone_is_an_empty_message() -> None:
    assert translate(b"data: [DONE]\n\n") == [
        message_start("route-model"),
        PING,
        message_delta("end_turn", {"output_tokens": 0}),
        MESSAGE_STOP,
    ]


@pytest.mark.parametrize("data", [b"", b": OPENROUTER PROCESSING\n\n"])
def test_nothing_at_all_is_an_unfinished_stream(data: bytes) -> None:
    assert translate(data) == [error("upstream stream ended before completion")]


def test_an_error_first_is_the_only_event_and_ends_everything() -> None:
    translator = ChatStreamTranslator("m")
    first = translator.feed(sse({"error": {"code": 429, "message": "Rate limit exceeded"}}))
    assert norm(first) == [error("Rate limit exceeded", "rate_limit_error")]
    assert translator.feed(sse(chunk({"content": "late"}), "[DONE]")) == []
    assert translator.close() == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"error": {"type": "invalid_request_error", "message": "m"}}, "invalid_request_error"),
        ({"error": {"code": "rate_limit_exceeded", "message": "m"}}, "rate_limit_error"),
        ({"error": {"code": 503, "message": "m"}}, "overloaded_error"),
        (
            {"object": "error", "message": "m", "type": "BadRequestError", "code": 400},
            "invalid_request_error",
        ),
    ],
)
def test_stream_error_types(payload: dict[str, Any], expected: str) -> None:
    assert translate(sse(payload)) == [error("m", expected)]


def test_an_invalid_chunk_is_an_error() -> None:
    events = translate(sse(chunk({"content": "a"}), "{not json"))
    assert events[-1]["type"] == "error"
    assert "invalid stream chunk" in events[-1]["error"]["message"]


def test_close_after_done_adds_nothing() -> None:
    translator = ChatStreamTranslator("m")
    translator.feed(sse(chunk({"content": "a"}, "stop"), "[DONE]"))
    assert translator.close() == []


def test_reasoning_and_reasoning_content_together_are_not_doubled() -> None:
    events = translate(
        sse(chunk({"reasoning": "r", "reasoning_content": "r"}), chunk({}, "stop"), "[DONE]")
    )
    assert events[2:5] == [thinking_start(0), thinking(0, "r"), stop(0)]


def test_reasoning_after_text_is_a_new_thinking_block() -> None:
    events = translate(
        sse(
            chunk({"content": "a"}),
            chunk({"reasoning": "b"}),
            chunk({"content": "c"}, "stop"),
            "[DONE]",
        )
    )
    assert events[2:-2] == [
        text_start(0), text(0, "a"), stop(0),
        thinking_start(1), thinking(1, "b"), stop(1),
        text_start(2), text(2, "c"), stop(2),
    ]  # fmt: skip


def test_refusal_delta_is_text_and_a_refusal() -> None:
    events = translate(sse(chunk({"refusal": "No."}), chunk({}, "stop"), "[DONE]"))
    assert events[2:5] == [text_start(0), text(0, "No."), stop(0)]
    assert events[-2]["delta"]["stop_reason"] == "refusal"


def test_stop_after_tool_calls_is_tool_use_in_a_stream() -> None:
    data = sse(chunk({"tool_calls": [call(0, "{}", "c1", "LS")]}), chunk({}, "stop"), "[DONE]")
    assert translate(data)[-2]["delta"]["stop_reason"] == "tool_use"


def test_length_is_max_tokens_even_mid_tool_call() -> None:
    data = sse(chunk({"tool_calls": [call(0, '{"a"', "c1", "LS")]}), chunk({}, "length"), "[DONE]")
    assert translate(data)[-2]["delta"]["stop_reason"] == "max_tokens"


def test_calls_reusing_index_zero_with_new_ids_are_separate_blocks() -> None:
    data = sse(
        chunk({"tool_calls": [call(0, '{"a": 1}', "c1", "One")]}),
        chunk({"tool_calls": [call(0, '{"b": 2}', "c2", "Two")]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    )
    assert translate(data)[2:-2] == [
        tool_start(0, "toolu_c1", "One"), args(0, '{"a": 1}'), stop(0),
        tool_start(1, "toolu_c2", "Two"), args(1, '{"b": 2}'), stop(1),
    ]  # fmt: skip


def test_text_during_an_unfinished_tool_call_waits_its_turn() -> None:
    data = sse(
        chunk({"tool_calls": [call(0, '{"a": ', "c1", "One")]}),
        chunk({"content": "meanwhile"}),
        chunk({"tool_calls": [call(0, "1}")]}),
        chunk({"content": " more"}),
        chunk({}, "tool_calls"),
        "[DONE]",
    )
    assert translate(data)[2:-2] == [
        tool_start(0, "toolu_c1", "One"), args(0, '{"a": '), args(0, "1}"), stop(0),
        text_start(1), text(1, "meanwhile"), text(1, " more"), stop(1),
    ]  # fmt: skip


def test_arguments_for_a_closed_call_are_dropped() -> None:
    data = sse(
        chunk({"tool_calls": [call(0, "{}", "c1", "One")]}),
        chunk({"tool_calls": [call(1, "{}", "c2", "Two")]}),
        chunk({"tool_calls": [call(0, " ")]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    )
    assert translate(data)[2:-2] == [
        tool_start(0, "toolu_c1", "One"), args(0, "{}"), stop(0),
        tool_start(1, "toolu_c2", "Two"), args(1, "{}"), stop(1),
    ]  # fmt: skip


def test_missing_tool_id_gets_a_generated_one() -> None:
    events = translate(
        sse(chunk({"tool_calls": [call(0, "{}", None, "LS")]}), chunk({}, "tool_calls"), "[DONE]")
    )
    block = events[2]["content_block"]
    assert block["id"].startswith("toolu_") and block["id"].endswith("_0")
    assert block["name"] == "LS"


def test_repair_mode_sends_each_call_whole_and_repaired() -> None:
    data = sse(
        chunk({"tool_calls": [call(0, '{"path": "a.py", ', "c1", "Edit")]}),
        chunk({"tool_calls": [call(0, '"text": "hi')]}),
        chunk({}, "tool_calls"),
        "[DONE]",
    )
    assert translate(data, repair_tool_json=True)[2:-2] == [
        tool_start(0, "toolu_c1", "Edit"),
        args(0, '{"path":"a.py","text":"hi"}'),
        stop(0),
    ]
    broken = sse(chunk({"tool_calls": [call(0, "{{{]]", "c1", "Edit")]}), chunk({}, "tool_calls"))
    events = translate(broken, repair_tool_json=True)
    assert events[-1]["type"] == "error"
    assert "malformed JSON arguments for tool 'Edit'" in events[-1]["error"]["message"]

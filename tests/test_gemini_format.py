"""The Gemini format: request mapping, responses, streams, thought signatures, schema cleaning.

Fixtures under tests/fixtures/gemini/ follow the wire format of
https://ai.google.dev/api/generate-content (``GenerateContentResponse``; ``alt=sse`` framing as
recorded from generativelanguage.googleapis.com: one ``data:`` line per chunk, no ``[DONE]``,
``usageMetadata`` on every chunk, ``finishReason`` on the last).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_router.anthropic import (
    ContentBlockStart,
    ErrorEvent,
    MessageResponse,
    ToolUseBlock,
    event_decoder,
    request_decoder,
)
from trio_router.config import Provider
from trio_router.errors import UpstreamError
from trio_router.providers import gemini as gemini_module
from trio_router.providers.base import Route, StreamOutput, UpstreamRequest
from trio_router.providers.gemini import (
    SKIP_SIGNATURE,
    GeminiFormat,
    GeminiStreamTranslator,
    decode_signature,
    encode_tool_id,
)
from trio_router.providers.schema import (
    convert_schema,
    function_parameters,
    json_schema_parameters,
    restore_json_text,
    to_gemini_schema,
)

FIXTURES = Path(__file__).parent / "fixtures"
GEMINI = FIXTURES / "gemini"
BASE = "https://generativelanguage.googleapis.com/v1beta/models/"
SIGNATURE: str = json.loads((GEMINI / "signature.json").read_text())["signature"]
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")


def route(model: str = "gemini-2.5-flash", base: str = BASE, **provider: Any) -> Route:
    fields: dict[str, Any] = {"api_key": "AIza-test-key", "models": [model], **provider}
    return Route(Provider(name="gemini", api_base_url=base, **fields), model)


def request(**fields: Any) -> Any:
    fields.setdefault("model", "claude-sonnet-4-5")
    fields.setdefault("max_tokens", 1024)
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return request_decoder.decode(json.dumps(fields))


def build(
    model: str = "gemini-2.5-flash", options: dict[str, Any] | None = None, **fields: Any
) -> tuple[UpstreamRequest, dict[str, Any]]:
    upstream = GeminiFormat(options or {}).build_request(request(**fields), route(model))
    return upstream, json.loads(upstream.body)


def wire(events: list[StreamOutput]) -> list[dict[str, Any]]:
    return [msgspec.to_builtins(e) for e in events if not isinstance(e, bytes)]


def translate(
    name: str, model: str = "gemini-2.5-flash", chunks: list[bytes] | None = None
) -> tuple[list[StreamOutput], GeminiStreamTranslator]:
    translator = GeminiFormat({}).stream_translator(request(stream=True), route(model))
    data = (GEMINI / name).read_bytes()
    events: list[StreamOutput] = []
    for chunk in chunks if chunks is not None else [data]:
        events += translator.feed(chunk)
    events += translator.close()
    return events, translator


def tool_ids(events: list[StreamOutput]) -> list[str]:
    return [
        e.content_block.id
        for e in events
        if isinstance(e, ContentBlockStart) and isinstance(e.content_block, ToolUseBlock)
    ]


# --- URL, headers ---------------------------------------------------------------------------


def test_url_and_headers() -> None:
    upstream, _ = build()
    assert upstream.url == BASE + "gemini-2.5-flash:generateContent"
    assert upstream.headers["x-goog-api-key"] == "AIza-test-key"
    assert upstream.headers["content-type"] == "application/json"
    upstream, _ = build(stream=True)
    assert upstream.url == BASE + "gemini-2.5-flash:streamGenerateContent?alt=sse"


@pytest.mark.parametrize(
    ("base", "model", "url"),
    [
        (BASE.rstrip("/"), "gemini-2.5-pro", BASE + "gemini-2.5-pro:generateContent"),
        (
            "https://generativelanguage.googleapis.com/v1beta",
            "models/gemini-2.5-pro",
            BASE + "gemini-2.5-pro:generateContent",
        ),
        (
            "https://proxy.example/gemini/",
            "gemini-3-pro-preview",
            "https://proxy.example/gemini/gemini-3-pro-preview:generateContent",
        ),
    ],
)
def test_url_forms(base: str, model: str, url: str) -> None:
    upstream = GeminiFormat({}).build_request(request(), route(model, base))
    assert upstream.url == url


def test_provider_headers_are_added_and_no_key_means_no_key_header() -> None:
    r = route(headers={"x-goog-user-project": "p1"}, api_key="")
    upstream = GeminiFormat({}).build_request(request(), r)
    assert upstream.headers["x-goog-user-project"] == "p1"
    assert "x-goog-api-key" not in upstream.headers


# --- contents -------------------------------------------------------------------------------


def test_system_prompt_and_mid_conversation_system_entries() -> None:
    _, body = build(
        system=[
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Be brief."},
        ],
        messages=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "system", "content": "The user switched to plan mode."},
            {"role": "user", "content": [{"type": "text", "text": "three"}]},
            {"role": "system", "content": [{"type": "text", "text": "Context was compacted."}]},
        ],
    )
    assert body["systemInstruction"] == {
        "parts": [
            {"text": "You are Claude Code."},
            {"text": "Be brief."},
            {"text": "The user switched to plan mode."},
            {"text": "Context was compacted."},
        ]
    }
    assert body["contents"] == [
        {"parts": [{"text": "one"}], "role": "user"},
        {"parts": [{"text": "two"}], "role": "model"},
        {"parts": [{"text": "three"}], "role": "user"},
    ]


def test_consecutive_same_role_turns_are_merged_and_empty_text_dropped() -> None:
    _, body = build(
        messages=[
            {"role": "user", "content": "a"},
            {
                "role": "user",
                "content": [{"type": "text", "text": ""}, {"type": "text", "text": "b"}],
            },
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": [{"type": "text", "text": "c"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
        ],
    )
    assert body["contents"] == [
        {"parts": [{"text": "a"}, {"text": "b"}], "role": "user"},
        {"parts": [{"text": "c"}, {"text": "d"}], "role": "model"},
    ]
    assert "systemInstruction" not in body


def test_images_and_documents() -> None:
    _, body = build(
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": "iVBORw0KGgo=",
                        },
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBERi0=",
                        },
                    },
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                    },
                    {
                        "type": "document",
                        "source": {"type": "url", "url": "https://example.com/a.pdf"},
                    },
                    {"type": "text", "text": "Compare them."},
                ],
            }
        ]
    )
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"fileUri": "https://example.com/cat.jpg", "mimeType": "image/jpeg"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        {"text": "notes"},
        {"fileData": {"fileUri": "https://example.com/a.pdf", "mimeType": "application/pdf"}},
        {"text": "Compare them."},
    ]


MULTI_TURN = [
    {"role": "user", "content": "Read both files and list the tests."},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Two reads.", "signature": "c2ln"},
            {"type": "redacted_thinking", "data": "abc"},
            {"type": "text", "text": "Reading."},
            {
                "type": "tool_use",
                "id": "toolu_01A",
                "name": "Read",
                "input": {"file_path": "/a.py"},
            },
            {
                "type": "tool_use",
                "id": "toolu_01B",
                "name": "Glob",
                "input": {"pattern": "tests/*.py"},
            },
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "print('a')"},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_01B",
                "is_error": True,
                "content": [
                    {"type": "text", "text": "No files"},
                    {"type": "text", "text": "matched"},
                ],
            },
            {"type": "text", "text": "<system-reminder>keep going</system-reminder>"},
        ],
    },
    {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_01C", "name": "Bash", "input": {"command": "ls"}}
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_01C",
                "content": [
                    {"type": "text", "text": "shot.png"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            }
        ],
    },
]


def test_multi_turn_tool_use_maps_calls_and_responses_by_name() -> None:
    _, body = build(messages=MULTI_TURN)
    assert body["contents"] == [
        {"parts": [{"text": "Read both files and list the tests."}], "role": "user"},
        {
            "parts": [
                {"text": "Reading."},
                {"functionCall": {"name": "Read", "args": {"file_path": "/a.py"}}},
                {"functionCall": {"name": "Glob", "args": {"pattern": "tests/*.py"}}},
            ],
            "role": "model",
        },
        {
            "parts": [
                {"functionResponse": {"name": "Read", "response": {"result": "print('a')"}}},
                {"functionResponse": {"name": "Glob", "response": {"error": "No files\nmatched"}}},
                {"text": "<system-reminder>keep going</system-reminder>"},
            ],
            "role": "user",
        },
        {"parts": [{"functionCall": {"name": "Bash", "args": {"command": "ls"}}}], "role": "model"},
        {
            "parts": [
                {"functionResponse": {"name": "Bash", "response": {"result": "shot.png"}}},
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
            ],
            "role": "user",
        },
    ]


def test_function_responses_come_first_in_a_merged_user_turn() -> None:
    _, body = build(
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}],
            },
            {"role": "user", "content": [{"type": "text", "text": "note"}]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
            },
        ]
    )
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "Bash", "response": {"result": "ok"}}},
        {"text": "note"},
    ]


def test_tool_result_for_an_unknown_id_still_has_a_name() -> None:
    _, body = build(
        messages=[
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "gone", "content": None}],
            }
        ]
    )
    response = body["contents"][0]["parts"][0]["functionResponse"]
    assert response == {"name": "unknown_function", "response": {"result": ""}}


# --- tools ----------------------------------------------------------------------------------


READ_AND_PLAN: list[dict[str, Any]] = [
    {
        "name": "Read",
        "description": "Read a file.",
        "input_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "file_path": {"type": "string"},
                "limit": {"type": "integer", "exclusiveMinimum": 0},
            },
            "required": ["file_path"],
            "additionalProperties": False,
        },
    },
    {
        "name": "EnterPlanMode",
        "description": "Plan.",
        "input_schema": {"type": "object", "properties": {}},
    },
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
]


def test_tools_become_function_declarations_with_clean_schemas() -> None:
    _, body = build(options={"schema_format": "openapi"}, tools=READ_AND_PLAN)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "Read",
                    "description": "Read a file.",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "file_path": {"type": "STRING"},
                            "limit": {"type": "INTEGER", "minimum": 1},
                        },
                        "required": ["file_path"],
                    },
                },
                {"name": "EnterPlanMode", "description": "Plan."},
            ]
        }
    ]
    assert "toolConfig" not in body


@pytest.mark.parametrize("model", ["gemini-2.0-flash", "gemini-2.5-flash", "gemini-3-pro-preview"])
def test_current_models_get_the_json_schema_as_written(model: str) -> None:
    """parametersJsonSchema, never beside parameters; only the root $schema is dropped."""
    _, body = build(model, tools=READ_AND_PLAN)
    read, plan = body["tools"][0]["functionDeclarations"]
    expected = {k: v for k, v in READ_AND_PLAN[0]["input_schema"].items() if k != "$schema"}
    assert read == {"name": "Read", "description": "Read a file.", "parametersJsonSchema": expected}
    assert plan == {"name": "EnterPlanMode", "description": "Plan."}


@pytest.mark.parametrize(
    ("model", "options", "field"),
    [
        ("gemini-1.5-pro", {}, "parameters"),
        ("my-proxy-model", {}, "parameters"),
        ("my-proxy-model", {"schema_format": "json_schema"}, "parametersJsonSchema"),
        ("gemini-2.5-pro", {"schema_format": "openapi"}, "parameters"),
    ],
)
def test_schema_format_option(model: str, options: dict[str, Any], field: str) -> None:
    _, body = build(model, options, tools=READ_AND_PLAN)
    assert set(body["tools"][0]["functionDeclarations"][0]) == {"name", "description", field}
    with pytest.raises(ValueError, match="gemini options"):
        GeminiFormat({"schema_format": "yaml"})


METADATA_TOOL = {
    "name": "TaskCreate",
    "description": "Create a task.",
    # Claude Code 2.1.197's TaskCreate (tests/fixtures/claude_code/cli_2_1_197_default.json).
    "input_schema": {
        "type": "object",
        "properties": {
            "subject": {"type": "string"},
            "metadata": {
                "description": "Arbitrary metadata to attach to the task",
                "type": "object",
                "propertyNames": {"type": "string"},
                "additionalProperties": {},
            },
        },
        "required": ["subject"],
        "additionalProperties": False,
    },
}


def test_a_record_never_becomes_an_object_without_properties() -> None:
    _, body = build("gemini-1.5-pro", tools=[METADATA_TOOL])
    params = body["tools"][0]["functionDeclarations"][0]["parameters"]
    assert params["properties"]["metadata"] == {
        "type": "STRING",
        "description": "Arbitrary metadata to attach to the task. A JSON object, written as a "
        "JSON string.",
    }
    check_gemini_schema(params)


def _call_response(args: dict[str, Any]) -> bytes:
    call = {"name": "TaskCreate", "args": args}
    chunk = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"functionCall": call}]},
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2},
    }
    return json.dumps(chunk).encode()


def test_json_text_arguments_come_back_as_the_declared_object() -> None:
    """Non-streamed and streamed: the model wrote the record as text, the client gets it whole."""
    fmt = GeminiFormat({})
    req = request(tools=[METADATA_TOOL])
    answer = _call_response({"subject": "s", "metadata": '{"team": "core", "n": 2}'})
    message = fmt.parse_response(answer, route("gemini-1.5-pro"), req)
    block = message.content[0]
    assert isinstance(block, ToolUseBlock)
    assert block.input == {"subject": "s", "metadata": {"team": "core", "n": 2}}
    translator = fmt.stream_translator(req, route("gemini-1.5-pro"))
    events = wire(translator.feed(b"data: " + answer + b"\r\n\r\n") + translator.close())
    deltas = [e["delta"]["partial_json"] for e in events if e.get("type") == "content_block_delta"]
    assert json.loads("".join(deltas)) == {"subject": "s", "metadata": {"team": "core", "n": 2}}
    # Text that is not an object stays as the model wrote it; JSON Schema models are untouched.
    odd = _call_response({"subject": "s", "metadata": "not json"})
    assert fmt.parse_response(odd, route("gemini-1.5-pro"), req).content[0].input == {  # type: ignore[union-attr]
        "subject": "s",
        "metadata": "not json",
    }
    kept = fmt.parse_response(answer, route("gemini-2.5-flash"), req).content[0]
    assert kept.input["metadata"] == '{"team": "core", "n": 2}'  # type: ignore[union-attr]


def test_restore_json_text_follows_arrays_and_any_values() -> None:
    schema = {
        "type": "object",
        "properties": {
            "rows": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
            "value": {},
        },
    }
    converted, marks = convert_schema(schema)
    check_gemini_schema(converted)
    assert marks == {("rows", None): "object", ("value",): "any"}
    args = {"rows": ['{"a": 1}', "[1]"], "value": "[1, 2]"}
    assert restore_json_text(args, marks) == {"rows": [{"a": 1}, "[1]"], "value": [1, 2]}


def test_converted_tools_are_cached_per_tool_list() -> None:
    fmt = GeminiFormat({})
    first, _ = build(tools=[METADATA_TOOL])
    gemini_module._tool_cache.clear()
    fmt.build_request(request(tools=[METADATA_TOOL]), route())
    assert len(gemini_module._tool_cache) == 1
    again = fmt.build_request(request(tools=[METADATA_TOOL]), route())
    assert len(gemini_module._tool_cache) == 1 and again.body == first.body
    fmt.build_request(request(tools=[METADATA_TOOL]), route("gemini-1.5-pro"))
    assert len(gemini_module._tool_cache) == 2  # the other schema field is another entry
    for n in range(gemini_module._TOOL_CACHE_SIZE + 5):
        tool = {**METADATA_TOOL, "name": f"T{n}"}
        fmt.build_request(request(tools=[tool]), route())
    assert len(gemini_module._tool_cache) == gemini_module._TOOL_CACHE_SIZE


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
        {"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}},
        {"type": "object", "properties": {"a": 5}},
        {"type": "object", "properties": {"a": {"type": "str"}}},
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": "a"},
        {"type": "object", "properties": {"a": {"anyOf": {"type": "string"}}}},
    ],
)
def test_malformed_json_schema_goes_through_the_cleaner(schema: dict[str, Any]) -> None:
    assert json_schema_parameters(schema) is None
    _, body = build(tools=[{"name": "t", "input_schema": schema}])
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert "parametersJsonSchema" not in declaration
    check_gemini_schema(declaration["parameters"])


def test_a_ref_with_siblings_moves_into_any_of() -> None:
    schema = {
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/P", "description": "the p"}},
        "$defs": {"P": {"type": "string"}},
    }
    sent = json_schema_parameters(schema)
    assert sent is not None
    assert sent["properties"]["p"] == {"description": "the p", "anyOf": [{"$ref": "#/$defs/P"}]}


def test_web_search_alone_becomes_google_search() -> None:
    _, body = build(
        tools=[{"type": "web_search_20250305", "name": "web_search"}], tool_choice={"type": "auto"}
    )
    assert body["tools"] == [{"googleSearch": {}}]
    assert "toolConfig" not in body


TOOL = {
    "name": "Bash",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
}


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ({"type": "auto"}, {"mode": "AUTO"}),
        ({"type": "any"}, {"mode": "ANY"}),
        ({"type": "tool", "name": "Bash"}, {"mode": "ANY", "allowedFunctionNames": ["Bash"]}),
        ({"type": "none"}, {"mode": "NONE"}),
        ({"type": "auto", "disable_parallel_tool_use": True}, {"mode": "AUTO"}),
    ],
)
def test_tool_choice(choice: dict[str, Any], config: dict[str, Any]) -> None:
    _, body = build(tools=[TOOL], tool_choice=choice)
    assert body["toolConfig"] == {"functionCallingConfig": config}


# --- generation config ----------------------------------------------------------------------


def test_generation_config() -> None:
    _, body = build(
        max_tokens=4096,
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        stop_sequences=["a", "b", "c", "d", "e", "f"],
    )
    assert body["generationConfig"] == {
        "maxOutputTokens": 4096,
        "temperature": 0.3,
        "topP": 0.9,
        "topK": 40,
        "stopSequences": ["a", "b", "c", "d", "e"],
    }


def test_no_generation_config_when_nothing_is_set() -> None:
    upstream = GeminiFormat({}).build_request(
        request_decoder.decode(b'{"model":"m","messages":[{"role":"user","content":"x"}]}'), route()
    )
    assert "generationConfig" not in json.loads(upstream.body)


@pytest.mark.parametrize(
    ("model", "thinking", "effort", "expected"),
    [
        # Gemini 2.5: budgets, clamped to the model's range (ai.google.dev/gemini-api/docs/thinking)
        (
            "gemini-2.5-flash",
            {"type": "enabled", "budget_tokens": 10000},
            None,
            {"includeThoughts": True, "thinkingBudget": 10000},
        ),
        (
            "gemini-2.5-flash",
            {"type": "enabled", "budget_tokens": 31999},
            None,
            {"includeThoughts": True, "thinkingBudget": 24576},
        ),
        (
            "gemini-2.5-pro",
            {"type": "enabled", "budget_tokens": 31999},
            None,
            {"includeThoughts": True, "thinkingBudget": 31999},
        ),
        (
            "gemini-2.5-flash-lite",
            {"type": "enabled", "budget_tokens": 100},
            None,
            {"includeThoughts": True, "thinkingBudget": 512},
        ),
        ("gemini-2.5-flash", {"type": "disabled"}, None, {"thinkingBudget": 0}),
        ("gemini-2.5-pro", {"type": "disabled"}, None, None),
        ("gemini-2.5-pro", {"type": "adaptive"}, None, {"includeThoughts": True}),
        (
            "gemini-2.5-pro",
            {"type": "adaptive"},
            "low",
            {"includeThoughts": True, "thinkingBudget": 1024},
        ),
        (
            "gemini-2.5-flash",
            {"type": "adaptive"},
            "medium",
            {"includeThoughts": True, "thinkingBudget": 8192},
        ),
        (
            "gemini-2.5-pro",
            {"type": "adaptive"},
            "high",
            {"includeThoughts": True, "thinkingBudget": -1},
        ),
        (
            "gemini-2.5-pro",
            {"type": "adaptive"},
            "max",
            {"includeThoughts": True, "thinkingBudget": 32768},
        ),
        # Gemini 3: levels (ai.google.dev/gemini-api/docs/gemini-3#thinking_level)
        (
            "gemini-3-pro-preview",
            {"type": "adaptive"},
            "low",
            {"includeThoughts": True, "thinkingLevel": "low"},
        ),
        (
            "gemini-3-pro-preview",
            {"type": "adaptive"},
            "medium",
            {"includeThoughts": True, "thinkingLevel": "high"},
        ),
        (
            "gemini-3.1-pro-preview",
            {"type": "adaptive"},
            "medium",
            {"includeThoughts": True, "thinkingLevel": "medium"},
        ),
        (
            "gemini-3-flash-preview",
            {"type": "adaptive"},
            "max",
            {"includeThoughts": True, "thinkingLevel": "high"},
        ),
        ("gemini-3-flash-preview", {"type": "disabled"}, None, {"thinkingLevel": "minimal"}),
        ("gemini-3-pro-preview", {"type": "disabled"}, None, {"thinkingLevel": "low"}),
        (
            "gemini-3-pro-preview",
            {"type": "enabled", "budget_tokens": 31999},
            None,
            {"includeThoughts": True, "thinkingLevel": "high"},
        ),
        (
            "gemini-3-flash-preview",
            {"type": "enabled", "budget_tokens": 2000},
            None,
            {"includeThoughts": True, "thinkingLevel": "low"},
        ),
        # Models without thinking get no thinkingConfig
        ("gemini-2.0-flash", {"type": "enabled", "budget_tokens": 4000}, None, None),
    ],
)
def test_thinking_config(
    model: str, thinking: dict[str, Any], effort: str | None, expected: Any
) -> None:
    fields: dict[str, Any] = {"thinking": thinking}
    if effort:
        fields["output_config"] = {"effort": effort}
    _, body = build(model, **fields)
    assert body["generationConfig"].get("thinkingConfig") == expected


@pytest.mark.parametrize(
    ("model", "options", "expected"),
    [
        ("gemini-2.5-pro", {}, 65536),
        ("gemini-3-pro-preview", {}, 65536),
        ("gemini-2.0-flash", {}, 8192),
        ("my-proxy-alias", {}, 128000),
        ("gemini-2.5-pro", {"max_output_tokens": {"gemini-2.5-pro": 32768}}, 32768),
    ],
)
def test_max_output_tokens_capped(model: str, options: dict[str, Any], expected: int) -> None:
    _, body = build(model, options, max_tokens=128000)
    assert body["generationConfig"]["maxOutputTokens"] == expected


def test_no_thinking_request_sends_no_thinking_config() -> None:
    _, body = build("gemini-3-pro-preview")
    assert "thinkingConfig" not in body["generationConfig"]


def test_structured_output() -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "score": {"type": ["number", "null"]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    output = {"format": {"type": "json_schema", "schema": schema}}
    _, body = build(output_config=output)
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert body["generationConfig"]["responseJsonSchema"] == schema
    assert "responseSchema" not in body["generationConfig"]
    _, body = build("gemini-1.5-flash", output_config=output)
    assert "responseJsonSchema" not in body["generationConfig"]
    assert body["generationConfig"]["responseSchema"] == {
        "type": "OBJECT",
        "properties": {"answer": {"type": "STRING"}, "score": {"type": "NUMBER", "nullable": True}},
        "required": ["answer"],
    }


def test_a_record_as_structured_output_is_plain_json_mode_on_old_models() -> None:
    record = {"type": "object", "additionalProperties": {"type": "integer"}}
    output = {"format": {"type": "json_schema", "schema": record}}
    _, body = build("gemini-1.5-flash", output_config=output)
    assert body["generationConfig"] == {
        "maxOutputTokens": 1024,
        "responseMimeType": "application/json",
    }
    _, body = build(output_config=output)
    assert body["generationConfig"]["responseJsonSchema"] == record


def test_options() -> None:
    settings_ = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_NONE"}]
    _, body = build(options={"safety_settings": settings_})
    assert body["safetySettings"] == settings_
    with pytest.raises(ValueError, match="gemini options"):
        GeminiFormat({"thought_signature_fallbak": False})


# --- non-streaming responses ----------------------------------------------------------------


def parse(name: str, model: str = "gemini-2.5-flash") -> MessageResponse:
    return GeminiFormat({}).parse_response((GEMINI / name).read_bytes(), route(model))


def test_parse_text_response() -> None:
    message = parse("response_text.json")
    assert msgspec.to_builtins(message) == {
        "type": "message",
        "id": "msg_nonstream-2",
        "model": "gemini-2.5-flash",
        "content": [{"type": "text", "text": "Paris is the capital of France."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 9,
            "output_tokens": 7,
            "cache_creation_input_tokens": None,
            "cache_read_input_tokens": 0,
        },
        "role": "assistant",
    }


def test_parse_tool_response_with_thinking_cache_and_signature() -> None:
    message = parse("response_tools.json", "gemini-3-pro-preview")
    blocks = msgspec.to_builtins(message.content)
    assert [b["type"] for b in blocks] == ["thinking", "text", "tool_use", "tool_use"]
    assert blocks[0]["thinking"] == "I need the file first."
    assert blocks[2]["name"] == "Read" and blocks[2]["input"] == {"file_path": "/tmp/a.py"}
    assert blocks[3]["name"] == "Glob" and blocks[3]["input"] == {"pattern": "**/*.py"}
    assert decode_signature(blocks[2]["id"]) == SIGNATURE
    assert decode_signature(blocks[3]["id"]) is None
    assert all(ID_PATTERN.match(b["id"]) for b in blocks[2:])
    assert message.stop_reason == "tool_use"
    # promptTokenCount 2048 includes the 1024 cached; output = candidates 40 + thoughts 77
    assert message.usage.input_tokens == 1024
    assert message.usage.cache_read_input_tokens == 1024
    assert message.usage.output_tokens == 117
    assert message.model == "gemini-3-pro-preview"


def test_parse_blocked_prompt_is_a_refusal() -> None:
    message = parse("response_blocked.json")
    assert message.content == []
    assert message.stop_reason == "refusal"
    assert message.usage.input_tokens == 15


def test_parse_error_body_raises_with_status() -> None:
    with pytest.raises(UpstreamError) as caught:
        parse("error_api_key.json")
    assert (caught.value.status, caught.value.error_type) == (401, "authentication_error")
    with pytest.raises(UpstreamError) as caught:
        parse("error_signature.json")
    assert caught.value.status == 400 and "thought_signature" in caught.value.message


def test_parse_malformed_function_call_is_a_retryable_api_error() -> None:
    body = {
        "candidates": [
            {
                "content": {"parts": [], "role": "model"},
                "finishReason": "MALFORMED_FUNCTION_CALL",
                "finishMessage": "Malformed function call: print(default_api.Bash(",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10},
    }
    with pytest.raises(UpstreamError) as caught:
        GeminiFormat({}).parse_response(json.dumps(body).encode(), route())
    assert (caught.value.status, caught.value.error_type) == (502, "api_error")
    assert "MALFORMED_FUNCTION_CALL" in caught.value.message


def test_error_message() -> None:
    fmt = GeminiFormat({})
    assert fmt.error_message(429, (GEMINI / "error_array.json").read_bytes()).startswith(
        "You exceeded your current quota"
    )
    assert fmt.error_message(400, (GEMINI / "error_api_key.json").read_bytes()) == (
        "API key not valid. Please pass a valid API key."
    )
    assert fmt.error_message(502, b"<html>Bad gateway</html>") == "<html>Bad gateway</html>"


# --- streams --------------------------------------------------------------------------------


def test_text_stream_event_sequence() -> None:
    events, translator = translate("stream_text.sse")
    assert wire(events) == [
        {
            "type": "message_start",
            "message": {
                "type": "message",
                "id": "msg_IZI2acSKMoWl0-kPmYj2yQc",
                "model": "gemini-2.5-flash",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 12,
                    "output_tokens": 0,
                    "cache_creation_input_tokens": None,
                    "cache_read_input_tokens": 0,
                },
                "role": "assistant",
            },
        },
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Bonjour ! Voici"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": " un résumé : le module `sse.py` découpe"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": " le flux en événements — rien de plus. 🚀"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 63, "input_tokens": 12, "cache_read_input_tokens": 0},
        },
        {"type": "message_stop"},
    ]
    assert (translator.usage.input_tokens, translator.usage.output_tokens) == (12, 63)


def test_thinking_stream_puts_thinking_before_text() -> None:
    events, translator = translate("stream_thinking.sse", "gemini-2.5-pro")
    kinds = [
        (e["type"], e.get("content_block", e.get("delta", {})).get("type")) for e in wire(events)
    ]
    assert kinds == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", "thinking"),
        ("content_block_delta", "thinking_delta"),
        ("content_block_delta", "thinking_delta"),
        ("content_block_stop", None),
        ("content_block_start", "text"),
        ("content_block_delta", "text_delta"),
        ("content_block_delta", "text_delta"),
        ("content_block_stop", None),
        ("message_delta", None),
        ("message_stop", None),
    ]
    last = wire(events)[-2]
    # 5210 prompt tokens of which 4096 cached; 21 candidates + 412 thoughts
    assert last["usage"] == {
        "output_tokens": 433,
        "input_tokens": 1114,
        "cache_read_input_tokens": 4096,
    }
    assert translator.usage.cache_read_input_tokens == 4096


def test_parallel_tool_calls_stream() -> None:
    events, _ = translate("stream_parallel_tools.sse", "gemini-3-pro-preview")
    out = wire(events)
    assert [e["type"] for e in out[8:]] == [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    first, second = out[8], out[11]
    assert first["index"] == 2 and second["index"] == 3
    assert first["content_block"]["name"] == "Read" and first["content_block"]["input"] == {}
    assert json.loads(out[9]["delta"]["partial_json"]) == {"file_path": "/work/main/pyproject.toml"}
    assert json.loads(out[12]["delta"]["partial_json"]) == {
        "file_path": "/work/main/trio_router/config.py",
        "limit": 200,
    }
    ids = tool_ids(events)
    assert decode_signature(ids[0]) == SIGNATURE
    assert decode_signature(ids[1]) is None
    assert all(ID_PATTERN.match(i) for i in ids) and len(set(ids)) == 2
    assert out[-2]["delta"]["stop_reason"] == "tool_use"


def test_stream_and_complete_response_give_the_same_tool_ids() -> None:
    events, _ = translate("stream_parallel_tools.sse", "gemini-3-pro-preview")
    lines = (GEMINI / "stream_parallel_tools.sse").read_text().splitlines()
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines if line]
    whole = chunks[-1]
    whole["candidates"][0]["content"]["parts"] = [
        part for chunk in chunks for part in chunk["candidates"][0]["content"]["parts"]
    ]
    message = GeminiFormat({}).parse_response(
        json.dumps(whole).encode(), route("gemini-3-pro-preview")
    )
    assert [b.id for b in message.content if isinstance(b, ToolUseBlock)] == tool_ids(events)


def test_error_chunk_ends_the_stream_with_an_error_event() -> None:
    events, translator = translate("stream_error.sse")
    assert wire(events)[-1] == {
        "type": "error",
        "error": {
            "type": "overloaded_error",
            "message": "The model is overloaded. Please try again later.",
        },
    }
    assert [e["type"] for e in wire(events)] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    assert translator.feed(b'data: {"candidates": []}\n\n') == []
    assert translator.close() == []


def test_stream_without_finish_reason_ends_with_an_error() -> None:
    events, _ = translate("stream_truncated.sse")
    last = events[-1]
    assert isinstance(last, ErrorEvent) and last.error.type == "api_error"
    assert "finishReason" in last.error.message
    assert sum(isinstance(e, ErrorEvent) for e in events) == 1


@pytest.mark.parametrize(
    ("name", "stop_reason"),
    [("stream_max_tokens.sse", "max_tokens"), ("stream_safety.sse", "refusal")],
)
def test_stream_stop_reasons(name: str, stop_reason: str) -> None:
    out = wire(translate(name)[0])
    assert out[-2]["type"] == "message_delta" and out[-2]["delta"]["stop_reason"] == stop_reason
    assert out[-1] == {"type": "message_stop"}


def test_finish_without_usage_waits_for_close() -> None:
    translator = GeminiFormat({}).stream_translator(request(stream=True), route())
    first = translator.feed(
        b'data: {"candidates":[{"content":{"parts":[{"text":"hi"}],"role":"model"},'
        b'"finishReason":"STOP","index":0}],"responseId":"r"}\n\n'
    )
    assert [e["type"] for e in wire(first)] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
    ]
    rest = wire(translator.close())
    assert [e["type"] for e in rest] == ["content_block_stop", "message_delta", "message_stop"]


def test_plain_json_error_body_in_a_stream() -> None:
    translator = GeminiFormat({}).stream_translator(request(stream=True), route())
    body = (GEMINI / "error_array.json").read_bytes()
    assert translator.feed(body[:40]) == [] and translator.feed(body[40:]) == []
    assert wire(translator.close()) == [
        {
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": json.loads(body)[0]["error"]["message"],
            },
        }
    ]


def test_malformed_function_call_in_a_stream_is_an_error() -> None:
    translator = GeminiFormat({}).stream_translator(request(stream=True), route())
    events = translator.feed(
        b'data: {"candidates":[{"content":{"parts":[],"role":"model"},'
        b'"finishReason":"MALFORMED_FUNCTION_CALL","index":0}],'
        b'"usageMetadata":{"promptTokenCount":5},"responseId":"r"}\n\n'
    )
    assert (
        isinstance(events[-1], ErrorEvent) and "MALFORMED_FUNCTION_CALL" in events[-1].error.message
    )
    assert translator.close() == []


STREAMS = sorted(p.name for p in GEMINI.glob("*.sse"))


@pytest.mark.parametrize("name", STREAMS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_chunking_gives_the_same_events(name: str, data: st.DataObject) -> None:
    raw = (GEMINI / name).read_bytes()
    cuts = sorted(data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=40)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    whole, _ = translate(name, chunks=[raw])
    pieces, _ = translate(name, chunks=chunks)
    assert wire(pieces) == wire(whole)


# --- thought signatures -------------------------------------------------------------------


def test_signature_round_trip_through_the_next_request() -> None:
    """Gemini 3 answers with a signed functionCall; Claude Code echoes only the tool_use id."""
    events, _ = translate("stream_parallel_tools.sse", "gemini-3-pro-preview")
    first, second = tool_ids(events)
    messages = [
        {"role": "user", "content": "Read the config."},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Reading both files."},
                {
                    "type": "tool_use",
                    "id": first,
                    "name": "Read",
                    "input": {"file_path": "/work/main/pyproject.toml"},
                },
                {
                    "type": "tool_use",
                    "id": second,
                    "name": "Read",
                    "input": {"file_path": "/work/main/trio_router/config.py", "limit": 200},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": first, "content": "[project]"},
                {"type": "tool_result", "tool_use_id": second, "content": "class Config"},
            ],
        },
    ]
    _, body = build("gemini-3-pro-preview", messages=messages)
    model_parts = body["contents"][1]["parts"]
    assert model_parts[1] == {
        "functionCall": {"name": "Read", "args": {"file_path": "/work/main/pyproject.toml"}},
        "thoughtSignature": SIGNATURE,
    }
    assert "thoughtSignature" not in model_parts[2]  # parallel calls: only the first is signed
    assert [p["functionResponse"]["name"] for p in body["contents"][2]["parts"]] == ["Read", "Read"]


def test_unsigned_history_gets_the_documented_placeholder_on_gemini_3_only() -> None:
    _, body = build("gemini-3-flash-preview", messages=MULTI_TURN)
    model_turns = [c for c in body["contents"] if c["role"] == "model"]
    calls = [[p for p in turn["parts"] if "functionCall" in p] for turn in model_turns]
    assert [[p.get("thoughtSignature") for p in turn] for turn in calls] == [
        [SKIP_SIGNATURE, None],
        [SKIP_SIGNATURE],
    ]
    _, body = build("gemini-2.5-pro", messages=MULTI_TURN)
    assert "thoughtSignature" not in json.dumps(body)
    _, body = build(
        "gemini-3-pro-preview", {"thought_signature_fallback": False}, messages=MULTI_TURN
    )
    assert "thoughtSignature" not in json.dumps(body)


@given(st.binary(min_size=1, max_size=4096))
def test_signature_encoding_round_trips_any_bytes(raw: bytes) -> None:
    signature = base64.b64encode(raw).decode()
    tool_id = encode_tool_id("toolu_" + "0" * 24, signature)
    assert ID_PATTERN.match(tool_id)
    assert decode_signature(tool_id) == signature


@given(st.text(min_size=1, max_size=200))
def test_signature_encoding_round_trips_non_base64_text(signature: str) -> None:
    tool_id = encode_tool_id("toolu_" + "a" * 24, signature)
    assert ID_PATTERN.match(tool_id)
    assert decode_signature(tool_id) == signature


def test_compressible_signatures_are_deflated() -> None:
    signature = base64.b64encode(b"\x0a\x24" * 600).decode()
    tool_id = encode_tool_id("toolu_" + "0" * 24, signature)
    assert tool_id[30:32] == "_z" and len(tool_id) < len(signature) // 4
    assert decode_signature(tool_id) == signature
    # The real (encrypted, incompressible) signature is carried as it is, re-encoded urlsafe.
    plain = encode_tool_id("toolu_" + "0" * 24, SIGNATURE)
    assert plain[30:32] == "_s" and len(plain) <= 32 + len(SIGNATURE)


@pytest.mark.parametrize(
    "tool_id",
    [
        "toolu_01A09q90qw90lq917835lq9",  # a real Anthropic id
        "call_abc123",
        "toolu_" + "0" * 24,
        "toolu_" + "0" * 24 + "_s",
        "toolu_" + "0" * 24 + "_z" + "!!!",
        "toolu_" + "0" * 24 + "_zAAAA",  # not a deflate stream
        "toolu_" + "0" * 24 + "_q" + "QUJD",  # unknown marker
    ],
)
def test_foreign_or_damaged_ids_carry_no_signature(tool_id: str) -> None:
    assert decode_signature(tool_id) is None


def test_inflation_of_a_client_supplied_id_is_bounded() -> None:
    bomb = zlib.compress(b"\0" * (4 << 20), 9)
    tool_id = "toolu_" + "0" * 24 + "_z" + base64.urlsafe_b64encode(bomb).rstrip(b"=").decode()
    assert decode_signature(tool_id) is None


# --- schema cleaning ------------------------------------------------------------------------

ALLOWED = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
}
TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT"}


def check_gemini_schema(node: Any, where: str = "$") -> None:
    """Every rule of Gemini's Schema object the cleaner promises (see schema.py)."""
    assert isinstance(node, dict), where
    assert set(node) <= ALLOWED, f"{where}: {set(node) - ALLOWED}"
    kind = node.get("type")
    assert kind is None or kind in TYPES, where
    if "properties" in node:
        assert kind == "OBJECT" and node["properties"], where
        for name, sub in node["properties"].items():
            check_gemini_schema(sub, f"{where}.{name}")
    if "required" in node:
        assert node["required"] and set(node["required"]) <= set(node.get("properties", {})), where
    if kind == "ARRAY":
        assert "items" in node, where
    if "items" in node:
        check_gemini_schema(node["items"], f"{where}[]")
    if "enum" in node:
        assert kind == "STRING" and all(isinstance(v, str) for v in node["enum"]), where
    if "format" in node:
        assert node["format"] in {"enum", "date-time", "float", "double", "int32", "int64"}, where
    for i, sub in enumerate(node.get("anyOf", [])):
        check_gemini_schema(sub, f"{where}|{i}")


def _tool_lists(document: Any) -> list[list[Any]]:
    """Every ``tools`` list in a JSON document, wherever a capture nests the request body."""
    if isinstance(document, list):
        return [found for item in document for found in _tool_lists(item)]
    if not isinstance(document, dict):
        return []
    found = [document["tools"]] if isinstance(document.get("tools"), list) else []
    return found + [f for k, v in document.items() if k != "tools" for f in _tool_lists(v)]


def claude_code_tools() -> list[tuple[str, dict[str, Any]]]:
    """Our own realistic fixture, plus any captured Claude Code request that appears later."""
    found: list[tuple[str, dict[str, Any]]] = []
    paths = [GEMINI / "claude_code_tools.json", *sorted((FIXTURES / "claude_code").rglob("*.json"))]
    for path in paths:
        for tools in _tool_lists(json.loads(path.read_text())):
            for tool in tools:
                if isinstance(tool, dict) and isinstance(tool.get("input_schema"), dict):
                    found.append((f"{path.name}:{tool.get('name')}", tool["input_schema"]))
    return found


CLAUDE_CODE_TOOLS = claude_code_tools()


@pytest.mark.parametrize(
    ("where", "schema"), CLAUDE_CODE_TOOLS, ids=[w for w, _ in CLAUDE_CODE_TOOLS]
)
def test_claude_code_tool_schemas_clean_to_valid_gemini_schemas(
    where: str, schema: dict[str, Any]
) -> None:
    before = json.dumps(schema, sort_keys=True)
    params = function_parameters(schema)
    assert json.dumps(schema, sort_keys=True) == before  # the input is left alone
    if params is not None:
        assert params["type"] == "OBJECT"
        check_gemini_schema(params)


def test_realistic_tool_fixture_spot_checks() -> None:
    tools = {
        name.split(":")[1]: schema
        for name, schema in CLAUDE_CODE_TOOLS
        if name.startswith("claude_code_tools")
    }
    assert len(tools) >= 24
    clean = {name: function_parameters(schema) for name, schema in tools.items()}
    assert clean["EnterPlanMode"] is None
    read = clean["Read"]["properties"]  # type: ignore[index]
    assert read["offset"] == {"type": "INTEGER", "minimum": 0}
    assert read["limit"] == {"type": "INTEGER", "minimum": 1}
    assert clean["WebFetch"]["properties"]["url"] == {"type": "STRING"}  # type: ignore[index]
    assert clean["Edit"]["properties"]["replace_all"] == {"type": "BOOLEAN"}  # type: ignore[index]
    todos = clean["TodoWrite"]["properties"]["todos"]  # type: ignore[index]
    assert todos["items"]["properties"]["status"] == {
        "type": "STRING",
        "format": "enum",
        "enum": ["pending", "in_progress", "completed"],
    }
    assert todos["items"]["properties"]["content"] == {"type": "STRING", "minLength": 1}
    ask = clean["AskUserQuestion"]["properties"]  # type: ignore[index]
    assert ask["answers"]["type"] == "STRING"  # a record: JSON text
    assert ask["questions"]["minItems"] == 1 and ask["questions"]["maxItems"] == 4
    worktree = clean["EnterWorktree"]["properties"]  # type: ignore[index]
    assert worktree["name"] == {"type": "STRING"}  # pattern dropped
    assert worktree["base"] == {"type": "STRING", "nullable": True}
    cron = clean["CronCreate"]["properties"]  # type: ignore[index]
    kinds = [branch["properties"]["kind"]["enum"] for branch in cron["schedule"]["anyOf"]]
    assert kinds == [["cron"], ["once"]]
    assert cron["schedule"]["anyOf"][1]["properties"]["at"]["format"] == "date-time"
    assert cron["recurring"] == {"type": "BOOLEAN", "nullable": True}
    assert cron["max_runs"] == {"type": "INTEGER", "minimum": 1, "maximum": 999}
    issue = clean["mcp__github__create_issue"]["properties"]  # type: ignore[index]
    assert issue["assignee"] == {
        "type": "OBJECT",
        "properties": {"login": {"type": "STRING"}, "id": {"type": "INTEGER"}},
        "required": ["login"],
    }
    assert issue["milestone"] == {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]}
    assert issue["labels"] == {"type": "ARRAY", "items": {"type": "STRING"}}
    plan = clean["ExitPlanMode"]["properties"]["allowedPrompts"]  # type: ignore[index]
    assert plan["items"]["properties"]["tool"] == {
        "type": "STRING",
        "format": "enum",
        "enum": ["Bash"],
    }


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": ["string", "null"]}, {"type": "STRING", "nullable": True}),
        (
            {"type": ["string", "integer"], "description": "d"},
            {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}], "description": "d"},
        ),
        ({"const": "x"}, {"type": "STRING", "format": "enum", "enum": ["x"]}),
        (
            {"enum": ["a", None]},
            {"type": "STRING", "format": "enum", "enum": ["a"], "nullable": True},
        ),
        (
            {"type": "integer", "enum": [1, 2], "description": "Level."},
            {"type": "INTEGER", "description": "Level. Allowed values: 1, 2."},
        ),
        ({"enum": [True]}, {"type": "BOOLEAN", "description": "Allowed values: true."}),
        (
            {"anyOf": [{"const": "a"}, {"const": "b"}, {"type": "null"}], "description": "Mode"},
            {
                "type": "STRING",
                "format": "enum",
                "enum": ["a", "b"],
                "description": "Mode",
                "nullable": True,
            },
        ),
        (
            {"oneOf": [{"type": "string"}], "description": "one"},
            {"type": "STRING", "description": "one"},
        ),
        (
            {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "number"}}, "required": ["b"]},
                ]
            },
            {
                "type": "OBJECT",
                "properties": {"a": {"type": "STRING"}, "b": {"type": "NUMBER"}},
                "required": ["a", "b"],
            },
        ),
        (
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            {"type": "NUMBER", "minimum": 0, "maximum": 1},
        ),
        (
            {"type": "integer", "minimum": 5, "exclusiveMinimum": True},
            {"type": "INTEGER", "minimum": 6},
        ),
        (
            {"type": "integer", "minimum": 2, "exclusiveMinimum": 0},
            {"type": "INTEGER", "minimum": 2},
        ),
        ({"type": "string", "format": "email"}, {"type": "STRING"}),
        ({"type": "number", "format": "double"}, {"type": "NUMBER", "format": "double"}),
        ({"type": "array"}, {"type": "ARRAY", "items": {"type": "STRING"}}),
        (
            {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
            {"type": "ARRAY", "items": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}},
        ),
        (
            {"type": "object", "properties": {}, "required": ["x"]},
            {"type": "STRING", "description": "A JSON object, written as a JSON string."},
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "ghost"]},
            {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "required": ["a"]},
        ),
        (
            {
                "type": "string",
                "default": "a",
                "examples": ["b"],
                "pattern": "^(?!x)",
                "$comment": "c",
            },
            {"type": "STRING"},
        ),
        (
            {
                "type": "object",
                "properties": {"n": {"$ref": "#/definitions/N"}},
                "definitions": {"N": {"type": "integer", "description": "n"}},
            },
            {"type": "OBJECT", "properties": {"n": {"type": "INTEGER", "description": "n"}}},
        ),
        (
            {"$ref": "#/$defs/missing", "description": "gone"},
            {"type": "STRING", "description": "gone. Any JSON value, written as a JSON string."},
        ),
    ],
)
def test_schema_cases(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert to_gemini_schema(schema) == expected


def test_boolean_schema_means_any_value() -> None:
    schema = {"type": "object", "properties": {"v": True, "w": {}}}
    text = {"type": "STRING", "description": "Any JSON value, written as a JSON string."}
    assert to_gemini_schema(schema) == {"type": "OBJECT", "properties": {"v": text, "w": text}}


def test_recursive_reference_is_cut() -> None:
    schema = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
            }
        },
        "$ref": "#/$defs/Node",
    }
    assert to_gemini_schema(schema) == {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING"},
            "children": {
                "type": "ARRAY",
                "items": {
                    "type": "STRING",
                    "description": "Any JSON value, written as a JSON string.",
                },
            },
        },
    }


def test_stream_events_are_anthropic_stream_events() -> None:
    """Every event decodes as Anthropic's own stream event types."""
    events, _ = translate("stream_parallel_tools.sse", "gemini-3-pro-preview")
    for event in events:
        assert not isinstance(event, bytes)
        assert event_decoder.decode(msgspec.json.encode(event)) == event


ACCUMULATED: dict[str, tuple[list[dict[str, Any]], str]] = {
    "stream_text.sse": (
        [
            {
                "type": "text",
                "text": "Bonjour ! Voici un résumé : le module `sse.py` découpe le flux "
                "en événements — rien de plus. 🚀",
            }
        ],
        "end_turn",
    ),
    "stream_thinking.sse": (
        [
            {
                "type": "thinking",
                "thinking": "**Weighing the options**\n\nThe user wants the smaller "
                "diff, so I should keep the existing parser and only add the CR check.",
            },
            {
                "type": "text",
                "text": "Keep the parser; add one check for a trailing `\\r`. That is "
                "the whole fix.",
            },
        ],
        "end_turn",
    ),
    "stream_parallel_tools.sse": (
        [
            {
                "type": "thinking",
                "thinking": "**Locating the config**\n\nI'll read both files at once.",
            },
            {"type": "text", "text": "Reading both files."},
            {
                "type": "tool_use",
                "name": "Read",
                "input": {"file_path": "/work/main/pyproject.toml"},
            },
            {
                "type": "tool_use",
                "name": "Read",
                "input": {"file_path": "/work/main/trio_router/config.py", "limit": 200},
            },
        ],
        "tool_use",
    ),
    "stream_max_tokens.sse": ([{"type": "text", "text": "1, 2, 3, 4,"}], "max_tokens"),
    "stream_safety.sse": ([{"type": "text", "text": "I can"}], "refusal"),
}


@pytest.mark.parametrize("name", sorted(ACCUMULATED))
def test_the_sdk_rebuilds_the_message(name: str) -> None:
    """The anthropic SDK's own stream accumulator (what clients run) accepts every stream."""
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in wire(translate(name, "gemini-3-pro-preview")[0]):
        if event["type"] != "ping":
            snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)  # type: ignore[arg-type]
    assert snapshot is not None
    keep = ("type", "text", "thinking", "name", "input")
    content = [{k: v for k, v in b.to_dict().items() if k in keep} for b in snapshot.content]
    assert (content, snapshot.stop_reason) == ACCUMULATED[name]


CAPTURED = sorted(
    path
    for path in (FIXTURES / "claude_code").glob("*.json")
    if "messages" in json.loads(path.read_text())
)


@pytest.mark.skipif(not CAPTURED, reason="no captured Claude Code request yet")
@pytest.mark.parametrize("path", CAPTURED, ids=[p.name for p in CAPTURED])
def test_captured_claude_code_requests(path: Path) -> None:
    """A real Claude Code request becomes a well-formed Gemini 3 request."""
    captured = json.loads(path.read_text())
    upstream = GeminiFormat({}).build_request(
        request_decoder.decode(path.read_bytes()), route("gemini-3-pro-preview")
    )
    body = json.loads(upstream.body)
    roles = [c["role"] for c in body["contents"]]
    assert roles[0] == "user" and all(a != b for a, b in itertools.pairwise(roles))
    inline_system = [m for m in captured["messages"] if m["role"] == "system"]
    assert len(body["systemInstruction"]["parts"]) == len(captured["system"]) + len(inline_system)
    called: list[str] = []
    for content in body["contents"]:
        calls = [p["functionCall"]["name"] for p in content["parts"] if "functionCall" in p]
        answers = [
            p["functionResponse"]["name"] for p in content["parts"] if "functionResponse" in p
        ]
        if calls:
            first = next(p for p in content["parts"] if "functionCall" in p)
            assert first["thoughtSignature"]  # real, or the documented placeholder
        assert answers == called[: len(answers)] or not answers
        called = calls
    declarations = body["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declarations] == [t["name"] for t in captured["tools"]]
    for declaration in declarations:
        if "parameters" in declaration:
            check_gemini_schema(declaration["parameters"])
    assert body["generationConfig"]["maxOutputTokens"] <= 65536
    assert body["generationConfig"]["thinkingConfig"]["includeThoughts"] is True

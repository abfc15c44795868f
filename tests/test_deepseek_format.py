"""The DeepSeek format: openai.py's chat completions plus DeepSeek's own request rules.

Fixtures under tests/fixtures/deepseek/ follow https://api-docs.deepseek.com/api/create-chat-completion
(``reasoning_content`` deltas before ``content``, ``prompt_cache_hit_tokens`` /
``prompt_cache_miss_tokens`` and ``prompt_tokens_details.cached_tokens`` in usage, ``: keep-alive``
comments while the request waits, blank lines before a non-streaming body: see
https://api-docs.deepseek.com/quick_start/rate_limit).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_router.anthropic import ErrorEvent, MessagesRequest, request_decoder
from trio_router.config import Provider
from trio_router.providers.base import Route, StreamOutput
from trio_router.providers.deepseek import MAX_OUTPUT_TOKENS, DeepSeekFormat

DEEPSEEK = Path(__file__).parent / "fixtures" / "deepseek"
URL = "https://api.deepseek.com/chat/completions"


def route(model: str = "deepseek-chat", **provider: Any) -> Route:
    fields: dict[str, Any] = {"api_key": "sk-deepseek-test", "models": [model], **provider}
    return Route(Provider(name="deepseek", api_base_url=URL, **fields), model)


def request(**fields: Any) -> MessagesRequest:
    fields.setdefault("model", "claude-sonnet-4-5")
    fields.setdefault("max_tokens", 1024)
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return request_decoder.decode(json.dumps(fields))


def body(model: str = "deepseek-chat", options: dict[str, Any] | None = None, **fields: Any) -> Any:
    upstream = DeepSeekFormat(options or {}).build_request(request(**fields), route(model))
    assert upstream.url == URL
    assert upstream.headers["Authorization"] == "Bearer sk-deepseek-test"
    return json.loads(upstream.body)


def wire(events: list[StreamOutput]) -> list[dict[str, Any]]:
    return [msgspec.to_builtins(e) for e in events if not isinstance(e, bytes)]


def translate(name: str, chunks: list[bytes] | None = None) -> list[dict[str, Any]]:
    translator = DeepSeekFormat({}).stream_translator(request(stream=True), route())
    data = (DEEPSEEK / name).read_bytes()
    events: list[StreamOutput] = []
    for chunk in chunks if chunks is not None else [data]:
        events += translator.feed(chunk)
    events += translator.close()
    return wire(events)


THINKING_TOOL_LOOP = [
    {"role": "user", "content": "What is in main.py?"},
    {
        "role": "assistant",
        "content": [
            {
                "type": "tool_use",
                "id": "toolu_call_00_a",
                "name": "Read",
                "input": {"file_path": "main.py"},
            }
        ],
    },
    {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_call_00_a", "content": "x = 1"}],
    },
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "It sets x; check the tests too.", "signature": ""},
            {
                "type": "tool_use",
                "id": "toolu_call_00_b",
                "name": "Glob",
                "input": {"pattern": "test_*.py"},
            },
        ],
    },
    {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_call_00_b", "content": "none"}],
    },
]


def test_plain_request_is_openai_chat_with_thinking_off() -> None:
    sent = body(system="Be brief.", temperature=0.2, top_p=0.9, stop_sequences=["END"])
    assert sent == {
        "model": "deepseek-chat",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_tokens": 1024,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "thinking": {"type": "disabled"},
    }


@pytest.mark.parametrize(
    ("model", "asked", "expected"),
    [
        ("deepseek-chat", 32000, 8192),
        ("deepseek-chat", 4000, 4000),
        ("deepseek-reasoner", 100000, 65536),
        ("deepseek-v4-pro", 500000, 393216),
        ("deepseek-flash", 64000, 64000),
        ("some-other-host-model", 500000, 500000),
    ],
)
def test_max_tokens_capped_per_model(model: str, asked: int, expected: int) -> None:
    assert body(model, max_tokens=asked)["max_tokens"] == expected


def test_deepseek_chat_keeps_its_documented_cap_in_thinking_mode() -> None:
    """Claude Code's 32000 is not sent to deepseek-chat even with the toggle on: its documented
    limit is 8K, and no public source says the toggle gives it the reasoner's 64K."""
    thinking = {"type": "adaptive"}
    assert body("deepseek-chat", max_tokens=32000, thinking=thinking)["max_tokens"] == 8192
    assert body("deepseek-reasoner", max_tokens=100000)["max_tokens"] == 65536
    assert body("deepseek-flash", max_tokens=32000, thinking=thinking)["max_tokens"] == 32000


def test_caps_can_be_configured() -> None:
    options = {"max_output_tokens": {"deepseek-chat": 4096, "my-finetune": 1000}}
    assert body("deepseek-chat", options, max_tokens=8000)["max_tokens"] == 4096
    assert body("my-finetune", options, max_tokens=8000)["max_tokens"] == 1000
    assert MAX_OUTPUT_TOKENS["deepseek-chat"] == 8192  # the defaults are not changed


@pytest.mark.parametrize(
    ("thinking", "effort", "toggle", "reasoning_effort"),
    [
        ({"type": "adaptive"}, "max", "enabled", "max"),
        ({"type": "adaptive"}, "low", "enabled", "low"),
        ({"type": "adaptive"}, None, "enabled", None),
        ({"type": "enabled", "budget_tokens": 31999}, None, "enabled", "max"),
        ({"type": "enabled", "budget_tokens": 4000}, None, "enabled", "high"),
        ({"type": "disabled"}, None, "disabled", None),
        (None, "high", "disabled", None),
    ],
)
def test_thinking_toggle_and_effort_on_v4(
    thinking: dict[str, Any] | None, effort: str | None, toggle: str, reasoning_effort: str | None
) -> None:
    fields: dict[str, Any] = {"temperature": 0.5, "top_p": 0.8}
    if thinking is not None:
        fields["thinking"] = thinking
    if effort is not None:
        fields["output_config"] = {"effort": effort}
    sent = body("deepseek-v4-pro", **fields)
    assert sent["thinking"] == {"type": toggle}
    assert sent.get("reasoning_effort") == reasoning_effort
    # Thinking mode ignores sampling parameters; they are only sent without it.
    assert ("temperature" in sent, "top_p" in sent) == ((toggle == "disabled",) * 2)


def test_legacy_models_get_the_toggle_but_no_effort() -> None:
    sent = body("deepseek-chat", thinking={"type": "adaptive"}, output_config={"effort": "max"})
    assert sent["thinking"] == {"type": "enabled"}
    assert "reasoning_effort" not in sent


def test_reasoner_always_thinks_and_gets_no_toggle() -> None:
    sent = body("deepseek-reasoner", temperature=0.7, messages=THINKING_TOOL_LOOP)
    assert "thinking" not in sent and "reasoning_effort" not in sent
    assert "temperature" not in sent
    assistants = [m for m in sent["messages"] if m["role"] == "assistant"]
    assert [m["reasoning_content"] for m in assistants] == ["", "It sets x; check the tests too."]


def test_thinking_model_option_switches_model_when_thinking_is_asked() -> None:
    options = {"thinking_model": "deepseek-reasoner"}
    sent = body(
        "deepseek-chat",
        options,
        max_tokens=32000,
        thinking={"type": "enabled", "budget_tokens": 10000},
    )
    assert sent["model"] == "deepseek-reasoner"
    assert sent["max_tokens"] == 32000  # the reasoner's cap (64K) applies, not deepseek-chat's
    assert "thinking" not in sent
    plain = body("deepseek-chat", options, max_tokens=32000)
    assert (plain["model"], plain["max_tokens"]) == ("deepseek-chat", 8192)


def test_tool_loop_in_thinking_mode_carries_reasoning_content() -> None:
    """DeepSeek 400s on an assistant tool-call turn without reasoning_content in thinking mode
    (https://api-docs.deepseek.com/guides/thinking_mode#tool-calls)."""
    sent = body("deepseek-v4-flash", thinking={"type": "adaptive"}, messages=THINKING_TOOL_LOOP)
    assert [m["role"] for m in sent["messages"]] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
    ]
    first, second = sent["messages"][1], sent["messages"][3]
    assert first == {
        "role": "assistant",
        "tool_calls": [
            {
                "type": "function",
                "id": "toolu_call_00_a",
                "function": {"name": "Read", "arguments": '{"file_path":"main.py"}'},
            }
        ],
        "reasoning_content": "",
    }
    assert second["reasoning_content"] == "It sets x; check the tests too."
    assert sent["messages"][2] == {
        "role": "tool",
        "content": "x = 1",
        "tool_call_id": "toolu_call_00_a",
    }


def test_without_thinking_no_reasoning_content_is_sent() -> None:
    sent = body("deepseek-v4-flash", messages=THINKING_TOOL_LOOP)
    assert all("reasoning_content" not in m for m in sent["messages"])


def test_tools_and_tool_choice_pass_through() -> None:
    tool = {
        "name": "Read",
        "description": "Read a file.",
        "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}},
    }
    sent = body(tools=[tool], tool_choice={"type": "tool", "name": "Read"})
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Read",
                "parameters": tool["input_schema"],
                "description": "Read a file.",
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "Read"}}


def test_structured_output_becomes_json_object_with_the_schema_in_the_prompt() -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    }
    sent = body(
        system="Be brief.", output_config={"format": {"type": "json_schema", "schema": schema}}
    )
    assert sent["response_format"] == {"type": "json_object"}
    system = sent["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.\n\n")
    assert (
        "JSON" in system["content"]
        and json.dumps(schema, separators=(",", ":")) in system["content"]
    )
    sent = body(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert sent["messages"][0]["role"] == "system" and sent["messages"][1] == {
        "role": "user",
        "content": "hi",
    }


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="deepseek options"):
        DeepSeekFormat({"thinking_model": 3})
    with pytest.raises(ValueError):
        DeepSeekFormat({"no_such_option": True})
    fmt = DeepSeekFormat({"thinking_toggle": False, "repair_tool_json": True})
    assert fmt.options.repair_tool_json is True
    sent = json.loads(
        fmt.build_request(request(thinking={"type": "adaptive"}), route("deepseek-v4-pro")).body
    )
    assert "thinking" not in sent and "reasoning_effort" not in sent


# --- responses ------------------------------------------------------------------------------


def test_reasoner_stream_thinking_before_text_with_cache_usage() -> None:
    events = translate("stream_reasoner.sse")
    kinds = [(e["type"], e.get("content_block", e.get("delta", {})).get("type")) for e in events]
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
    assert (
        events[3]["delta"]["thinking"] + events[4]["delta"]["thinking"]
        == "9.11 vs 9.8: compare tenths — 1 < 8."
    )
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    # prompt_tokens 1290 = 1152 cache hits + 138 misses
    assert events[-2]["usage"] == {
        "output_tokens": 61,
        "input_tokens": 138,
        "cache_read_input_tokens": 1152,
    }


def test_parallel_tool_calls_stream() -> None:
    events = translate("stream_tool_calls.sse")
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in events:
        if event["type"] != "ping":
            snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)  # type: ignore[arg-type]
    assert snapshot is not None
    assert [block.to_dict() for block in snapshot.content] == [
        {
            "type": "thinking",
            "thinking": "Need both files; read them in parallel.",
            "signature": "",
        },
        {
            "type": "tool_use",
            "id": "toolu_call_00_kX7bQ2mZ9rTt4sLw1yVd3nHe",
            "name": "Read",
            "input": {"file_path": "/srv/app/main.py"},
        },
        {
            "type": "tool_use",
            "id": "toolu_call_01_Pq8rS3tU5vW7xY9zA1bC2dEf",
            "name": "Grep",
            "input": {"pattern": "def main", "-n": True},
        },
    ]
    assert snapshot.stop_reason == "tool_use"
    assert events[-2]["usage"]["cache_read_input_tokens"] == 19968
    assert events[-2]["usage"]["input_tokens"] == 512


def test_length_finish_is_max_tokens_and_cache_hits_without_details() -> None:
    """An older usage shape: prompt_cache_hit/miss_tokens only, no prompt_tokens_details."""
    events = translate("stream_length.sse")
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == "一、二、三、四"
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2]["usage"] == {
        "output_tokens": 8,
        "input_tokens": 14,
        "cache_read_input_tokens": 16,
    }


@pytest.mark.parametrize("name", sorted(p.name for p in DEEPSEEK.glob("*.sse")))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_chunking_gives_the_same_events(name: str, data: st.DataObject) -> None:
    raw = (DEEPSEEK / name).read_bytes()
    cuts = sorted(data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=40)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    whole, pieces = translate(name), translate(name, chunks)
    # Message ids are random per translator; everything else must match.
    whole[0]["message"]["id"] = pieces[0]["message"]["id"] = "msg"
    assert pieces == whole


def test_truncated_stream_ends_with_an_error() -> None:
    raw = (DEEPSEEK / "stream_reasoner.sse").read_bytes()
    translator = DeepSeekFormat({}).stream_translator(request(stream=True), route())
    events = translator.feed(raw[: raw.index(b'"content":" is greater."')]) + translator.close()
    assert isinstance(events[-1], ErrorEvent)


def test_non_streaming_response_after_keep_alive_lines() -> None:
    raw = (DEEPSEEK / "response_tool_call.json").read_bytes()
    assert raw.startswith(b"\n\n")
    message = DeepSeekFormat({}).parse_response(raw, route("deepseek-reasoner"))
    assert msgspec.to_builtins(message.content) == [
        {
            "type": "thinking",
            "thinking": "The user wants the weather; call the tool.",
            "signature": "",
        },
        {
            "type": "tool_use",
            "id": "toolu_call_00_Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2",
            "name": "get_weather",
            "input": {"location": "Hangzhou"},
        },
    ]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (16, 384)
    assert message.usage.output_tokens == 40


def test_error_message() -> None:
    raw = (DEEPSEEK / "error_balance.json").read_bytes()
    assert DeepSeekFormat({}).error_message(402, raw) == "Insufficient Balance"


CAPTURED = sorted(
    path
    for path in (Path(__file__).parent / "fixtures" / "claude_code").glob("*.json")
    if "messages" in json.loads(path.read_text())
)


@pytest.mark.skipif(not CAPTURED, reason="no captured Claude Code request yet")
@pytest.mark.parametrize("path", CAPTURED, ids=[p.name for p in CAPTURED])
def test_captured_claude_code_requests(path: Path) -> None:
    """A real Claude Code request (thinking on, 32000+ max_tokens) becomes a valid DeepSeek one."""
    captured = request_decoder.decode(path.read_bytes())
    fmt = DeepSeekFormat({})
    sent = json.loads(fmt.build_request(captured, route("deepseek-v4-flash")).body)
    assert sent["max_tokens"] == min(captured.max_tokens or 0, 384 * 1024)
    assert sent["thinking"] == {"type": "enabled" if captured.thinking else "disabled"}
    assistants = [m for m in sent["messages"] if m["role"] == "assistant"]
    assert all("reasoning_content" in m for m in assistants) == bool(captured.thinking)
    assert "temperature" not in sent or not captured.thinking
    legacy = json.loads(fmt.build_request(captured, route("deepseek-chat")).body)
    assert legacy["max_tokens"] <= 65536

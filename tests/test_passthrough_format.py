"""The ``anthropic`` passthrough format: request forwarding and the byte-for-byte stream."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_router.anthropic import ErrorEvent, MessagesRequest, request_decoder
from trio_router.config import Provider
from trio_router.errors import UpstreamError
from trio_router.providers.base import ProviderFormat, Route, StreamOutput
from trio_router.providers.passthrough import AnthropicFormat, PassthroughStreamTranslator

STREAM = Path(__file__).parent / "fixtures" / "openai" / "passthrough" / "anthropic_text.sse"

PROVIDER = Provider(
    name="relay",
    api_base_url="https://relay.example.com/v1/messages",
    api_key="sk-ant-relay",
    models=["claude-sonnet-4-20250514"],
)
ROUTE = Route(provider=PROVIDER, model="claude-sonnet-4-20250514")

CLIENT_BODY = json.dumps(
    {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 1024,
        "stream": True,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hi"}],
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
    }
).encode()


def test_is_a_provider_format() -> None:
    fmt: ProviderFormat = AnthropicFormat({})
    assert fmt.name == "anthropic"


def test_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="no options"):
        AnthropicFormat({"reasoning": "none"})


def test_build_request_forwards_the_struct_with_the_route_model() -> None:
    upstream = AnthropicFormat({}).build_request(request_decoder.decode(CLIENT_BODY), ROUTE)
    assert upstream.url == "https://relay.example.com/v1/messages"
    assert upstream.headers == {
        "Content-Type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant-relay",
    }
    sent = json.loads(upstream.body)
    assert sent["model"] == "claude-sonnet-4-20250514"
    assert sent["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
    ]
    assert sent["messages"] == [{"role": "user", "content": "Hi"}]
    assert sent["stream"] is True
    # The documented limitation: a field MessagesRequest does not model is lost on this path.
    assert "context_management" not in sent


def test_provider_headers_win_and_no_key_means_no_x_api_key() -> None:
    provider = Provider(
        name="relay",
        api_base_url="http://127.0.0.1:9000/v1/messages",
        headers={"anthropic-version": "2023-01-01", "anthropic-beta": "context-1m-2025-08-07"},
    )
    request = msgspec.convert(
        {"model": "x", "messages": [{"role": "user", "content": "Hi"}]}, MessagesRequest
    )
    upstream = AnthropicFormat({}).build_request(request, Route(provider, "m"))
    assert upstream.headers == {
        "Content-Type": "application/json",
        "anthropic-version": "2023-01-01",
        "anthropic-beta": "context-1m-2025-08-07",
    }


def test_build_request_from_body_keeps_every_field() -> None:
    upstream = AnthropicFormat({}).build_request_from_body(CLIENT_BODY, ROUTE)
    assert upstream.headers["x-api-key"] == "sk-ant-relay"
    sent = json.loads(upstream.body)
    assert sent == {**json.loads(CLIENT_BODY), "model": "claude-sonnet-4-20250514"}
    with pytest.raises(ValueError, match="not a JSON object"):
        AnthropicFormat({}).build_request_from_body(b"[1, 2]", ROUTE)


def test_parse_response() -> None:
    body = json.dumps(
        {
            "id": "msg_01ABC",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-20250514",
            "content": [{"type": "text", "text": "Hello"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 5},
        }
    ).encode()
    message = AnthropicFormat({}).parse_response(body, ROUTE)
    assert message.id == "msg_01ABC"
    assert message.usage.cache_read_input_tokens == 5
    with pytest.raises(UpstreamError, match="invalid Anthropic message") as caught:
        AnthropicFormat({}).parse_response(b'{"type": "error"}', ROUTE)
    assert caught.value.status == 502


def test_error_message() -> None:
    body = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    assert AnthropicFormat({}).error_message(529, body) == "Overloaded"


def run(data: bytes, cuts: list[int]) -> tuple[list[StreamOutput], PassthroughStreamTranslator]:
    translator = AnthropicFormat({}).stream_translator(
        msgspec.convert({"messages": []}, MessagesRequest), ROUTE
    )
    outputs: list[StreamOutput] = []
    edges = [0, *cuts, len(data)]
    for start, end in itertools.pairwise(edges):
        outputs += translator.feed(data[start:end])
    outputs += translator.close()
    return outputs, translator


def test_stream_bytes_pass_unchanged_and_usage_is_tracked() -> None:
    data = STREAM.read_bytes()
    translator = PassthroughStreamTranslator()
    start = data.index(b"event: content_block_start")
    assert translator.feed(data[:start]) == [data[:start]]
    usage = translator.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (
        472,
        2,
        12000,
    )
    assert translator.feed(data[start:]) == [data[start:]]
    assert translator.usage.output_tokens == 15
    assert translator.usage.input_tokens == 472
    assert translator.usage.cache_creation_input_tokens == 0
    assert translator.close() == []


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_chunking_passes_the_same_bytes(data: st.DataObject) -> None:
    raw = STREAM.read_bytes()
    cuts = data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=30, unique=True).map(sorted))
    outputs, translator = run(raw, cuts)
    assert b"".join(o for o in outputs if isinstance(o, bytes)) == raw
    assert all(isinstance(o, bytes) and o for o in outputs)
    assert (translator.usage.input_tokens, translator.usage.output_tokens) == (472, 15)


def test_a_stream_without_message_stop_ends_with_an_error() -> None:
    raw = STREAM.read_bytes()
    cut = raw.index(b"event: message_delta")
    outputs, translator = run(raw[:cut], [])
    assert outputs[:-1] == [raw[:cut]]
    assert isinstance(outputs[-1], ErrorEvent)
    assert outputs[-1].error.message == "upstream stream ended before completion"
    assert translator.usage.output_tokens == 2


def test_an_upstream_error_event_is_passed_on_and_ends_the_stream() -> None:
    raw = STREAM.read_bytes()
    cut = raw.index(b"event: content_block_stop")
    failure = (
        b'event: error\ndata: {"type": "error", "error": '
        b'{"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    )
    outputs, _ = run(raw[:cut] + failure, [cut])
    assert outputs == [raw[:cut], failure]


def test_events_without_an_event_line_are_still_understood() -> None:
    lines = [line for line in STREAM.read_bytes().split(b"\n") if not line.startswith(b"event:")]
    outputs, translator = run(b"\n".join(lines), [])
    assert not any(isinstance(o, ErrorEvent) for o in outputs)
    assert (translator.usage.input_tokens, translator.usage.output_tokens) == (472, 15)


def test_malformed_usage_is_left_to_the_client() -> None:
    broken = b'event: message_start\ndata: {"type": "message_start", "message": 7}\n\n'
    translator = PassthroughStreamTranslator()
    assert translator.feed(broken) == [broken]
    assert translator.usage.input_tokens == 0


def _usage_events(*usages: dict[str, Any]) -> bytes:
    frames = [
        b"event: message_delta\ndata: " + json.dumps({"usage": usage}).encode() + b"\n\n"
        for usage in usages
    ]
    return b"".join(frames)


def test_later_usage_counts_replace_earlier_ones_field_by_field() -> None:
    translator = PassthroughStreamTranslator()
    translator.feed(
        _usage_events(
            {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 4},
            {"output_tokens": 9},
        )
    )
    usage = translator.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (10, 9, 4)

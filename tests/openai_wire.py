"""Bodies and streams shaped as OpenAI's chat completions API sends them.

Shapes follow https://platform.openai.com/docs/api-reference/chat/streaming and recorded
streams: a role chunk first, content chunks, a chunk with ``finish_reason`` and an empty delta,
then (with ``stream_options.include_usage``) a chunk with ``choices: []`` and ``usage``, then
``data: [DONE]``. Each event is ``data: <json>\\n\\n``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tests.fakeserver import Reply

HEADERS = [("openai-processing-ms", "12"), ("x-request-id", "req_fake")]


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": "fake-model",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


def usage_chunk(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": "fake-model",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def sse(events: Sequence[dict[str, Any]], done: bool = True) -> list[bytes]:
    frames = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events]
    if done:
        frames.append(b"data: [DONE]\n\n")
    return frames


def text_stream(
    parts: Sequence[str], prompt: int = 11, completion: int = 7, finish: str = "stop"
) -> list[bytes]:
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": p}) for p in parts]
    events += [chunk({}, finish), usage_chunk(prompt, completion)]
    return sse(events)


def tool_call_delta(
    index: int, arguments: str, call_id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call["id"] = call_id
        call["type"] = "function"
        call["function"]["name"] = name
    return chunk({"tool_calls": [call]})


def completion(
    content: str | None,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    reasoning: str | None = None,
    finish: str = "stop",
    prompt: int = 11,
    completion_tokens: int = 7,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning"] = reasoning
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1764000000,
        "model": "fake-model",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        },
    }


def stream_reply(frames: Sequence[bytes], **kwargs: Any) -> Reply:
    reply = Reply.sse(frames, content_type="text/event-stream; charset=utf-8", **kwargs)
    reply.headers = [*reply.headers, *HEADERS]
    return reply


def error_reply(
    status: int,
    message: str,
    kind: str,
    headers: Sequence[tuple[str, str]] = (),
    *,
    param: str | None = None,
    code: str | None = None,
) -> Reply:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``
    (https://platform.openai.com/docs/guides/error-codes)."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Reply.json(body, status=status, headers=[*HEADERS, *headers])

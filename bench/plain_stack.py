"""The plain-stack baseline: quart-trio + hypercorn (trio worker) + httpx, used the obvious way.

Text-only Anthropic ``/v1/messages`` to OpenAI chat completions and back, with ``json`` and
``aiter_lines``: what the stack costs before any of the router's hot-path work, so every gain
the router shows is measured against the same libraries used plainly. Not a product.

Run: ``PLAIN_UPSTREAM_URL=http://127.0.0.1:9000/v1/chat/completions
hypercorn -k trio --bind 127.0.0.1:8000 bench.plain_stack:app``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from quart import Response, request
from quart_trio import QuartTrio

app = QuartTrio(__name__)
_UPSTREAM = os.environ.get("PLAIN_UPSTREAM_URL", "http://127.0.0.1:9000/v1/chat/completions")
_MODEL = os.environ.get("PLAIN_UPSTREAM_MODEL", "m")
_clients: list[httpx.AsyncClient] = []


def _client() -> httpx.AsyncClient:
    if not _clients:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        _clients.append(httpx.AsyncClient(timeout=600.0, limits=limits))
    return _clients[0]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content or [] if isinstance(block, dict))


def _openai_request(body: dict[str, Any]) -> dict[str, Any]:
    messages = []
    system = _text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body.get("messages", []):
        messages.append({"role": message["role"], "content": _text(message["content"])})
    out: dict[str, Any] = {
        "model": _MODEL,
        "messages": messages,
        "stream": bool(body.get("stream")),
    }
    if body.get("max_tokens"):
        out["max_tokens"] = body["max_tokens"]
    if out["stream"]:
        out["stream_options"] = {"include_usage": True}
    return out


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


@app.post("/v1/messages")
async def messages() -> Response | dict[str, Any]:
    body = await request.get_json()
    upstream = _openai_request(body)
    message_id = f"msg_{uuid.uuid4().hex}"
    if not upstream["stream"]:
        reply = (await _client().post(_UPSTREAM, json=upstream)).json()
        choice = reply["choices"][0]
        usage = reply.get("usage") or {}
        return {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": body.get("model", _MODEL),
            "content": [{"type": "text", "text": choice["message"].get("content") or ""}],
            "stop_reason": _STOP.get(choice.get("finish_reason"), "end_turn"),
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
            },
        }

    async def stream() -> AsyncIterator[bytes]:
        start = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": body.get("model", _MODEL),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        yield _event("message_start", {"type": "message_start", "message": start})
        yield _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        stop_reason = "end_turn"
        output_tokens = 0
        async with _client().stream("POST", _UPSTREAM, json=upstream) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                payload = line[6:]
                if payload == "[DONE]":
                    break
                chunk = json.loads(payload)
                if chunk.get("usage"):
                    output_tokens = chunk["usage"].get("completion_tokens", 0)
                for choice in chunk.get("choices") or []:
                    text = choice.get("delta", {}).get("content")
                    if text:
                        delta = {"type": "text_delta", "text": text}
                        yield _event(
                            "content_block_delta",
                            {"type": "content_block_delta", "index": 0, "delta": delta},
                        )
                    if choice.get("finish_reason"):
                        stop_reason = _STOP.get(choice["finish_reason"], "end_turn")
        yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
        yield _event("message_stop", {"type": "message_stop"})

    return Response(stream(), content_type="text/event-stream")

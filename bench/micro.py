"""In-process micro-benchmarks: each provider format's cost per chunk and per request, and the
token counter on a 100k-token request shaped like Claude Code's.

The chunks are the fake upstream's own (same bytes as in the end-to-end runs), fed one SSE event
per ``feed`` as a 20 ms-spaced stream arrives; "per chunk" includes encoding the resulting
events as SSE, which the HTTP layer must do for every chunk too. Each measurement stops at its
time budget or its repetition cap, whichever comes first.

Run alone: ``python -m bench.micro [--quick]`` (prints JSON).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from .fake_upstream import Script, Settings, non_stream_body

# Which fake format feeds which of the router's format names.
FORMAT_UPSTREAM = {
    "openrouter": "openai",
    "openai": "openai",
    "deepseek": "deepseek",
    "gemini": "gemini",
}
FORMAT_MODEL = {
    "openrouter": "m",
    "openai": "m",
    "deepseek": "deepseek-reasoner",
    "gemini": "gemini-bench",
}


def _timed(fn: Callable[[], object], budget: float, cap: int) -> dict[str, float]:
    """Median and minimum microseconds of ``fn`` over up to ``cap`` calls within ``budget`` s."""
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < cap and (len(samples) < 3 or time.perf_counter() < deadline):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000)
    return {
        "median_us": round(statistics.median(samples), 2),
        "min_us": round(min(samples), 2),
        "n": len(samples),
    }


def small_request_json(model: str, stream: bool) -> bytes:
    return json.dumps(
        {
            "model": model,
            "max_tokens": 1024,
            "stream": stream,
            "system": "You are a load test. Answer briefly.",
            "messages": [{"role": "user", "content": "Write a short poem about latency."}],
        }
    ).encode()


_WORDS = [
    "the",
    "request",
    "router",
    "stream",
    "chunk",
    "latency",
    "provider",
    "model",
    "token",
    "budget",
    "context",
    "window",
    "tool",
    "result",
    "message",
    "assistant",
    "user",
    "system",
    "cache",
    "format",
    "translate",
    "encode",
    "decode",
    "buffer",
    "socket",
]


def _prose(seed: int, words: int) -> str:
    return " ".join(_WORDS[(seed * 7 + i * 13) % len(_WORDS)] for i in range(words))


def _code(seed: int, lines: int) -> str:
    return "\n".join(
        f"def handler_{seed}_{i}(request, route):\n"
        f"    return translate(request, route, limit={i * seed % 997})"
        for i in range(lines)
    )


def claude_code_request(turns: int) -> dict[str, Any]:
    """A long Claude Code session: big system prompt, ~20 tools, turns of tool calls on code."""
    tools = [
        {
            "name": f"Tool{i}",
            "description": _prose(i, 220),
            "input_schema": {
                "type": "object",
                "properties": {
                    "file_path": {"type": "string", "description": _prose(i + 1, 20)},
                    "command": {"type": "string", "description": _prose(i + 2, 20)},
                    "limit": {"type": "integer", "description": "How many lines to read."},
                },
                "required": ["file_path"],
            },
        }
        for i in range(20)
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": _prose(0, 120)}]
    for t in range(turns):
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": _prose(t, 40)},
                    {
                        "type": "tool_use",
                        "id": f"toolu_{t:05d}",
                        "name": f"Tool{t % 20}",
                        "input": {"file_path": f"/repo/src/module_{t}.py", "limit": 200},
                    },
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": f"toolu_{t:05d}",
                        "content": _code(t, 30),
                    }
                ],
            }
        )
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "stream": True,
        "system": [{"type": "text", "text": _prose(99, 2500)}],
        "tools": tools,
        "messages": messages,
    }


def _turns_for(tokens: int) -> int:
    """Turns that bring ``claude_code_request`` to about ``tokens``, by the router's counter."""
    try:
        from trio_router.anthropic import request_decoder
        from trio_router.tokens import count_tokens
    except ImportError:
        return 130  # about 100k tokens when last calibrated

    def count(turns: int) -> int:
        return count_tokens(request_decoder.decode(json.dumps(claude_code_request(turns)).encode()))

    base = count(0)
    per_turn = (count(10) - base) / 10
    return max(1, round((tokens - base) / per_turn))


def _format_costs(
    fmt: Any, route: Any, request: Any, big: Any, events: list[bytes], body: bytes, budget: float
) -> dict[str, Any]:
    """One format: a whole stream (per chunk), and each per-request step."""
    from trio_router.sse import encode_event

    def stream(encode: bool) -> None:
        translator = fmt.stream_translator(request, route)
        for event in events:
            outputs = translator.feed(event)
            if encode:
                for item in outputs:
                    if not isinstance(item, bytes):
                        encode_event(item)
        translator.close()

    whole = _timed(functools.partial(stream, True), budget, 2000)
    translate = _timed(functools.partial(stream, False), budget, 2000)
    return {
        "chunks_per_stream": len(events),
        "per_chunk_us": round(whole["median_us"] / len(events), 3),
        "per_chunk_translate_only_us": round(translate["median_us"] / len(events), 3),
        "per_stream_us": whole,
        "build_request_us": _timed(
            functools.partial(fmt.build_request, request, route), budget, 20000
        ),
        "build_request_100k_us": _timed(
            functools.partial(fmt.build_request, big, route), budget, 200
        ),
        "parse_response_us": _timed(
            functools.partial(fmt.parse_response, body, route), budget, 20000
        ),
    }


def run(quick: bool) -> dict[str, Any]:
    budget = 0.05 if quick else 0.5
    out: dict[str, Any] = {"formats": {}, "tokens": None}
    try:
        from trio_router.anthropic import request_decoder
        from trio_router.config import Provider
        from trio_router.providers.base import Route
        from trio_router.transformers import BUILTIN_FORMATS
    except ImportError as exc:
        return {"error": f"trio_router not importable: {exc}"}
    settings = Settings(chunks=200)
    big_json = claude_code_request(_turns_for(100_000))
    big = request_decoder.decode(json.dumps(big_json).encode())
    request = request_decoder.decode(small_request_json("claude-sonnet-4-5", True))
    for name, upstream in FORMAT_UPSTREAM.items():
        if name not in BUILTIN_FORMATS:
            continue
        module, attribute = BUILTIN_FORMATS[name]
        model = FORMAT_MODEL[name]
        provider = Provider(
            name="fake", api_base_url="http://127.0.0.1:9/", api_key="k", models=[model]
        )
        route = Route(provider=provider, model=model)
        script = Script(upstream, model, 20, settings)
        now = time.time_ns() // 1000
        events = script.head + [script.content(i, now) for i in range(script.count)] + script.tail
        body = non_stream_body(upstream, model, 20, settings)
        try:
            fmt = getattr(importlib.import_module(module), attribute)({})
            out["formats"][name] = _format_costs(fmt, route, request, big, events, body, budget)
        except Exception as exc:  # report a broken format, keep measuring the others
            out["formats"][name] = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        from trio_router import tokens
    except ImportError as exc:
        out["tokens"] = {"error": f"trio_router.tokens not importable: {exc}"}
        return out
    kept = tokens.COUNTS

    def cold() -> None:
        """Every text encoded: the cache emptied before each count."""
        tokens.COUNTS = tokens.CountCache(kept.max_entries, kept.max_chars)
        tokens.count_tokens(big)

    out["tokens"] = {
        "request_tokens": tokens.count_tokens(big),
        "request_bytes": len(json.dumps(big_json)),
        "count_tokens_us": _timed(cold, budget * 4, 20),
        # The same request again, as Claude Code resends its history: every text kept.
        "count_tokens_cached_us": _timed(functools.partial(tokens.count_tokens, big), budget, 2000),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()

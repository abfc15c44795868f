"""A conversation's next turn is counted where the request is, without a worker thread.

Claude Code's second turn adds only its tool call and result to what the first turn sent, so
:func:`tokens.count_tokens_cached` counts it from the cache plus a short encode; a request with
more new text than :data:`tokens.INLINE_CHARS` is left to :func:`tokens.count_tokens`.
"""

from __future__ import annotations

from pathlib import Path

import tiktoken

from trio_router import tokens
from trio_router.anthropic import MessagesRequest, request_decoder

FIXTURES = Path(__file__).parent / "fixtures" / "claude_code"


def load(name: str) -> MessagesRequest:
    return request_decoder.decode((FIXTURES / f"{name}.json").read_bytes())


def texts(request: MessagesRequest) -> list[str]:
    return [text for text in tokens.request_texts(request) if text]


class Recording:
    def __init__(self) -> None:
        self.encoded: list[str] = []
        self._encode = tiktoken.get_encoding(tokens.ENCODING).encode_ordinary

    def __call__(self, text: str) -> list[int]:
        self.encoded.append(text)
        return self._encode(text)


def exact(request: MessagesRequest) -> int:
    encode = tiktoken.get_encoding(tokens.ENCODING).encode_ordinary
    return sum(len(encode(text)) for text in texts(request))


def test_the_second_turn_counts_from_the_cache_and_encodes_only_what_is_new() -> None:
    first, second = load("cli_2_1_197_tool_use_1"), load("cli_2_1_197_tool_use_2")
    cache = tokens.CountCache(max_entries=1000, max_chars=1 << 22)
    encode = Recording()
    # A first turn is 86 KB of new text: not counted here, and nothing is encoded.
    assert cache.total_if_small(texts(first), encode, tokens.INLINE_CHARS) is None
    assert encode.encoded == []
    assert cache.total(texts(first), encode) == exact(first)
    encode.encoded.clear()
    count = cache.total_if_small(texts(second), encode, tokens.INLINE_CHARS)
    assert count == exact(second)
    assert encode.encoded, "the turn's tool call and result are new"
    assert sum(map(len, encode.encoded)) <= tokens.INLINE_CHARS
    encode.encoded.clear()
    assert cache.total_if_small(texts(second), encode, 0) == exact(second)
    assert encode.encoded == []


def test_count_tokens_cached_equals_count_tokens_once_the_history_is_kept() -> None:
    first, second = load("tool_use_1"), load("tool_use_2")
    tokens.count_tokens(first)
    assert tokens.count_tokens_cached(second) == tokens.count_tokens(second)
    fresh = request_decoder.decode(
        (FIXTURES / "tool_use_1.json").read_bytes().replace(b"marker", b"nonce-" + b"x" * 4000)
    )
    assert tokens.count_tokens_cached(fresh) is None

"""Token counts kept per text: exact to the token on real Claude Code turns, bounded, threadsafe."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tiktoken

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request
from trio_router import tokens
from trio_router.anthropic import MessagesRequest, request_decoder

FIXTURES = Path(__file__).parent / "fixtures" / "claude_code"
# Captured Claude Code conversations, first and second turn: 2.1.197 sends 24 tools (86 KB),
# the newer CLI 12 (55 KB).
TURNS = [
    ("cli_2_1_197_tool_use_1", "cli_2_1_197_tool_use_2"),
    ("tool_use_1", "tool_use_2"),
]


def load(name: str) -> tuple[bytes, MessagesRequest]:
    body = (FIXTURES / f"{name}.json").read_bytes()
    return body, request_decoder.decode(body)


def uncached(request: MessagesRequest) -> int:
    """The count as tiktoken gives it, text by text, with no cache in between."""
    encode = tiktoken.get_encoding(tokens.ENCODING).encode_ordinary
    texts = sum(len(encode(text)) for text in tokens.request_texts(request) if text)
    return texts + sum(tokens.image_tokens(block) for block in tokens._image_blocks(request))


class Recording:
    """An encoder that remembers what it was asked to encode."""

    def __init__(self) -> None:
        self.encoded: list[str] = []
        self._encode = tiktoken.get_encoding(tokens.ENCODING).encode_ordinary

    def __call__(self, text: str) -> list[int]:
        self.encoded.append(text)
        return self._encode(text)


def texts(request: MessagesRequest) -> list[str]:
    return [text for text in tokens.request_texts(request) if text]


@pytest.mark.parametrize(("first", "second"), TURNS)
def test_cached_counts_equal_tiktoken_on_both_turns(first: str, second: str) -> None:
    for name in (first, second, first, second):
        _, request = load(name)
        assert tokens.count_tokens(request) == uncached(request), name
    # Decoded afresh, as every request is: equal texts hit, not the same objects.
    _, again = load(second)
    assert tokens.count_tokens(again) == uncached(again)


@pytest.mark.parametrize(("first", "second"), TURNS)
def test_the_second_turn_encodes_only_what_is_new(first: str, second: str) -> None:
    cache = tokens.CountCache(max_entries=1000, max_chars=1 << 24)
    turn1, turn2 = load(first)[1], load(second)[1]
    encode = Recording()
    assert cache.total(texts(turn1), encode) == uncached(turn1)
    assert sorted(encode.encoded) == sorted(set(texts(turn1)))

    encode.encoded.clear()
    assert cache.total(texts(turn2), encode) == uncached(turn2)
    new = set(texts(turn2)) - set(texts(turn1))
    assert new and sorted(encode.encoded) == sorted(new)
    # The tool call and its result: a few hundred characters out of tens of thousands.
    assert sum(map(len, new)) < sum(map(len, texts(turn2))) // 50


def test_a_text_repeated_in_one_request_counts_each_time() -> None:
    cache = tokens.CountCache(max_entries=10, max_chars=1000)
    encode = Recording()
    one = len(encode("hello world"))
    encode.encoded.clear()
    assert cache.total(["hello world", "hello world", "x", "hello world"], encode) == 3 * one + 1
    assert sorted(encode.encoded) == ["hello world", "x"]
    assert cache.total(["hello world"] * 4, encode) == 4 * one
    assert len(encode.encoded) == 2


def test_least_recently_used_texts_go_first_within_both_bounds() -> None:
    encode = Recording()
    cache = tokens.CountCache(max_entries=3, max_chars=40)
    cache.total(["a" * 10, "b" * 10, "c" * 10], encode)
    cache.total(["a" * 10], encode)  # a is now the most recent
    cache.total(["d" * 10], encode)  # over 3 entries: b, the oldest, goes
    assert (len(cache), cache.chars) == (3, 30)
    encode.encoded.clear()
    cache.total(["a" * 10, "c" * 10, "d" * 10], encode)
    assert encode.encoded == []
    cache.total(["b" * 10], encode)
    assert encode.encoded == ["b" * 10]

    # Characters bound: a 30-character text leaves room for one 10-character text only.
    cache.total(["e" * 30], encode)
    assert cache.chars <= 40 and len(cache) <= 3
    # Over a quarter of the bound, a text is counted but not kept.
    big = "f " * 40
    encode.encoded.clear()
    assert cache.total([big], encode) == cache.total([big], encode) == len(encode(big))
    assert encode.encoded.count(big) == 3


def test_many_threads_at_once_get_exact_counts_and_a_consistent_cache() -> None:
    requests = [load(name)[1] for pair in TURNS for name in pair]
    expected = [uncached(request) for request in requests]
    encoding = tiktoken.get_encoding(tokens.ENCODING)
    # Small enough that the threads evict each other's texts all the time.
    cache = tokens.CountCache(max_entries=40, max_chars=60_000)
    start = threading.Barrier(4)

    def work(offset: int) -> Iterator[int]:
        start.wait()
        for i in range(12):
            request = requests[(offset + i) % len(requests)]
            texts_ = texts(request)
            images = sum(tokens.image_tokens(b) for b in tokens._image_blocks(request))
            yield cache.total(texts_, encoding.encode_ordinary) + images

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda offset: list(work(offset)), range(4)))
    for offset, counts in enumerate(results):
        assert counts == [expected[(offset + i) % len(requests)] for i in range(12)]
    assert len(cache) <= 40 and cache.chars <= 60_000
    assert cache.chars == sum(len(text) for text in cache._counts)


async def test_long_context_routing_is_exact_to_the_token_on_the_second_turn(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    """The threshold set to the first turn's count: that turn stays on the default route, the
    second (27 tokens more, counted mostly from the cache) goes to longContext."""
    first, second = TURNS[0]
    (body1, turn1), (body2, turn2) = load(first), load(second)
    threshold = uncached(turn1)
    assert uncached(turn2) > threshold

    routed: list[str] = []

    def handler(request: Request) -> Reply:
        routed.append(request.json()["model"])
        return wire.stream_reply(wire.text_stream(["Hi"]))  # Claude Code asks for a stream

    fakes = {name: await start_fake(handler) for name in ("main", "long")}
    router = await start_router(
        {
            "Providers": [
                provider_config(fake, name=name, models=[f"{name}-model"])
                for name, fake in fakes.items()
            ],
            "Router": {
                "default": "main,main-model",
                "longContext": "long,long-model",
                "longContextThreshold": threshold,
            },
        }
    )
    headers = {"content-type": "application/json"}
    async with router.client() as client:
        for body in (body1, body2, body1, body2):
            response = await client.post("/v1/messages", content=body, headers=headers)
            assert response.status_code == 200, response.text
            assert "event: message_stop" in response.text
            counted = await client.post("/v1/messages/count_tokens", content=body, headers=headers)
            assert counted.json()["input_tokens"] == uncached(request_decoder.decode(body))
    assert routed == ["main-model", "long-model"] * 2


def test_tiktoken_is_imported_by_the_first_count_only() -> None:
    """A worker that never counts does not pay for tiktoken (about 1.4 MB of RSS): the app
    imports without it, and the first count brings it in."""
    script = (
        "import sys, trio_router.app, trio_router.cli\n"
        "print('tiktoken' in sys.modules)\n"
        "from trio_router.tokens import count_text\n"
        "print(count_text('hello world'), 'tiktoken' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-P", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    ).stdout.split("\n")
    assert out[:2] == ["False", "2 True"]

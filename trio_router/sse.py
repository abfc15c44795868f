"""Server-sent events: an incremental parser for upstream streams and the encoder for ours.

The parser follows the WHATWG event-stream grammar
(https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream):
lines end in CRLF, LF or CR; ``data`` lines of one event are joined with LF; lines starting with
``:`` are comments (keep-alives); a blank line dispatches. Data stays ``bytes`` so that a UTF-8
sequence cut between two network reads is never decoded half-way (no UTF-8 byte is a newline).
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from .anthropic import StreamEvent


class SSEEvent(NamedTuple):
    event: bytes | None
    data: bytes


class SSEParser:
    """Sans-IO: ``feed`` any slice of the stream, get the events it completes."""

    __slots__ = ("_data", "_event", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._event: bytes | None = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._pending + chunk if self._pending else chunk
        hold_cr = False
        if b"\r" in buf:
            # A CR at the very end may be the first half of a CRLF: keep it for the next feed.
            hold_cr = buf.endswith(b"\r")
            if hold_cr:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        last = lines.pop()
        self._pending = last + b"\r" if hold_cr else last
        return self._lines(lines)

    def close(self) -> list[SSEEvent]:
        """End of stream: a last event not followed by a blank line is still dispatched."""
        pending = self._pending.rstrip(b"\r")
        self._pending = b""
        return self._lines([pending, b""] if pending else [b""])

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(
                        SSEEvent(self._event, data[0] if len(data) == 1 else b"\n".join(data))
                    )
                    self._data = data = []
                self._event = None
                continue
            if line[0] == 58:  # b":" comment, used as keep-alive
                continue
            field, sep, value = line.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                self._event = value
        return events


_encode = msgspec.json.Encoder().encode
_prefixes: dict[type, bytes] = {}


def encode_event(event: StreamEvent) -> bytes:
    """One Anthropic stream event as an SSE frame: ``event: <type>\\ndata: <json>\\n\\n``."""
    cls = type(event)
    prefix = _prefixes.get(cls)
    if prefix is None:
        tag = cls.__struct_config__.tag
        prefix = _prefixes[cls] = b"event: " + str(tag).encode() + b"\ndata: "
    return prefix + _encode(event) + b"\n\n"

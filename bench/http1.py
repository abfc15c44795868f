"""Just enough HTTP/1.1 for the fake upstream and the load generator.

Both sit on the other side of every gateway under test, so they must cost far less per chunk
than any gateway: no framework, no per-chunk header objects, only the framing RFC 9112 needs
(https://www.rfc-editor.org/rfc/rfc9112: message head, Content-Length, chunked coding).
"""

from __future__ import annotations

from typing import NamedTuple


class Head(NamedTuple):
    """Start line and the few header fields the framing depends on (names lower-cased)."""

    start: list[bytes]
    headers: dict[bytes, bytes]
    content_length: int | None
    chunked: bool
    close: bool


def parse_head(raw: bytes) -> Head:
    """Parse a request or response head (without its final blank line)."""
    lines = raw.split(b"\r\n")
    start = lines[0].split(b" ", 2)
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    length = headers.get(b"content-length")
    chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
    connection = headers.get(b"connection", b"").lower()
    http10 = (start[0] if start[0].startswith(b"HTTP/") else start[-1]) == b"HTTP/1.0"
    close = b"close" in connection or (http10 and b"keep-alive" not in connection)
    return Head(start, headers, int(length) if length is not None else None, chunked, close)


class ChunkedDecoder:
    """Incremental decoder of the chunked transfer coding (RFC 9112 section 7.1).

    ``feed`` returns the payload bytes now complete; ``done`` is set at the last (empty) chunk.
    Trailer fields are not expected from the peers here; anything after the last chunk's size
    line is left to the caller, which skips the blank line before the next message.
    """

    __slots__ = ("_buf", "_crlf", "_need", "done")

    def __init__(self) -> None:
        self._buf = b""
        self._need = 0
        self._crlf = 0
        self.done = False

    def feed(self, data: bytes) -> bytes:
        buf = self._buf + data if self._buf else data
        pos = 0
        end = len(buf)
        out: list[bytes] = []
        while not self.done:
            if self._need:
                take = min(self._need, end - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._need -= take
                if self._need:
                    break
                self._crlf = 2
            if self._crlf:
                skip = min(self._crlf, end - pos)
                pos += skip
                self._crlf -= skip
                if self._crlf:
                    break
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                break
            size = int(buf[pos:nl].split(b";", 1)[0], 16)
            pos = nl + 2
            if size == 0:
                self.done = True
            self._need = size
        self._buf = buf[pos:] if pos < end else b""
        return out[0] if len(out) == 1 else b"".join(out)


def chunk(data: bytes) -> bytes:
    """One piece of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"

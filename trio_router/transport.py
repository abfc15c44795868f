"""A lean HTTP/1.1 transport for httpx on trio: the upstream side of every streamed chunk.

httpx's default transport reads each chunk through httpcore and h11, and every read enters a
``trio.fail_after`` cancel scope and a ``map_exceptions`` context manager; profiled under 100
concurrent SSE streams that receive path was ~43% of the router's CPU. This transport speaks
HTTP/1.1 itself (RFC 9112), so the per-chunk path is ``receive_some`` -> decoder -> ``yield``.

Read timeouts cost no cancel scope per read: a read stamps its connection's deadline and one
watchdog task closes any connection whose read overran it, which wakes the blocked reader (see
:class:`_Watchdog`). A cancel scope cannot stay open across the body iterator's ``yield``
instead: the consumer's code would run inside it and trio would report a corrupted scope stack.

Two read timeouts: the request's ``timeout`` extension may hold ``first_byte``, one deadline for
the whole response head (default: ``read``), while ``read`` bounds each wait between body reads.
``connect`` covers TCP, the proxy's tunnel and the TLS handshake. A request's :class:`Dial`
(extension :data:`DIAL`) says how its origin is reached: through an HTTP proxy (a ``CONNECT``
tunnel for https, RFC 9110 section 9.3.6; the absolute-form request for http, RFC 9112 section
3.2.2) and with which TLS context.
"""

from __future__ import annotations

import os
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from math import inf
from typing import Protocol, cast

import httpx
import trio

from .proxy import Proxy

# scheme, host, port, and the Dial's key: a tunnel is reused only for its own origin and route.
_Key = tuple[str, str, int, str]
# The request extension that holds its Dial.
DIAL = "trio_router.dial"

_RECEIVE_SIZE = 65536
# One send for head and body up to this size; a larger body is not copied to join them.
_JOIN_LIMIT = 65536
_MAX_HEAD = 64 * 1024
_MAX_CHUNK_LINE = 4096
_MAX_TRAILERS = 64 * 1024
# RFC 9110 §5.6.2: token characters, all a field name may hold.
_TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HEX = b"0123456789abcdefABCDEF"
_NET_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def _make_ssl_context(verify: ssl.SSLContext | bool = True) -> ssl.SSLContext:
    """What httpx verifies against by default: certifi's CA bundle, else the system's."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify:
        try:
            import certifi
        except ImportError:
            context = ssl.create_default_context()
        else:
            context = ssl.create_default_context(cafile=certifi.where())
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


class Dial:
    """How a request's origin is reached: through ``proxy`` or directly, verifying TLS with
    ``ssl_context`` (None: the transport's own). ``trust`` names the CAs the context trusts, so
    that connections verified against other CAs are never pooled together."""

    __slots__ = ("key", "proxy", "ssl_context")

    def __init__(
        self,
        proxy: Proxy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        trust: str = "",
    ) -> None:
        self.proxy = proxy
        self.ssl_context = ssl_context
        self.key = f"{proxy.key if proxy is not None else ''}|{trust}"


class FirstByteTimeout(httpx.ReadTimeout):
    """The response head did not arrive within the first-byte timeout."""


class _Connection:
    __slots__ = (
        "deadline",
        "idle_since",
        "key",
        "receive",
        "socket",
        "stream",
        "timed_out",
        "timeout",
    )

    def __init__(self, key: _Key, stream: trio.abc.Stream, socket: trio.socket.SocketType) -> None:
        self.key = key
        self.stream = stream
        if isinstance(stream, trio.SocketStream):
            self.receive = _wait_then_read(socket)
        else:
            # trio types SSLStream.receive_some as bytes | bytearray; it returns what
            # ssl.SSLObject.read does, which is bytes.
            self.receive = cast("Callable[[int], Awaitable[bytes]]", stream.receive_some)
        self.socket = socket
        # When the read in progress times out; inf while no read is waiting.
        self.deadline = inf
        self.timeout = inf
        self.timed_out = False
        self.idle_since = 0.0

    def close(self) -> None:
        """Close at once, without a TLS close_notify: nothing waits on the peer, not even
        under cancellation, and a reader blocked on the socket wakes with ClosedResourceError."""
        self.socket.close()


def _wait_then_read(socket: trio.socket.SocketType) -> Callable[[int], Awaitable[bytes]]:
    """A plain socket's reads, waiting for data first.

    trio's ``receive_some`` tries ``recv`` before waiting, which on a stream that is read as
    fast as it arrives fails with EAGAIN nearly every time: a syscall and an exception per
    chunk for nothing. Waiting first is still a checkpoint, and a socket closed meanwhile (the
    watchdog's timeout) wakes the wait with ClosedResourceError. The descriptor is looked up on
    each read, so that a closed socket's number, which the kernel may hand to another
    connection, is never read from.
    """
    wait = trio.lowlevel.wait_readable
    read = os.read
    fileno = socket.fileno

    async def receive(size: int) -> bytes:
        while True:
            fd = fileno()
            if fd < 0:
                raise trio.ClosedResourceError("the connection was closed")
            await wait(fd)
            try:
                return read(fd, size)
            except BlockingIOError:
                continue

    return receive


class _Watchdog:
    """Enforces read timeouts for the connections it watches, with one system task per run.

    A body read only stamps ``deadline`` (and resets it to inf when data came); the head's one
    deadline is stamped by :meth:`watch`. The task sleeps until the earliest moment a watched
    read could time out, then closes the connections whose read overran its deadline; their
    readers see ``timed_out`` and raise httpx.ReadTimeout (FirstByteTimeout for the head).
    """

    def __init__(self) -> None:
        self._watched: set[_Connection] = set()
        self._nap: trio.CancelScope | None = None
        self._running = False

    def watch(self, conn: _Connection, timeout: float | None, first_byte: float | None) -> None:
        """From now, the head must come within ``first_byte`` s, each body read in ``timeout``."""
        now = trio.current_time()
        conn.timeout = inf if timeout is None else timeout
        conn.deadline = inf if first_byte is None else now + first_byte
        self._watched.add(conn)
        if not self._running:
            self._running = True
            trio.lowlevel.spawn_system_task(self._run, name="trio_router.transport watchdog")
        elif self._nap is not None:
            # The head times out at its deadline, and a body read starting now no earlier.
            self._nap.deadline = min(self._nap.deadline, conn.deadline, now + conn.timeout)

    def unwatch(self, conn: _Connection) -> None:
        self._watched.discard(conn)
        conn.deadline = conn.timeout = inf

    async def _run(self) -> None:
        try:
            while self._watched:
                now = trio.current_time()
                wake = inf
                for conn in list(self._watched):
                    if conn.deadline <= now:
                        self._watched.discard(conn)
                        conn.timed_out = True
                        conn.close()
                    else:
                        wake = min(wake, conn.deadline, now + conn.timeout)
                with trio.CancelScope(deadline=wake) as self._nap:
                    await trio.sleep_forever()
        finally:
            self._running = False
            self._nap = None


class _Decoder(Protocol):
    done: bool
    # Bytes came after the body's end: the connection is not in a known state.
    extra: bool

    def feed(self, data: bytes) -> bytes: ...

    def eof(self) -> None: ...


def _incomplete() -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError("peer closed connection without sending complete message body")


class SizedDecoder:
    """A ``Content-Length`` body (RFC 9112 §6.3 rule 6)."""

    __slots__ = ("_remaining", "done", "extra")

    def __init__(self, length: int) -> None:
        self._remaining = length
        self.done = length == 0
        self.extra = False

    def feed(self, data: bytes) -> bytes:
        remaining = self._remaining
        if len(data) < remaining:
            self._remaining = remaining - len(data)
            return data
        self._remaining = 0
        self.done = True
        if len(data) > remaining:
            self.extra = True
            return data[:remaining]
        return data

    def eof(self) -> None:
        raise _incomplete()


class UntilCloseDecoder:
    """A body delimited by the end of the connection (RFC 9112 §6.3 rule 8)."""

    __slots__ = ("done", "extra")

    def __init__(self) -> None:
        self.done = False
        self.extra = False

    def feed(self, data: bytes) -> bytes:
        return data

    def eof(self) -> None:
        self.done = True


_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


def _chunk_size(line: bytes) -> int:
    # RFC 9112 §7.1: chunk-size [ BWS ";" chunk-ext ] CRLF; extensions carry nothing we use.
    semicolon = line.find(b";")
    digits = (line if semicolon < 0 else line[:semicolon]).rstrip(b" \t")
    if not digits or len(digits) > 16 or digits.lstrip(_HEX):
        raise httpx.RemoteProtocolError(f"malformed chunk size line {line[:64]!r}")
    return int(digits, 16)


class ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoder (RFC 9112 §7.1), sans-IO.

    ``feed`` returns all body bytes its data completes or continues, joined: a chunk's data is
    passed on as it arrives, without waiting for the rest of the chunk. Size lines, CRLFs and
    trailers may be split anywhere across feeds; trailers are read and dropped.
    """

    __slots__ = ("_buffer", "_remaining", "_state", "_trailers", "done", "extra")

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0
        self._state = _SIZE
        self._trailers = 0
        self.done = False
        self.extra = False

    def feed(self, data: bytes) -> bytes:
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        pieces: list[bytes] = []
        state = self._state
        pos = 0
        end = len(data)
        while pos < end:
            if state == _DATA:
                stop = pos + self._remaining
                if stop > end:
                    pieces.append(data[pos:] if pos else data)
                    self._remaining = stop - end
                    pos = end
                    break
                pieces.append(data[pos:stop])
                pos = stop
                state = _DATA_END
            elif state == _DATA_END:
                if data[pos] != 13 or (pos + 1 < end and data[pos + 1] != 10):
                    raise httpx.RemoteProtocolError("missing CRLF after chunk data")
                if pos + 1 == end:
                    self._buffer = b"\r"
                    pos = end
                    break
                pos += 2
                state = _SIZE
            elif state == _SIZE:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > _MAX_CHUNK_LINE:
                        raise httpx.RemoteProtocolError("chunk size line too long")
                    self._buffer = data[pos:]
                    pos = end
                    break
                size = _chunk_size(data[pos:eol])
                pos = eol + 2
                if size:
                    self._remaining = size
                    state = _DATA
                else:
                    state = _TRAILER
            elif state == _TRAILER:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    if self._trailers + end - pos > _MAX_TRAILERS:
                        raise httpx.RemoteProtocolError("trailers too long")
                    self._buffer = data[pos:]
                    pos = end
                    break
                if eol == pos:
                    pos += 2
                    state = _DONE
                    self.done = True
                else:
                    self._trailers += eol + 2 - pos
                    if self._trailers > _MAX_TRAILERS:
                        raise httpx.RemoteProtocolError("trailers too long")
                    pos = eol + 2
            else:
                break
        if pos < end:
            self.extra = True
        self._state = state
        if not pieces:
            return b""
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def eof(self) -> None:
        raise _incomplete()


class _ServerClosed(Exception):
    """The connection failed before any byte of the response: a reused connection the server
    had already closed. Carries the error to raise when the request cannot be retried."""

    def __init__(self, error: httpx.TransportError) -> None:
        super().__init__(str(error))
        self.error = error


def _read_error(
    conn: _Connection, exc: BaseException, request: httpx.Request
) -> httpx.TransportError:
    if conn.timed_out:
        return httpx.ReadTimeout("timed out waiting for the server", request=request)
    return httpx.ReadError(str(exc) or type(exc).__name__, request=request)


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _deadline(timeout: float | None) -> float:
    return inf if timeout is None else trio.current_time() + timeout


def _has_token(value: bytes, token: bytes) -> bool:
    return any(part.strip() == token for part in value.lower().split(b","))


class _Body(httpx.AsyncByteStream):
    """A response body still on the wire. The connection goes back to the pool once the body
    was read to its end, and is closed if the consumer stops or fails before that."""

    def __init__(
        self,
        pool: TrioTransport,
        conn: _Connection,
        decoder: _Decoder,
        first: bytes,
        reusable: bool,
        request: httpx.Request,
    ) -> None:
        self._pool: TrioTransport | None = pool
        self._conn = conn
        self._decoder = decoder
        # Body bytes that came with the head, already decoded.
        self._first = first
        self._reusable = reusable
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        decoder = self._decoder
        feed = decoder.feed
        receive = conn.receive
        clock = trio.current_time
        timeout = conn.timeout
        piece, self._first = self._first, b""
        try:
            if piece:
                yield piece
            while True:
                conn.deadline = clock() + timeout
                try:
                    data = await receive(_RECEIVE_SIZE)
                except _NET_ERRORS as exc:
                    raise _read_error(conn, exc, self._request) from exc
                conn.deadline = inf
                if not data:
                    decoder.eof()
                    self._finish(True)
                    return
                piece = feed(data)
                # The read's bytes, framing included, are not held while the next read waits
                # (a stream spends its life there): only the decoded piece the consumer has.
                del data
                if decoder.done:
                    # Released before the last piece is handed out: a consumer that stops
                    # right after the final byte still leaves the connection reusable.
                    self._finish(True)
                    if piece:
                        yield piece
                    return
                if piece:
                    yield piece
        finally:
            self._finish(False)

    async def aclose(self) -> None:
        self._finish(False)

    def _finish(self, complete: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if complete and self._reusable and not self._decoder.extra:
            pool._release(self._conn)
        else:
            pool._discard(self._conn)


def _request_head(request: httpx.Request, proxy: Proxy | None) -> tuple[bytes, bool, bool]:
    """The request line and header block; whether the body is chunked; whether the request
    lets the connection be kept alive. Sent to a ``proxy`` (an http origin's), the target is in
    absolute form and the proxy's credentials go with it (RFC 9112 section 3.2.2)."""
    url = request.url
    target = url.raw_path if proxy is None else url.raw_scheme + b"://" + url.netloc + url.raw_path
    parts = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    chunked = False
    keep_alive = True
    has_host = False
    for name, value in request.headers.raw:
        # A CR or LF in a header would let a header value inject headers or a second request.
        if not name or name.translate(None, _TCHAR) or b"\r" in value or b"\n" in value:
            raise httpx.LocalProtocolError(f"invalid request header {name!r}", request=request)
        lower = name.lower()
        if lower == b"host":
            has_host = True
        elif lower == b"transfer-encoding":
            chunked = _has_token(value, b"chunked")
        elif lower == b"connection":
            keep_alive = not _has_token(value, b"close")
        parts += (name, b": ", value, b"\r\n")
    if not has_host:
        parts.insert(4, b"Host: " + url.netloc + b"\r\n")
    if proxy is not None and proxy.authorization is not None:
        parts += (b"Proxy-Authorization: ", proxy.authorization, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), chunked, keep_alive


def _head_end(buffer: bytes) -> tuple[int, int]:
    """Where the head ends and the body starts, or (-1, -1). A bare LF ends a line too
    (RFC 9112 §2.2 lets a recipient accept it)."""
    crlf = buffer.find(b"\n\r\n")
    lf = buffer.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, crlf + 3
    if lf >= 0:
        return lf, lf + 2
    return -1, -1


def _parse_head(head: bytes) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """Status, reason, version and fields of a response head (RFC 9112 §4, §5)."""
    lines = head.split(b"\n")
    status_line = lines[0].rstrip(b"\r")
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit() or code < b"100":
        raise httpx.RemoteProtocolError(f"malformed status line {status_line[:100]!r}")
    headers: list[tuple[bytes, bytes]] = []
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):
            # obs-fold: RFC 9112 §5.2 has a user agent replace it with a space.
            if not headers:
                raise httpx.RemoteProtocolError("response head starts with a folded line")
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip(b" \t"))
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, _TCHAR):
            raise httpx.RemoteProtocolError(f"malformed header line {line[:100]!r}")
        headers.append((name, value.strip(b" \t")))
    return int(code), reason.strip(b" "), version, headers


def _framing(
    method: str, status: int, version: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[_Decoder | None, bool]:
    """How the body is delimited (RFC 9112 §6.3), or None if there is none; and whether the
    connection may carry another request after it."""
    keep_alive = version == b"HTTP/1.1" and status != 101
    encoding: bytes | None = None
    length: bytes | None = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"transfer-encoding":
            encoding = value if encoding is None else encoding + b"," + value
        elif lower == b"content-length":
            if length is not None and value != length:
                raise httpx.RemoteProtocolError("conflicting Content-Length headers")
            length = value
        elif lower == b"connection" and _has_token(value, b"close"):
            keep_alive = False
    if method == "HEAD" or status < 200 or status in (204, 304):
        return None, keep_alive
    if encoding is not None:
        if encoding.lower().rsplit(b",", 1)[-1].strip() != b"chunked":
            return UntilCloseDecoder(), False
        # Both headers: a sign of smuggling; the message is read as chunked, the connection dropped.
        return ChunkedDecoder(), keep_alive and length is None
    if length is not None:
        if not length.isdigit() or len(length) > 18:
            raise httpx.RemoteProtocolError(f"malformed Content-Length {length[:40]!r}")
        return SizedDecoder(int(length)), keep_alive
    return UntilCloseDecoder(), False


async def _read_head(
    conn: _Connection, request: httpx.Request
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    """The final response's head, after any 1xx ones, and the bytes read past it.

    The whole head is read against the one deadline :meth:`_Watchdog.watch` stamped: a server
    that trickles bytes does not extend it. Raises _ServerClosed if the connection ended before
    any byte came.
    """
    buffer = b""
    received = False
    while True:
        end, start = _head_end(buffer)
        if end >= 0:
            status, reason, version, headers = _parse_head(buffer[:end])
            buffer = buffer[start:]
            if 100 <= status < 200 and status != 101:
                continue
            conn.deadline = inf
            return status, reason, version, headers, buffer
        if len(buffer) > _MAX_HEAD:
            raise httpx.RemoteProtocolError("response head too large", request=request)
        try:
            data = await conn.receive(_RECEIVE_SIZE)
        except _NET_ERRORS as exc:
            if conn.timed_out:
                raise FirstByteTimeout(
                    "timed out waiting for the response headers", request=request
                ) from exc
            error = _read_error(conn, exc, request)
            if received:
                raise error from exc
            raise _ServerClosed(error) from exc
        if not data:
            error = httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
            if received:
                raise error
            raise _ServerClosed(error)
        received = True
        buffer += data


class TrioTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over trio sockets with a keep-alive pool; use as
    ``httpx.AsyncClient(transport=TrioTransport())``.

    Connections are unlimited in number (nothing waits for one, so the pool timeout is moot);
    up to ``max_keepalive_connections`` idle ones are kept, each for ``keepalive_expiry`` s.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_keepalive_connections: int = 256,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._verify = verify
        self._ssl_context: ssl.SSLContext | None = None
        self._max_idle = max_keepalive_connections
        self._expiry = keepalive_expiry
        # Per (scheme, host, port, route), most recently used last: reuse takes the warmest one.
        self._idle: dict[_Key, deque[_Connection]] = {}
        self._idle_count = 0
        self._watchdog = _Watchdog()
        self._closed = False
        self._direct = Dial()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        dial: Dial = request.extensions.get(DIAL) or self._direct
        host = url.raw_host.decode("ascii")
        key = (scheme, host, url.port or (443 if scheme == "https" else 80), dial.key)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        head, chunked, keep_alive = _request_head(request, dial.proxy if scheme == "http" else None)
        stream = request.stream
        body = b"".join(stream) if isinstance(stream, httpx.ByteStream) else None
        conn = self._checkout(key)
        if conn is not None:
            try:
                return await self._exchange(
                    conn, request, head, body, chunked, keep_alive, timeouts
                )
            except _ServerClosed as closed:
                # The server dropped the idle connection: only a body we still hold can go again.
                if body is None:
                    raise closed.error from None
        conn = await self._connect(key, dial, request, timeouts.get("connect"))
        try:
            return await self._exchange(conn, request, head, body, chunked, keep_alive, timeouts)
        except _ServerClosed as closed:
            raise closed.error from None

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        self._idle_count = 0

    async def _exchange(
        self,
        conn: _Connection,
        request: httpx.Request,
        head: bytes,
        body: bytes | None,
        chunked: bool,
        keep_alive: bool,
        timeouts: dict[str, float | None],
    ) -> httpx.Response:
        try:
            try:
                await _send_request(conn, request, head, body, chunked, timeouts.get("write"))
            except _NET_ERRORS as exc:
                error = httpx.WriteError(str(exc) or type(exc).__name__, request=request)
                raise _ServerClosed(error) from exc
            read_timeout = timeouts.get("read")
            first_byte = timeouts.get("first_byte", read_timeout)
            if read_timeout is not None or first_byte is not None:
                self._watchdog.watch(conn, read_timeout, first_byte)
            status, reason, version, headers, rest = await _read_head(conn, request)
            decoder, reusable = _framing(request.method, status, version, headers)
            piece = decoder.feed(rest) if decoder is not None and rest else b""
        except BaseException:
            self._discard(conn)
            raise
        if decoder is not None and not decoder.done:
            stream: httpx.AsyncByteStream = _Body(
                self, conn, decoder, piece, reusable and keep_alive, request
            )
        else:
            # No body, or all of it came with the head: the connection is free already.
            clean = not rest if decoder is None else not decoder.extra
            if reusable and keep_alive and clean:
                self._release(conn)
            else:
                self._discard(conn)
            stream = httpx.ByteStream(piece)
        extensions = {"http_version": version, "reason_phrase": reason}
        return httpx.Response(status, headers=headers, stream=stream, extensions=extensions)

    async def _connect(
        self, key: _Key, dial: Dial, request: httpx.Request, timeout: float | None
    ) -> _Connection:
        """A new connection to the origin, through the dial's proxy if it has one; all of it,
        the proxy's tunnel and the TLS handshake too, within the connect timeout."""
        scheme, host, port, _ = key
        proxy = dial.proxy
        tcp: trio.SocketStream | None = None
        try:
            with trio.CancelScope(deadline=_deadline(timeout)):
                if proxy is None:
                    tcp = await trio.open_tcp_stream(host, port)
                else:
                    tcp = await _open_proxy(proxy, request)
                if scheme == "http":
                    conn = _Connection(key, tcp, tcp.socket)
                else:
                    if proxy is not None:
                        await _tunnel(tcp, host, port, proxy, request)
                    context = dial.ssl_context or self._default_context()
                    # SNI and the certificate check name the provider, tunnel or not.
                    tls = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
                    await tls.do_handshake()
                    conn = _Connection(key, tls, tcp.socket)
                tcp = None
                return conn
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except trio.BrokenResourceError as exc:
            # A failed TLS handshake: the SSL error (say, certificate verify failed) is the cause.
            raise httpx.ConnectError(str(exc.__cause__ or exc), request=request) from exc
        finally:
            if tcp is not None:
                tcp.socket.close()
        via = f" through proxy {proxy.shown}" if proxy is not None else ""
        raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}{via}", request=request)

    def _default_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = _make_ssl_context(self._verify)
        return self._ssl_context

    def _checkout(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = trio.current_time()
        while idle:
            conn = idle.pop()
            self._idle_count -= 1
            # Readable while idle: the server closed it (EOF) or sent something unasked.
            if now - conn.idle_since < self._expiry and not conn.socket.is_readable():
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection) -> None:
        self._watchdog.unwatch(conn)
        if self._closed or self._idle_count >= self._max_idle:
            conn.close()
            return
        now = trio.current_time()
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = deque()
        while idle and now - idle[0].idle_since >= self._expiry:
            idle.popleft().close()
            self._idle_count -= 1
        conn.idle_since = now
        idle.append(conn)
        self._idle_count += 1

    def _discard(self, conn: _Connection) -> None:
        self._watchdog.unwatch(conn)
        conn.close()


async def _open_proxy(proxy: Proxy, request: httpx.Request) -> trio.SocketStream:
    try:
        return await trio.open_tcp_stream(proxy.host, proxy.port)
    except OSError as exc:
        raise httpx.ProxyError(
            f"cannot connect to proxy {proxy.shown}: {exc}", request=request
        ) from exc


async def _tunnel(
    tcp: trio.SocketStream, host: str, port: int, proxy: Proxy, request: httpx.Request
) -> None:
    """Asks the proxy for a tunnel to ``host:port``: ``CONNECT`` with the authority-form target,
    answered by any 2xx, after which the bytes are the origin's (RFC 9110 section 9.3.6)."""
    authority = _authority(host, port).encode("ascii")
    parts = [b"CONNECT ", authority, b" HTTP/1.1\r\nHost: ", authority, b"\r\n"]
    if proxy.authorization is not None:
        parts += (b"Proxy-Authorization: ", proxy.authorization, b"\r\n")
    parts.append(b"\r\n")
    where = f"proxy {proxy.shown}"
    tunnel = f"the tunnel to {authority.decode()}"
    buffer = b""
    try:
        await tcp.send_all(b"".join(parts))
        while True:
            end, start = _head_end(buffer)
            if end >= 0:
                break
            if len(buffer) > _MAX_HEAD:
                raise httpx.ProxyError(
                    f"{where} answered CONNECT with a head too large", request=request
                )
            data = await tcp.receive_some(_RECEIVE_SIZE)
            if not data:
                raise httpx.ProxyError(
                    f"{where} closed the connection instead of opening {tunnel}", request=request
                )
            buffer += data
        status, reason, _, _ = _parse_head(buffer[:end])
    except _NET_ERRORS as exc:
        raise httpx.ProxyError(
            f"{where} failed while opening {tunnel}: {exc}", request=request
        ) from exc
    except httpx.RemoteProtocolError as exc:
        raise httpx.ProxyError(f"{where} answered CONNECT with {exc}", request=request) from exc
    if not 200 <= status < 300:
        answer = f"{status} {reason.decode('latin-1')}".strip()
        raise httpx.ProxyError(f"{where} refused {tunnel}: {answer}", request=request)
    if buffer[start:]:
        # Nothing may come before the TLS handshake the client starts.
        raise httpx.ProxyError(f"{where} sent data on {tunnel} before TLS began", request=request)


async def _send_request(
    conn: _Connection,
    request: httpx.Request,
    head: bytes,
    body: bytes | None,
    chunked: bool,
    timeout: float | None,
) -> None:
    """Head and body in one send when the body is small; a streamed body part by part,
    each send with its own write timeout."""
    send = conn.stream.send_all
    if body is None:
        await _write(send, head, timeout, request)
        stream = request.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        async for part in stream:
            if part:
                await _write(
                    send, b"%x\r\n%b\r\n" % (len(part), part) if chunked else part, timeout, request
                )
        if chunked:
            await _write(send, b"0\r\n\r\n", timeout, request)
        return
    if chunked:
        body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    if len(body) <= _JOIN_LIMIT:
        await _write(send, head + body, timeout, request)
    else:
        await _write(send, head, timeout, request)
        await _write(send, body, timeout, request)


async def _write(
    send: Callable[[bytes], Awaitable[None]],
    data: bytes,
    timeout: float | None,
    request: httpx.Request,
) -> None:
    with trio.CancelScope(deadline=_deadline(timeout)):
        await send(data)
        return
    raise httpx.WriteTimeout("timed out sending the request", request=request)

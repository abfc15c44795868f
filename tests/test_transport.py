"""TrioTransport through httpx.AsyncClient, as the router uses it, against h11 and raw servers."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import StartFake, collect, free_port
from tests.fakeserver import Reply
from trio_router.transport import ChunkedDecoder, SizedDecoder, TrioTransport

SSE = [b'data: {"n":1}\n\n', b'data: {"n":2}\n\n', b"data: [DONE]\n\n"]


def client(transport: TrioTransport | None = None, **timeouts: float) -> httpx.AsyncClient:
    timeout = httpx.Timeout(5.0, **timeouts) if timeouts else httpx.Timeout(5.0)
    return httpx.AsyncClient(transport=transport or TrioTransport(), timeout=timeout)


def chunked(*chunks: bytes, ext: bytes = b"", trailers: bytes = b"") -> bytes:
    frames = [b"%x%b\r\n%b\r\n" % (len(c), ext, c) for c in chunks if c]
    return b"".join(frames) + b"0\r\n" + trailers + b"\r\n"


# -- the chunked decoder, sans-IO ----------------------------------------------------------------


def decode(pieces: list[bytes]) -> tuple[bytes, ChunkedDecoder]:
    decoder = ChunkedDecoder()
    out = b"".join(decoder.feed(piece) for piece in pieces)
    return out, decoder


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=40), max_size=8),
    ext=st.sampled_from([b"", b";name=value", b' ; a="b;c"', b";x"]),
    trailers=st.sampled_from([b"", b"Expires: never\r\n", b"A: 1\r\nB: 2\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_chunked_decoder_any_split(
    chunks: list[bytes], ext: bytes, trailers: bytes, cuts: list[int]
) -> None:
    wire = chunked(*chunks, ext=ext, trailers=trailers)
    points = sorted({c % (len(wire) + 1) for c in cuts})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    out, decoder = decode(pieces)
    assert out == b"".join(chunks)
    assert decoder.done and not decoder.extra


def test_chunked_decoder_every_byte_alone() -> None:
    body = [b"hello ", b"x" * 300, b"\r\n\r\n", b"world"]
    wire = chunked(*body, ext=b";foo=bar", trailers=b"Checksum: abc\r\n")
    out, decoder = decode([wire[i : i + 1] for i in range(len(wire))])
    assert out == b"".join(body)
    assert decoder.done


def test_chunked_decoder_joins_the_chunks_of_one_read_and_passes_partial_data_on() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"3\r\nabc\r\n2\r\nde\r\n5\r\nfg") == b"abcdefg"
    assert decoder.feed(b"hi") == b"hi"
    assert decoder.feed(b"j\r\n0\r\n\r\n") == b"j"
    assert decoder.done and not decoder.extra


def test_chunked_decoder_notes_bytes_after_the_end() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"1\r\na\r\n0\r\n\r\nHTTP/1.1") == b"a"
    assert decoder.done and decoder.extra


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\n",
        b"-1\r\n",
        b"0x5\r\nhello\r\n",
        b" 5\r\nhello\r\n",
        b"1_0\r\n",
        b"3\r\nabcXY",
        b"3\r\nabc\rX",
        b"1" * 20 + b"\r\n",
        b"1" * 5000,
    ],
)
def test_chunked_decoder_rejects_malformed_framing(wire: bytes) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        ChunkedDecoder().feed(wire)


def test_sized_decoder_stops_at_the_length() -> None:
    decoder = SizedDecoder(5)
    assert decoder.feed(b"abc") == b"abc" and not decoder.done
    assert decoder.feed(b"defg") == b"de"
    assert decoder.done and decoder.extra


# -- a raw loopback server, for what h11 would not send ------------------------------------------


class Peer:
    """One server-side connection: reads requests, writes bytes exactly as told."""

    def __init__(self, stream: trio.abc.Stream, index: int) -> None:
        self.stream = stream
        self.index = index
        self.buffer = b""

    async def _more(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.buffer += data
        return bool(data)

    async def request(self) -> tuple[bytes, bytes] | None:
        """The next request's head and body, or None at EOF."""
        while b"\r\n\r\n" not in self.buffer:
            if not await self._more():
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }
        if fields.get(b"transfer-encoding") == b"chunked":
            while not self.buffer.endswith(b"0\r\n\r\n"):
                if not await self._more():
                    return None
            decoder = ChunkedDecoder()
            body = decoder.feed(self.buffer)
            self.buffer = b""
            return head, body
        length = int(fields.get(b"content-length", b"0"))
        while len(self.buffer) < length:
            if not await self._more():
                return None
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return head, body

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def wait_eof(self) -> None:
        while await self.stream.receive_some(65536):
            pass


Script = Callable[[Peer], Awaitable[None]]


@dataclass
class RawServer:
    """Runs ``script`` for each connection; counts connections and records which closed."""

    script: Script
    port: int = 0
    connections: int = 0
    closed: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        peer = Peer(stream, self.connections)
        try:
            await self.script(peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.closed.append(peer.index)
            await stream.aclose()


StartRaw = Callable[[Script], Awaitable[RawServer]]


@pytest.fixture
async def start_raw(nursery: trio.Nursery) -> StartRaw:
    async def start(script: Script) -> RawServer:
        server = RawServer(script)
        listeners = await nursery.start(partial(trio.serve_tcp, server._serve, 0, host="127.0.0.1"))
        server.port = listeners[0].socket.getsockname()[1]
        return server

    return start


def reply(body: bytes, *headers: bytes, status: bytes = b"200 OK") -> bytes:
    head = b"HTTP/1.1 " + status + b"\r\n" + b"".join(h + b"\r\n" for h in headers)
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


async def serve_forever(peer: Peer, answer: bytes) -> None:
    """Answer every request on the connection with the same bytes."""
    while await peer.request() is not None:
        await peer.send(answer)


async def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.005)


# -- requests and bodies -------------------------------------------------------------------------


async def test_json_round_trip_over_content_length(start_fake: StartFake) -> None:
    fake = await start_fake(lambda request: Reply.json({"echo": request.json()}, status=201))
    async with client() as http:
        response = await http.post(fake.url + "/v1/chat?beta=true", json={"model": "m", "n": [1]})
    assert response.status_code == 201
    assert response.json() == {"echo": {"model": "m", "n": [1]}}
    assert response.http_version == "HTTP/1.1"
    seen = fake.requests[0]
    assert (seen.method, seen.target) == ("POST", "/v1/chat?beta=true")
    assert seen.headers["host"] == f"127.0.0.1:{fake.port}"
    assert seen.headers["content-type"] == "application/json"


async def test_sse_stream_arrives_chunk_by_chunk(start_fake: StartFake) -> None:
    fake = await start_fake(lambda request: Reply.sse(SSE, delay=0.02))
    async with client() as http, http.stream("POST", fake.url, json={}) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        pieces = [piece async for piece in response.aiter_raw()]
    assert pieces == SSE


async def test_chunked_body_written_a_byte_at_a_time(start_raw: StartRaw) -> None:
    body = [b"data: one\n\n", b"x" * 70, b"\r\n"]
    wire = chunked(*body, ext=b";ext=1", trailers=b"X-Trailer: yes\r\n")

    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(len(wire)):
            await peer.send(wire[i : i + 1])
            await trio.sleep(0.001)
        await serve_forever(peer, reply(b"again"))

    server = await start_raw(script)
    async with client() as http:
        async with http.stream("GET", server.url) as response:
            assert await collect(response.aiter_raw()) == b"".join(body)
        # The body ended cleanly: the next request goes over the same connection.
        assert (await http.get(server.url)).content == b"again"
    assert server.connections == 1


async def test_body_read_until_close(start_raw: StartRaw) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ")
        await trio.sleep(0.01)
        await peer.send(b"part two")

    server = await start_raw(script)
    async with client() as http:
        assert (await http.get(server.url)).content == b"part one, part two"
        assert (await http.get(server.url)).content == b"part one, part two"
    assert server.connections == 2


async def test_streamed_request_body_goes_chunked(start_fake: StartFake) -> None:
    fake = await start_fake(lambda request: Reply.json({"got": request.body.decode()}))

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"alpha ", b"", b"beta"):
            yield part

    async with client() as http:
        response = await http.post(fake.url, content=parts())
    assert response.json() == {"got": "alpha beta"}
    assert fake.requests[0].headers["transfer-encoding"] == "chunked"


async def test_large_body_and_many_headers(start_fake: StartFake) -> None:
    fake = await start_fake(lambda request: Reply.json({"size": len(request.body)}))
    headers = {f"x-h{i}": "v" * 50 for i in range(100)}
    async with client() as http:
        response = await http.post(fake.url, content=b"z" * 300_000, headers=headers)
    assert response.json() == {"size": 300_000}
    assert fake.requests[0].headers["x-h99"] == "v" * 50


async def test_informational_responses_are_skipped(start_raw: StartRaw) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
        )
        await peer.send(reply(b"final", b"x-final: 1", status=b"200 Fine"))

    server = await start_raw(script)
    async with client() as http:
        response = await http.get(server.url)
    assert (response.status_code, response.content) == (200, b"final")
    assert response.reason_phrase == "Fine"
    assert response.headers["x-final"] == "1"
    assert "link" not in response.headers


async def test_bodiless_responses_keep_the_connection(start_raw: StartRaw) -> None:
    async def script(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            if request[0].startswith(b"HEAD"):
                await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
            elif request[0].startswith(b"GET /204"):
                await peer.send(b"HTTP/1.1 204 No Content\r\n\r\n")
            else:
                await peer.send(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 7\r\n\r\n")

    server = await start_raw(script)
    async with client() as http:
        head = await http.head(server.url)
        no_content = await http.get(server.url + "/204")
        not_modified = await http.get(server.url + "/304")
    assert [r.status_code for r in (head, no_content, not_modified)] == [200, 204, 304]
    assert head.content == no_content.content == not_modified.content == b""
    assert head.headers["content-length"] == "1000"
    assert server.connections == 1


async def test_obsolete_line_folding_and_bare_lf_heads(start_raw: StartRaw) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\nx-folded: one\n  two\ncontent-length: 2\n\nok")

    server = await start_raw(script)
    async with client() as http:
        response = await http.get(server.url)
    assert response.headers["x-folded"] == "one two"
    assert response.content == b"ok"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nnope\r\n",
    ],
)
async def test_malformed_responses_raise_remote_protocol_error(
    start_raw: StartRaw, answer: bytes
) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        await peer.wait_eof()

    server = await start_raw(script)
    async with client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(server.url)
    # The broken connection is closed, not pooled.
    await wait_for(lambda: server.closed == [1])


async def test_header_injection_is_refused(start_fake: StartFake) -> None:
    fake = await start_fake(lambda request: Reply.json({}))
    async with client() as http:
        with pytest.raises(httpx.LocalProtocolError):
            await http.get(fake.url, headers={"x-evil": "a\r\nx-injected: 1"})
    assert fake.requests == []


# -- the pool ------------------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(start_raw: StartRaw) -> None:
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            await peer.send(chunked(b'{"a": 1}'))

    server = await start_raw(script)
    async with client() as http:
        for _ in range(3):
            async with http.stream("POST", server.url, json={"q": 1}) as response:
                assert await response.aread() == b'{"a": 1}'
    assert server.connections == 1


async def test_stopping_at_the_last_byte_still_reuses_the_connection(start_raw: StartRaw) -> None:
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            await peer.send(b"%x\r\n%b\r\n" % (len(SSE[0]), SSE[0]))
            await trio.sleep(0.01)
            # The last event and the end of the body in one segment.
            await peer.send(chunked(SSE[-1]))

    server = await start_raw(script)
    async with client() as http:
        for _ in range(2):
            async with http.stream("POST", server.url, json={}) as response:
                async for piece in response.aiter_raw():
                    if piece.endswith(b"[DONE]\n\n"):
                        break
    assert server.connections == 1


async def test_server_connection_close_is_honoured(start_raw: StartRaw) -> None:
    server = await start_raw(partial(serve_forever, answer=reply(b"x", b"connection: close")))
    async with client() as http:
        await http.get(server.url)
        await http.get(server.url)
    assert server.connections == 2


async def test_stale_pooled_connection_is_retried_once(start_raw: StartRaw) -> None:
    bodies: list[tuple[int, bytes]] = []

    async def script(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            bodies.append((peer.index, request[1]))
            if len(bodies) == 2:
                # The server drops the idle connection just as the next request comes.
                return
            await peer.send(reply(b"answer %d" % len(bodies)))

    server = await start_raw(script)
    async with client() as http:
        assert (await http.post(server.url, content=b"one")).content == b"answer 1"
        assert (await http.post(server.url, content=b"two")).content == b"answer 3"
    assert bodies == [(1, b"one"), (1, b"two"), (2, b"two")]


async def test_stale_connection_with_a_streamed_body_is_not_retried(start_raw: StartRaw) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(reply(b"first"))
        await peer.request()

    async def parts() -> AsyncIterator[bytes]:
        yield b"once"

    server = await start_raw(script)
    async with client() as http:
        await http.get(server.url)
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(server.url, content=parts())
    assert server.connections == 1


async def test_connection_closed_while_idle_is_not_used(start_raw: StartRaw) -> None:
    async def script(peer: Peer) -> None:
        request = await peer.request()
        assert request is not None
        await peer.send(reply(request[1]))

    async def parts() -> AsyncIterator[bytes]:
        yield b"streamed"

    server = await start_raw(script)
    async with client() as http:
        await http.get(server.url)
        await wait_for(lambda: server.closed == [1])
        # A streamed body cannot be sent twice: this passes only if the dead connection is
        # recognised before the request goes out on it.
        assert (await http.post(server.url, content=parts())).content == b"streamed"
    assert server.connections == 2


async def test_idle_connections_expire(start_raw: StartRaw) -> None:
    server = await start_raw(partial(serve_forever, answer=reply(b"x")))
    async with client(TrioTransport(keepalive_expiry=0.05)) as http:
        await http.get(server.url)
        await trio.sleep(0.1)
        await http.get(server.url)
    assert server.connections == 2


async def test_idle_pool_is_bounded(start_raw: StartRaw) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await trio.sleep(0.05)
        await peer.send(reply(b"x"))
        await serve_forever(peer, reply(b"x"))

    server = await start_raw(script)
    async with client(TrioTransport(max_keepalive_connections=1)) as http:
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(http.get, server.url)
        assert server.connections == 3
        await wait_for(lambda: len(server.closed) == 2)
        await http.get(server.url)
    assert server.connections == 3


async def test_aclose_closes_pooled_connections(start_raw: StartRaw) -> None:
    server = await start_raw(partial(serve_forever, answer=reply(b"x")))
    transport = TrioTransport()
    async with client(transport) as http:
        await http.get(server.url)
        assert server.closed == []
    await wait_for(lambda: server.closed == [1])


async def sse_then_hang(peer: Peer) -> None:
    """Three SSE events, then an open stream until the client goes away."""
    await peer.request()
    frames = b"".join(b"%x\r\n%b\r\n" % (len(event), event) for event in SSE)
    await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + frames)
    await peer.wait_eof()


async def test_early_close_does_not_return_the_connection(start_raw: StartRaw) -> None:
    server = await start_raw(sse_then_hang)
    async with client() as http:
        for expected in ([1], [1, 2]):
            async with http.stream("POST", server.url, json={}) as response:
                async for _ in response.aiter_raw():
                    break
            await wait_for(lambda: server.closed == expected)  # noqa: B023
    assert server.connections == 2


async def test_consumer_error_closes_the_connection(start_raw: StartRaw) -> None:
    server = await start_raw(sse_then_hang)
    async with client() as http:
        with pytest.raises(ValueError, match="translator failed"):
            async with http.stream("POST", server.url, json={}) as response:
                async for _ in response.aiter_raw():
                    raise ValueError("translator failed")
        await wait_for(lambda: server.closed == [1])


# -- failures and timeouts -----------------------------------------------------------------------


async def test_read_timeout_mid_stream(start_fake: StartFake) -> None:
    fake = await start_fake(lambda request: Reply.sse(SSE[:1], then="hang"))
    async with client(read=0.3) as http, http.stream("POST", fake.url, json={}) as response:
        pieces = response.aiter_raw()
        assert await anext(pieces) == SSE[0]
        started = trio.current_time()
        with trio.fail_after(2), pytest.raises(httpx.ReadTimeout):
            await anext(pieces)
        elapsed = trio.current_time() - started
    assert 0.3 <= elapsed < 0.5
    await wait_for(lambda: len(fake.closed_at) == 1)


async def test_read_timeout_waiting_for_the_head(start_raw: StartRaw) -> None:
    server = await start_raw(lambda peer: peer.wait_eof())
    async with client(read=0.2) as http:
        started = trio.current_time()
        with trio.fail_after(2), pytest.raises(httpx.ReadTimeout):
            await http.get(server.url)
    assert 0.2 <= trio.current_time() - started < 0.4
    await wait_for(lambda: server.closed == [1])


async def test_slow_consumer_is_not_a_read_timeout(start_fake: StartFake) -> None:
    fake = await start_fake(lambda request: Reply.sse(SSE, delay=0.05))
    async with client(read=0.2) as http, http.stream("POST", fake.url, json={}) as response:
        pieces = []
        async for piece in response.aiter_raw():
            pieces.append(piece)
            # The time the consumer spends between chunks is not spent reading.
            await trio.sleep(0.3)
    assert b"".join(pieces) == b"".join(SSE)


async def test_read_timeouts_differ_per_request(start_fake: StartFake) -> None:
    fake = await start_fake(lambda request: Reply.sse(SSE[:1], then="hang"))
    transport = TrioTransport()
    async with client(transport, read=10) as slow, client(transport, read=0.2) as fast:

        async def hang_slowly() -> None:
            async with slow.stream("GET", fake.url) as response:
                await response.aread()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hang_slowly)
            await fake.hanging.wait()
            started = trio.current_time()
            with trio.fail_after(2), pytest.raises(httpx.ReadTimeout):
                await fast.get(fake.url)
            assert trio.current_time() - started < 0.4
            nursery.cancel_scope.cancel()


async def test_connect_refused_is_a_connect_error() -> None:
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{free_port()}/")


async def test_connect_timeout() -> None:
    # A listener that never accepts and has a full backlog drops further SYNs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        async with client(connect=0.2) as http:
            started = trio.current_time()
            with trio.fail_after(2), pytest.raises(httpx.ConnectTimeout):
                await http.get(f"http://127.0.0.1:{port}/")
        assert trio.current_time() - started < 0.5
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_write_timeout(start_raw: StartRaw) -> None:
    never_reads = trio.Event()
    server = await start_raw(lambda peer: never_reads.wait())
    async with client(write=0.2) as http:
        with trio.fail_after(5), pytest.raises(httpx.WriteTimeout):
            await http.post(server.url, content=b"x" * 64_000_000)
    never_reads.set()


async def test_cut_mid_chunked_body(start_fake: StartFake) -> None:
    fake = await start_fake(lambda request: Reply.sse(SSE[:2], then="cut"))
    async with client() as http, http.stream("POST", fake.url, json={}) as response:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await collect(response.aiter_raw())


async def test_cut_mid_content_length_body(start_raw: StartRaw) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")

    server = await start_raw(script)
    async with client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(server.url)


async def test_no_response_at_all(start_raw: StartRaw) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()

    server = await start_raw(script)
    async with client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.get(server.url)


async def test_cancel_closes_the_upstream_socket_at_once(start_fake: StartFake) -> None:
    fake = await start_fake(lambda request: Reply.sse(SSE[:1], then="hang"))
    async with client() as http:
        with trio.CancelScope() as scope:
            async with http.stream("POST", fake.url, json={}) as response:
                async for _ in response.aiter_raw():
                    await fake.hanging.wait()
                    cancelled_at = trio.current_time()
                    scope.cancel()
        await wait_for(lambda: len(fake.closed_at) == 1)
    assert fake.closed_at[0] - cancelled_at < 0.1


async def test_cancel_while_waiting_for_the_head(start_raw: StartRaw) -> None:
    server = await start_raw(lambda peer: peer.wait_eof())
    async with client() as http:
        with trio.move_on_after(0.1):
            await http.get(server.url)
        await wait_for(lambda: server.closed == [1], timeout=0.2)


# -- TLS and IPv6 --------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_with_keep_alive(nursery: trio.Nursery, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    connections: list[int] = []

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        connections.append(1)
        peer = Peer(stream, len(connections))
        try:
            while await peer.request() is not None:
                await peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                await peer.send(chunked(b"secure ", b"hello"))
        except trio.BrokenResourceError:
            pass

    listeners = await nursery.start(
        partial(trio.serve_ssl_over_tcp, handle, 0, server_context, host="127.0.0.1")
    )
    port = listeners[0].transport_listener.socket.getsockname()[1]
    url = f"https://localhost:{port}/"
    trusting = ssl.create_default_context(cafile=str(cert))
    async with client(TrioTransport(verify=trusting)) as http:
        assert (await http.get(url)).content == b"secure hello"
        assert (await http.get(url)).content == b"secure hello"
    assert connections == [1]
    async with client(TrioTransport(verify=False)) as http:
        assert (await http.get(url)).content == b"secure hello"
    async with client() as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(url)


async def test_ipv6_loopback(nursery: trio.Nursery) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")

    async def handle(stream: trio.SocketStream) -> None:
        await serve_forever(Peer(stream, 1), reply(b"six"))

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="::1"))
    port = listeners[0].socket.getsockname()[1]
    async with client() as http:
        assert (await http.get(f"http://[::1]:{port}/")).content == b"six"


async def test_empty_put_sends_content_length_zero(start_fake: StartFake) -> None:
    fake = await start_fake(lambda request: Reply.json({"ok": True}))
    async with client() as http:
        response = await http.put(fake.url + "/x", content=b"")
    assert response.json() == {"ok": True}
    seen = fake.requests[0]
    assert (seen.method, seen.headers["content-length"], seen.body) == ("PUT", "0", b"")

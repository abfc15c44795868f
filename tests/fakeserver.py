"""A scriptable HTTP/1.1 server on loopback, the base of every fake provider in the tests.

Built on trio and h11 so a test controls the wire exactly: status, headers, how the body is cut
into chunks and when, a connection cut mid-body, or a stream that hangs until the peer goes away
(and the moment it went away, to check that the router closed its upstream connection).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import h11
import trio


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    # The body as the chunks to write, in order; each may be preceded by a pause.
    chunks: Sequence[bytes] = ()
    delay: float = 0.0
    # After the chunks: "end" finishes the body, "cut" drops the connection mid-body,
    # "hang" keeps the response open until the client closes the connection.
    then: str = "end"

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> Reply:
        body = json.dumps(data).encode()
        return cls(status, [("content-type", "application/json"), *headers], [body])

    @classmethod
    def sse(
        cls,
        chunks: Sequence[bytes],
        *,
        delay: float = 0.0,
        then: str = "end",
        content_type: str = "text/event-stream",
    ) -> Reply:
        return cls(200, [("content-type", content_type)], list(chunks), delay, then)


Handler = Callable[[Request], Reply | Awaitable[Reply]]


@dataclass
class FakeServer:
    handler: Handler
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    # trio.current_time() at which a hanging response saw its client go away.
    closed_at: list[float] = field(default_factory=list)
    hanging: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, nursery: trio.Nursery) -> FakeServer:
        listeners = await nursery.start(
            partial(trio.serve_tcp, self._connection, 0, host="127.0.0.1")
        )
        self.port = listeners[0].socket.getsockname()[1]
        return self

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(conn, stream)
                if request is None:
                    return
                self.requests.append(request)
                reply = self.handler(request)
                if not isinstance(reply, Reply):
                    reply = await reply
                if not await self._write_reply(conn, stream, reply):
                    return
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            await stream.aclose()

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return None
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = {k.decode().lower(): v.decode() for k, v in head.headers}
                return Request(head.method.decode(), head.target.decode(), headers, bytes(body))
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _write_reply(
        self, conn: h11.Connection, stream: trio.SocketStream, reply: Reply
    ) -> bool:
        headers = list(reply.headers)
        if reply.then == "end" and len(reply.chunks) == 1 and reply.delay == 0:
            headers.append(("content-length", str(len(reply.chunks[0]))))
        await stream.send_all(conn.send(h11.Response(status_code=reply.status, headers=headers)))
        for chunk in reply.chunks:
            if reply.delay:
                await trio.sleep(reply.delay)
            await stream.send_all(conn.send(h11.Data(data=chunk)))
        if reply.then == "cut":
            return False
        if reply.then == "hang":
            self.hanging.set()
            while await stream.receive_some(65536):
                pass
            self.closed_at.append(trio.current_time())
            return False
        await stream.send_all(conn.send(h11.EndOfMessage()))
        return True

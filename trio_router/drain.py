"""Graceful drain: what a worker does between SIGTERM and its exit.

:class:`Draining` wraps the whole ASGI app (workers.py serves it). Once :meth:`Drain.begin` is
called the worker's listening socket is closed by the serve loop, and here:

- ``GET /`` (health) answers 503 with the health shape and ``"status": "draining"``, so that a
  load balancer probing it takes the worker out of rotation;
- any other request still arriving on an open keep-alive connection is served, under the same
  deadline, with ``connection: close``: the client's next connection reaches a live worker.
  Refusing it instead would reach the client as an error: nginx may not pass a POST it has
  already sent on to another router (``proxy_next_upstream``, non-idempotent requests), and
  nginx holds idle keep-alive connections to every router;
- requests already in flight go on until the drain's deadline (``DRAIN_TIMEOUT_MS``); then each
  is cancelled (which closes its upstream request) and its client gets an SSE ``error`` event
  (a stream) or a 503 ``overloaded_error`` (no byte sent yet). Usage is recorded by the handler
  on its way out (messages.py records in ``finally``, shielded from the cancellation), before
  the error event is sent.

:meth:`Drain.idle` is set when the last request in flight ends: the worker exits then, not at
the deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec
import trio

from . import __version__
from .anthropic import ErrorBody, ErrorEvent
from .errors import error_envelope
from .sse import encode_event

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CUT = "the gateway is shutting down and this request ran past its drain timeout: retry it"
# Connection: close makes h11 (and hypercorn) close the connection after this response
# (RFC 9112 section 9.6), so a keep-alive client reconnects to a live worker.
_CLOSE = (b"connection", b"close")
_RETRY_AFTER = (b"retry-after", b"1")


class Drain:
    """One worker's drain: when it began, when in-flight requests are cut, and their count."""

    def __init__(self) -> None:
        self.deadline: float | None = None  # trio clock; None until SIGTERM
        self.in_flight = 0
        self.idle = trio.Event()  # set once draining with no request in flight
        self._scopes: set[trio.CancelScope] = set()

    @property
    def draining(self) -> bool:
        return self.deadline is not None

    def begin(self, timeout: float) -> None:
        """Refuse new requests from now on; cut those in flight ``timeout`` seconds from now.
        A second call (a second SIGTERM or Ctrl-C) moves the cut to now."""
        now = trio.current_time()
        self.deadline = now if self.deadline is not None else now + timeout
        for scope in self._scopes:
            scope.deadline = self.deadline
        if not self.in_flight:
            self.idle.set()

    async def serve(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request under the drain's deadline; answer it if the deadline cuts it."""
        response = _Response(send, close=self.draining)
        self.in_flight += 1
        cancel = trio.CancelScope()
        if self.deadline is not None:
            cancel.deadline = self.deadline
        self._scopes.add(cancel)
        try:
            with cancel:
                await app(scope, receive, response.send)
            if cancel.cancelled_caught:
                await response.cut()
        finally:
            self._scopes.discard(cancel)
            self.in_flight -= 1
            if self.draining and not self.in_flight:
                self.idle.set()


class _Response:
    """What the app has sent so far, so that a cut request can still be answered properly."""

    __slots__ = ("_send", "close", "complete", "sse", "started")

    def __init__(self, send: Send, *, close: bool = False) -> None:
        self._send = send
        self.close = close  # a request that arrived while draining: its connection ends with it
        self.started = self.sse = self.complete = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            if self.close:
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, _CLOSE]}
            self.sse = any(
                name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                for name, value in message.get("headers", ())
            )
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        await self._send(message)

    async def cut(self) -> None:
        if self.complete:
            return
        if not self.started:
            await _send_error(self._send, 503, "overloaded_error", CUT)
            return
        # Anthropic's stream error event: `event: error` with {"type": "error", "error":
        # {"type": "overloaded_error", ...}} (docs.anthropic.com, Messages streaming, Error
        # events). A response that is not a stream can only be ended where it was cut.
        body = encode_event(ErrorEvent(ErrorBody("overloaded_error", CUT))) if self.sse else b""
        await self._send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_error(send: Send, status: int, error_type: str, message: str) -> None:
    await _send_json(send, status, error_envelope(error_type, message))


async def _send_json(send: Send, status: int, body: bytes, *, head: bool = False) -> None:
    """``body`` as JSON; its length only for a HEAD request (RFC 9110 section 9.3.2)."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        _CLOSE,
        _RETRY_AFTER,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


class Draining:
    """The app wrapped so that every HTTP request passes the worker's :class:`Drain`."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: the app's start-up and shutdown
            await self.app(scope, receive, send)
        elif self.drain.draining and scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            health = {"status": "draining", "service": "trio-router", "version": __version__}
            body = msgspec.json.encode(health)
            await _send_json(send, 503, body, head=scope["method"] == "HEAD")
        else:
            await self.drain.serve(self.app, scope, receive, send)

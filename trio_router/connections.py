"""ASGI middleware in front of the Quart-served routes: body limits, and connections that close.

It works around two gaps of the libraries (the raw ``/v1/messages`` handler has neither):

- Hypercorn (0.18) finishes a response from inside the app's last ``send``: it then sends the
  app ``http.disconnect`` and closes the connection (``Connection: close``, HTTP/1.0, a body
  left unread) or readies it for the next request. Quart-trio cancels its request task as soon
  as it sees that disconnect, which is while that task is still inside hypercorn's send: the
  connection is never closed or recycled, and hangs until the client gives up. The last send
  of a response is therefore shielded from cancellation.
- Quart waits for a body without a deadline when a handler awaits ``request.body`` (its
  ``BODY_TIMEOUT`` applies only to ``get_data()`` and form parsing), and nothing counts the
  bytes that unfinished bodies hold across connections. Here the body passes through the
  worker's :class:`BodyLimits`: a late or over-budget body ends the request as if the client
  had left, and the client is answered here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from .errors import RouterError
from .intake import BodyLimits
from .logs import logger

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Any ASGI app: Quart types its own with hypercorn's TypedDict events.
ASGIApp = Callable[..., Awaitable[None]]

_DISCONNECT: Message = {"type": "http.disconnect"}
_CLOSE = (b"connection", b"close")


class Connections:
    """Wraps an ASGI app; see the module docstring for what it adds."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send, self.limits)
        try:
            await self.app(scope, exchange.receive, exchange.send)
            failure = exchange.failure
            if failure is not None and not exchange.started:
                logger.info("%s %s %d %s", scope["method"], scope["path"], failure.status, failure)
                await exchange.refuse(failure)
        finally:
            exchange.give_back()


class _Exchange:
    """One request: its body's progress against the limits, and whether the answer began."""

    __slots__ = (
        "_receive",
        "_send",
        "complete",
        "deadline",
        "failure",
        "held",
        "limits",
        "scope",
        "size",
        "started",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, limits: BodyLimits) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.limits = limits
        self.deadline = trio.current_time() + limits.timeout
        self.complete = False  # the last body message has arrived
        self.started = False  # response headers sent
        self.failure: RouterError | None = None
        self.size = 0  # body bytes so far
        self.held = 0  # of which counted in the worker's budget

    async def receive(self) -> Message:
        if self.complete:
            return await self._receive()
        if self.failure is not None:
            return _DISCONNECT
        with trio.move_on_at(self.deadline):
            message = await self._receive()
            if message["type"] == "http.request":
                self._count(message)
                if self.failure is not None:
                    return _DISCONNECT
            return message
        self.failure = self.limits.timed_out()
        return _DISCONNECT

    def _count(self, message: Message) -> None:
        body = message.get("body", b"")
        if body:
            self.size += len(body)
            if self.size > self.limits.max_bytes:
                self.failure = self.limits.too_large()
                return
            try:
                self.limits.take(len(body))
            except RouterError as error:
                self.failure = error
                return
            self.held += len(body)
        if not message.get("more_body", False):
            self.complete = True
            self.give_back()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            if not self.complete and _has_body(self.scope):
                # Answered before its body was read (401, 404, 413...): the rest of the body
                # is still coming, so this connection cannot carry another request.
                message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
        elif kind == "http.response.body" and not message.get("more_body", False):
            with trio.CancelScope(shield=True):
                await self._send(message)
            return
        await self._send(message)

    async def refuse(self, error: RouterError) -> None:
        """Answer ``error`` while the rest of the body is read and dropped: hypercorn blocks on
        a full queue of unread body messages before it closes the connection."""
        headers = [(b"content-type", b"application/json")]
        headers.extend((k.encode(), v.encode()) for k, v in error.headers.items())
        body = error.envelope()
        headers.append((b"content-length", str(len(body)).encode()))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drain)
            start = {"type": "http.response.start", "status": error.status, "headers": headers}
            await self._send(start)
            await self.send({"type": "http.response.body", "body": body})
            nursery.cancel_scope.cancel()

    async def _drain(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass

    def give_back(self) -> None:
        self.limits.give_back(self.held)
        self.held = 0


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False

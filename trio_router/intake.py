"""Reading a client's request body and decoding it as a Messages API request.

The first stage of the data flow, shared by ``/v1/messages`` (raw ASGI) and ``count_tokens``:
whatever a client sends, it ends here as a :class:`MessagesRequest` or as a 4xx RouterError.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec
import trio

from .anthropic import MessagesRequest, request_decoder
from .errors import InvalidRequestError, RequestTooLargeError, RouterError

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

# https://docs.anthropic.com/en/api/errors#request-size-limits: 32 MB for the Messages API.
MAX_BODY_BYTES = 32 * 1024 * 1024
# How long a whole body may take to arrive; Quart's own BODY_TIMEOUT default is the same.
BODY_TIMEOUT = 60.0
# Bytes of bodies still arriving, summed over all of one worker's connections.
WORKER_BODY_BYTES = 256 * 1024 * 1024
# The rest of an unread body is still on its way: the connection cannot carry another request.
CLOSE = {"connection": "close"}


class ClientDisconnected(Exception):
    """The client went away before its request was read or answered."""


class BodyLimits:
    """One worker's limits on request bodies: how long one may take, how large it may be, and
    how many bytes of unfinished bodies its connections may hold at once.

    A client that stalls mid-body pins what it sent so far; the budget keeps many of them from
    exhausting the worker's memory, and the timeout frees them.
    """

    __slots__ = ("budget", "buffered", "max_bytes", "timeout")

    def __init__(
        self,
        timeout: float = BODY_TIMEOUT,
        max_bytes: int = MAX_BODY_BYTES,
        budget: int = WORKER_BODY_BYTES,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.budget = budget
        self.buffered = 0

    def take(self, size: int) -> None:
        """Count ``size`` more bytes as buffered, or refuse them with a 503 worth retrying."""
        if self.buffered + size > self.budget:
            raise RouterError(
                "the router holds too many unfinished request bodies; retry shortly",
                status=503,
                headers={"retry-after": "1", **CLOSE},
            )
        self.buffered += size

    def give_back(self, size: int) -> None:
        self.buffered -= size

    def too_large(self) -> RequestTooLargeError:
        return RequestTooLargeError(
            f"request body is larger than {self.max_bytes} bytes", headers=CLOSE
        )

    def timed_out(self) -> RouterError:
        # Anthropic lists no 408; "invalid_request_error ... for other 4XX status codes"
        # (https://docs.anthropic.com/en/api/errors#http-errors).
        return RouterError(
            f"request body not received within {self.timeout:g} s", status=408, headers=CLOSE
        )


def nested_too_deeply() -> InvalidRequestError:
    return InvalidRequestError("invalid request: nested too deeply")


async def read_body(receive: Receive, limits: BodyLimits) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        with trio.move_on_after(limits.timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnected
                body = message.get("body", b"")
                if body:
                    if size + len(body) > limits.max_bytes:
                        raise limits.too_large()
                    limits.take(len(body))
                    size += len(body)
                    chunks.append(body)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        raise limits.timed_out()
    finally:
        limits.give_back(size)


def decode_request(body: bytes) -> MessagesRequest:
    if not body:
        raise InvalidRequestError("request body is empty: expected a JSON Messages API request")
    try:
        return request_decoder.decode(body)
    except msgspec.ValidationError as error:
        raise InvalidRequestError(f"invalid request: {error}") from None
    except msgspec.DecodeError as error:
        raise InvalidRequestError(f"request body is not valid JSON: {error}") from None
    except RecursionError:
        raise nested_too_deeply() from None

"""Reading a client's request body and decoding it as a Messages API request.

The first stage of the data flow, shared by ``/v1/messages`` (raw ASGI) and ``count_tokens``:
whatever a client sends, it ends here as a :class:`MessagesRequest` or as a 4xx RouterError.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from .anthropic import MessagesRequest, request_decoder
from .errors import InvalidRequestError, RequestTooLargeError

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

MAX_BODY_BYTES = 32 * 1024 * 1024


class ClientDisconnected(Exception):
    """The client went away before its request was read or answered."""


async def read_body(receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        body = message.get("body", b"")
        if body:
            size += len(body)
            if size > limit:
                raise RequestTooLargeError(f"request body is larger than {limit} bytes")
            chunks.append(body)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_request(body: bytes) -> MessagesRequest:
    if not body:
        raise InvalidRequestError("request body is empty: expected a JSON Messages API request")
    try:
        return request_decoder.decode(body)
    except msgspec.ValidationError as error:
        raise InvalidRequestError(f"invalid request: {error}") from None
    except msgspec.DecodeError as error:
        raise InvalidRequestError(f"request body is not valid JSON: {error}") from None

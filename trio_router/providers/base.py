"""The contract every provider wire format implements.

A format is sans-IO: it turns an Anthropic request into the bytes of one upstream HTTP request,
and the upstream's bytes back into Anthropic types. The HTTP layer (``upstream.py``) does the I/O.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import msgspec

from ..anthropic import MessageResponse, MessagesRequest, StreamEvent, Usage
from ..config import Provider
from ..errors import UpstreamError

# A stream translator may hand back ready SSE bytes (the anthropic passthrough does) as well as
# events; the HTTP layer writes bytes as they are and encodes events.
StreamOutput = StreamEvent | bytes


class Route(msgspec.Struct, frozen=True):
    """Where one request goes: a configured provider, one of its models, and why."""

    provider: Provider
    model: str
    reason: str = "default"


class UpstreamRequest(msgspec.Struct):
    url: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"


class StreamTranslator(Protocol):
    """Incremental translation of one upstream response body, in the style of h11.

    ``feed`` takes any slice of the body (lines and UTF-8 sequences may be cut anywhere) and
    returns the events now complete. ``close`` is called once at the end of the body; when the
    upstream stream ended before it said it was done, it returns an ``ErrorEvent`` last.
    ``usage`` holds the token counts seen so far; ``error`` the upstream's failure, if the
    stream carried one, with the status the client effectively got (for the log and usage).
    """

    usage: Usage
    error: UpstreamError | None

    def feed(self, data: bytes) -> list[StreamOutput]: ...

    def close(self) -> list[StreamOutput]: ...


class ProviderFormat(Protocol):
    name: ClassVar[str]

    def build_request(self, request: MessagesRequest, route: Route) -> UpstreamRequest: ...

    def parse_response(
        self, body: bytes, route: Route, request: MessagesRequest | None = None
    ) -> MessageResponse:
        """``request`` is the one answered, for formats whose answer depends on it."""
        ...

    def stream_translator(self, request: MessagesRequest, route: Route) -> StreamTranslator: ...

    def error_message(self, status: int, body: bytes) -> str: ...


class _ErrorDetail(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    code: Any = None
    status: str | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | str | None = None
    message: str | None = None


_error_decoder = msgspec.json.Decoder(_ErrorBody)


def extract_error_message(body: bytes) -> str:
    """The human message inside a provider's error body.

    Covers OpenAI's ``{"error": {"message"}}`` (platform.openai.com/docs/guides/error-codes),
    Gemini's ``{"error": {"code", "message", "status"}}`` (ai.google.dev/api#errors), Anthropic's
    ``{"type": "error", "error": {...}}`` and plain-text bodies from proxies in between.
    """
    try:
        parsed = _error_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        text = body.decode("utf-8", "replace").strip()
        return text[:2000] or "(empty error body)"
    if isinstance(parsed.error, _ErrorDetail) and parsed.error.message:
        return parsed.error.message
    if isinstance(parsed.error, str):
        return parsed.error
    if parsed.message:
        return parsed.message
    return body.decode("utf-8", "replace")[:2000]

"""The ``anthropic`` format: an Anthropic-compatible upstream, spoken to in its own language.

The request goes out as the client sent it, with the route's model; the stream comes back byte
for byte. Only ``message_start``, ``message_delta``, ``message_stop`` and ``error`` are looked at
(usage, and whether the stream finished), so the per-chunk cost is the SSE line split alone.

:meth:`AnthropicFormat.build_request` re-encodes the decoded ``MessagesRequest``, which drops
what that struct does not model (beta fields such as ``context_management``, new block types), so
the HTTP layer calls :meth:`AnthropicFormat.build_request_from_body` instead, which splices the
model into the client's raw body, and hands a non-streamed answer back as it came
(:meth:`AnthropicFormat.response_usage` reads just its usage).
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
from msgspec import Struct

from ..anthropic import (
    ErrorBody,
    ErrorEvent,
    MessageResponse,
    MessagesRequest,
    Usage,
    response_decoder,
)
from ..config import Provider
from ..errors import (
    UpstreamError,
    redact_provider_secrets,
    status_for_error_type,
    upstream_error,
)
from ..sse import SSEParser
from .base import Route, StreamOutput, UpstreamRequest, extract_error_message

# https://docs.anthropic.com/en/api/versioning: the only version of the Messages API.
ANTHROPIC_VERSION = "2023-06-01"


class _Usage(Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _StartMessage(Struct):
    usage: _Usage | None = None


class _MessageStart(Struct):
    message: _StartMessage


class _MessageDelta(Struct):
    usage: _Usage | None = None


class _Typed(Struct):
    type: str = ""


class _UsageBody(Struct):
    usage: _Usage | None = None


class _ErrorDetail(Struct):
    type: str = "api_error"
    message: str = ""


class _ErrorEvent(Struct):
    # https://docs.anthropic.com/en/docs/build-with-claude/streaming#error-events
    error: _ErrorDetail | None = None


_usage_body_decoder = msgspec.json.Decoder(_UsageBody)
_encode = msgspec.json.Encoder().encode
_start_decoder = msgspec.json.Decoder(_MessageStart)
_delta_decoder = msgspec.json.Decoder(_MessageDelta)
_type_decoder = msgspec.json.Decoder(_Typed)
_error_decoder = msgspec.json.Decoder(_ErrorEvent)
_raw_body_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _merge(usage: Usage, update: _Usage) -> Usage:
    """Stream usage counts are running totals; a field left out keeps its earlier value
    (https://docs.anthropic.com/en/docs/build-with-claude/streaming#event-types)."""
    return Usage(
        input_tokens=usage.input_tokens if update.input_tokens is None else update.input_tokens,
        output_tokens=(
            usage.output_tokens if update.output_tokens is None else update.output_tokens
        ),
        cache_creation_input_tokens=(
            update.cache_creation_input_tokens
            if update.cache_creation_input_tokens is not None
            else usage.cache_creation_input_tokens
        ),
        cache_read_input_tokens=(
            update.cache_read_input_tokens
            if update.cache_read_input_tokens is not None
            else usage.cache_read_input_tokens
        ),
    )


class PassthroughStreamTranslator:
    """Hands the upstream's SSE bytes on unchanged, watching usage and the end of the stream.

    The one exception: the bytes that complete an upstream ``error`` event go out with the
    provider's secrets redacted, since its error text may quote the key it was sent.
    """

    def __init__(self, provider: Provider | None = None) -> None:
        self.usage = Usage()
        # The error event the stream ended with, for the request log (status, message).
        self.error: UpstreamError | None = None
        self._provider = provider
        self._parser = SSEParser()
        self._ended = False  # message_stop or an error event was seen

    def feed(self, data: bytes) -> list[StreamOutput]:
        for event in self._parser.feed(data):
            if self._watch(event.event, event.data):
                data = self._redact(data)
        return [data] if data else []

    def close(self) -> list[StreamOutput]:
        for event in self._parser.close():
            self._watch(event.event, event.data)
        if self._ended:
            return []
        self._ended = True
        error = self.error = UpstreamError("upstream stream ended before completion", status=502)
        return [ErrorEvent(ErrorBody(error.error_type, error.message))]

    def _redact(self, data: bytes) -> bytes:
        # surrogateescape: any bytes survive the round trip, valid UTF-8 or not.
        text = redact_provider_secrets(self._provider, data.decode("utf-8", "surrogateescape"))
        return text.encode("utf-8", "surrogateescape")

    def _watch(self, name: bytes | None, data: bytes) -> bool:
        """True for the upstream's own error event."""
        if name is None:
            # The event line is optional in SSE; then the JSON's own type says what it is.
            try:
                name = _type_decoder.decode(data).type.encode()
            except (msgspec.DecodeError, msgspec.ValidationError):
                return False
        if name == b"message_delta":
            self._usage(_delta_decoder, data)
        elif name == b"message_start":
            self._usage(_start_decoder, data)
        elif name == b"message_stop":
            self._ended = True
        elif name == b"error":
            self._ended = True
            try:
                detail = _error_decoder.decode(data).error
            except (msgspec.DecodeError, msgspec.ValidationError):
                detail = None
            if detail is None:
                detail = _ErrorDetail(message=data.decode("utf-8", "replace"))
            self.error = upstream_error(
                self._provider,
                detail.message or "upstream error",
                status=status_for_error_type(detail.type),
                error_type=detail.type,
            )
            return True
        return False

    def _usage(self, decoder: msgspec.json.Decoder[Any], data: bytes) -> None:
        try:
            parsed = decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # not ours to judge: the client sees the bytes as they are
        usage = parsed.message.usage if isinstance(parsed, _MessageStart) else parsed.usage
        if usage is not None:
            self.usage = _merge(self.usage, usage)


class AnthropicFormat:
    """``anthropic``: forward to an Anthropic-compatible ``/v1/messages`` URL."""

    name: ClassVar[str] = "anthropic"

    def __init__(self, options: dict[str, Any]) -> None:
        if options:
            raise ValueError(f"anthropic takes no options, got {sorted(options)}")

    def _headers(self, route: Route) -> dict[str, str]:
        provider = route.provider
        headers = {"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if provider.api_key:
            headers["x-api-key"] = provider.api_key
        headers.update(provider.headers)
        return headers

    def build_request(self, request: MessagesRequest, route: Route) -> UpstreamRequest:
        body = _encode(msgspec.structs.replace(request, model=route.model))
        return UpstreamRequest(route.provider.api_base_url, self._headers(route), body)

    def build_request_from_body(self, body: bytes, route: Route) -> UpstreamRequest:
        """The client's own bytes with only ``model`` replaced: every field survives."""
        try:
            fields = _raw_body_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise ValueError(f"request body is not a JSON object: {error}") from None
        fields["model"] = msgspec.Raw(_encode(route.model))
        return UpstreamRequest(route.provider.api_base_url, self._headers(route), _encode(fields))

    def response_usage(self, body: bytes) -> Usage:
        """The usage of a non-streamed answer that is handed to the client unchanged."""
        try:
            usage = _usage_body_decoder.decode(body).usage
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise UpstreamError(
                f"upstream returned an invalid Anthropic message: {error}", status=502
            ) from None
        if usage is None:
            return Usage()
        return Usage(
            usage.input_tokens or 0,
            usage.output_tokens or 0,
            usage.cache_creation_input_tokens,
            usage.cache_read_input_tokens,
        )

    def parse_response(
        self, body: bytes, route: Route, request: MessagesRequest | None = None
    ) -> MessageResponse:
        try:
            return response_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise UpstreamError(
                f"upstream returned an invalid Anthropic message: {error}", status=502
            ) from None

    def stream_translator(
        self, request: MessagesRequest, route: Route
    ) -> PassthroughStreamTranslator:
        return PassthroughStreamTranslator(route.provider)

    def error_message(self, status: int, body: bytes) -> str:
        return extract_error_message(body)

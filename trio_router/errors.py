"""The router's exception hierarchy and Anthropic's error envelope.

Every error a client can see is a :class:`RouterError`; the HTTP layer turns it into
``{"type": "error", "error": {"type": ..., "message": ...}}`` with the matching status, as
https://docs.anthropic.com/en/api/errors lists them.
"""

from __future__ import annotations

import msgspec

from .config import Provider
from .masking import Redactor, provider_secrets

# https://docs.anthropic.com/en/api/errors#http-errors
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


# The other way, for an error that comes without a status (an error event inside a stream): the
# status Anthropic answers with for each type; an upstream's api_error is the gateway's 502.
_STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 502,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def error_type_for_status(status: int) -> str:
    if status in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def status_for_error_type(error_type: str) -> int:
    return _STATUS_BY_TYPE.get(error_type, 502)


class _Body(msgspec.Struct):
    type: str
    message: str


class _Envelope(msgspec.Struct, tag="error", tag_field="type"):
    error: _Body


_encode = msgspec.json.Encoder().encode


class RouterError(Exception):
    """An error with a status and an Anthropic error type, safe to show to the client."""

    status = 500
    error_type = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
            self.error_type = error_type or error_type_for_status(status)
        elif error_type is not None:
            self.error_type = error_type
        self.headers = headers or {}

    def envelope(self) -> bytes:
        return _encode(_Envelope(_Body(self.error_type, self.message)))


class InvalidRequestError(RouterError):
    status = 400
    error_type = "invalid_request_error"


class AuthenticationError(RouterError):
    status = 401
    error_type = "authentication_error"


class NotFoundError(RouterError):
    status = 404
    error_type = "not_found_error"


class RequestTooLargeError(RouterError):
    status = 413
    error_type = "request_too_large"


class UpstreamError(RouterError):
    """The provider answered with an error, or could not be reached."""


def redact_provider_secrets(provider: Provider | None, text: str) -> str:
    """``text`` with each secret of the provider's config replaced.

    A provider may quote what it was sent (its key, a header, the ``?key=`` of its URL); a
    stream translator knows only its route's provider. Meant for error paths: it builds the
    redactor on each call.
    """
    if provider is None:
        return text
    return Redactor(provider_secrets(provider))(text)


def upstream_error(
    provider: Provider | None, message: str, *, status: int, error_type: str | None = None
) -> UpstreamError:
    """An error made of a provider's own text, the provider's secrets redacted from it."""
    return UpstreamError(
        redact_provider_secrets(provider, message), status=status, error_type=error_type
    )


class TransformerError(RouterError):
    """A transformer (built-in or custom) failed while handling a request."""


def error_envelope(error_type: str, message: str) -> bytes:
    return _encode(_Envelope(_Body(error_type, message)))

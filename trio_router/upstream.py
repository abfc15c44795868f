"""The HTTP client side: one connection pool per worker, and upstream failures as RouterErrors.

Requests are httpx Requests sent through :class:`transport.TrioTransport`, our lean HTTP/1.1
transport on trio, directly: an ``httpx.AsyncClient`` in between would merge default headers,
extract cookies, run auth and redirect machinery on every request, which a gateway never uses
and which cost about a tenth of a non-streamed request's CPU. The caller opens a response inside
its own nursery's cancel scope, so cancelling that scope (a client disconnect) closes the
upstream connection at once: the transport closes any connection whose response was not read to
the end instead of returning it to the pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from . import __version__
from .errors import UpstreamError, error_type_for_status
from .masking import mask_url
from .providers.base import ProviderFormat, UpstreamRequest
from .transport import TrioTransport

# Headers of an upstream error worth handing to the client: when it may retry.
_PASSED_ERROR_HEADERS = ("retry-after", "retry-after-ms")
# The most of an answer (or an error body) held in memory: a provider, or anything that answers
# at its URL, must not make a worker buffer without bound. Streams are not buffered.
MAX_ANSWER_BYTES = 32 * 1024 * 1024


# Undecoded bytes are cheapest per chunk; a provider that compresses anyway is decoded by
# upstream_chunks.
_DEFAULT_HEADERS = {"accept-encoding": "identity", "user-agent": f"trio-router/{__version__}"}


class Upstream:
    def __init__(self, timeout_ms: int) -> None:
        # A shared gateway holds one upstream connection per concurrent stream: no limit on
        # connections, and up to 256 kept alive between requests.
        self.transport = TrioTransport(max_keepalive_connections=256)
        read = timeout_ms / 1000
        self._timeouts = {"connect": 30.0, "read": read, "write": read, "pool": read}
        # Parsing a URL is a third of building an httpx.Request; a gateway calls few distinct ones.
        self._urls: dict[str, httpx.URL] = {}

    def _url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= 1024:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def aclose(self) -> None:
        await self.transport.aclose()

    @asynccontextmanager
    async def open(
        self, request: UpstreamRequest, provider: str, fmt: ProviderFormat
    ) -> AsyncIterator[httpx.Response]:
        """A response with a 2xx status whose body is not read yet.

        An error status, a connection failure or a timeout, and a read failure in the body
        (while the caller iterates inside the ``async with``) all raise :class:`UpstreamError`.
        """
        try:
            outgoing = httpx.Request(
                request.method,
                self._url(request.url),
                headers={**_DEFAULT_HEADERS, **request.headers},
                content=request.body,
                extensions={"timeout": self._timeouts},
            )
            response = await self.transport.handle_async_request(outgoing)
            response.request = outgoing
            try:
                if response.status_code >= 400:
                    body = await read_answer(response, provider)
                    raise _status_error(response, body, provider, fmt)
                yield response
            finally:
                await response.aclose()
        except httpx.TimeoutException as error:
            raise UpstreamError(
                f"provider {provider!r} timed out ({type(error).__name__})",
                status=504,
                error_type="api_error",
            ) from None
        except httpx.ConnectError as error:
            raise UpstreamError(
                f"cannot connect to provider {provider!r} at {mask_url(request.url)}: {error}",
                status=502,
                error_type="api_error",
            ) from None
        except httpx.HTTPError as error:
            raise UpstreamError(
                f"connection to provider {provider!r} failed: {type(error).__name__}: {error}",
                status=502,
                error_type="api_error",
            ) from None


def upstream_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as it arrives: raw bytes, unless the provider compressed it after all.

    Uncompressed, the response's own stream is iterated: ``aiter_raw`` would add two generator
    layers and a re-chunker to every chunk, to count bytes nobody reads.
    """
    if response.headers.get("content-encoding", "identity") == "identity":
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        return aiter(stream)
    return response.aiter_bytes()


async def read_answer(response: httpx.Response, provider: str) -> bytes:
    """The whole body, or a 502 once it passes :data:`MAX_ANSWER_BYTES`.

    Reading stops there; the connection is then closed, not pooled, because the transport
    discards any connection whose body was not read to its end.
    """
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
        raise _too_large(provider)
    chunks: list[bytes] = []
    size = 0
    async for chunk in upstream_chunks(response):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise _too_large(provider)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(provider: str) -> UpstreamError:
    return UpstreamError(
        f"provider {provider!r} answered more than {MAX_ANSWER_BYTES // (1024 * 1024)} MB",
        status=502,
        error_type="api_error",
    )


def _status_error(
    response: httpx.Response, body: bytes, provider: str, fmt: ProviderFormat
) -> UpstreamError:
    status = response.status_code
    headers = {
        name: response.headers[name] for name in _PASSED_ERROR_HEADERS if name in response.headers
    }
    # A format may know more than the status line says (Gemini: its bad key, its retry delay).
    error_info = getattr(fmt, "error_info", None)
    if error_info is not None:
        status, found = error_info(status, body)
        headers = {**found, **headers}
    message = fmt.error_message(status, body)
    return UpstreamError(
        f"provider {provider!r} answered {response.status_code}: {message}",
        status=status,
        error_type=error_type_for_status(status),
        headers=headers,
    )

"""The HTTP client side: one connection pool per worker, and upstream failures as RouterErrors.

Requests are httpx Requests sent through :class:`transport.TrioTransport`, our lean HTTP/1.1
transport on trio, directly: an ``httpx.AsyncClient`` in between would merge default headers,
extract cookies, run auth and redirect machinery on every request, which a gateway never uses
and which cost about a tenth of a non-streamed request's CPU. The caller opens a response inside
its own nursery's cancel scope, so cancelling that scope (a client disconnect) closes the
upstream connection at once: the transport closes any connection whose response was not read to
the end instead of returning it to the pool.

How each provider is reached (its proxy, the CAs it is verified against, the timeouts) is
prepared once per config as :class:`Settings`; a request takes the settings current when it is
opened and keeps them to its end.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from . import __version__
from .config import Config, ConfigError
from .errors import UpstreamError, error_type_for_status
from .masking import mask_url
from .providers.base import ProviderFormat, UpstreamRequest
from .proxy import Proxy, ProxyChoice, ProxyURLError, parse_proxy
from .transport import DIAL, Dial, FirstByteTimeout, TrioTransport

# Headers of an upstream error worth handing to the client: when it may retry.
_PASSED_ERROR_HEADERS = ("retry-after", "retry-after-ms", "x-ratelimit-reset")
# The most of an answer (or an error body) held in memory: a provider, or anything that answers
# at its URL, must not make a worker buffer without bound. Streams are not buffered.
MAX_ANSWER_BYTES = 32 * 1024 * 1024


# Undecoded bytes are cheapest per chunk; a provider that compresses anyway is decoded by
# upstream_chunks.
_DEFAULT_HEADERS = {"accept-encoding": "identity", "user-agent": f"trio-router/{__version__}"}


class _ProviderDial:
    """A provider's own proxy (None: the config's or the environment's) and TLS trust."""

    __slots__ = ("context", "proxy", "trust")

    def __init__(self, proxy: Proxy | None, context: ssl.SSLContext, trust: str) -> None:
        self.proxy = proxy
        self.context = context
        self.trust = trust


class Settings:
    """How this worker reaches every provider under one config: proxies, TLS and timeouts.

    Built once per config, off the event loop where it can be (a CA bundle is read and an
    SSLContext built in milliseconds; every connection then shares it). Raises ConfigError
    listing every unusable proxy URL and CA file. ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``
    replace the default CAs (certifi's), as in httpx; a provider's ``ca_bundle`` adds to them.
    A relative ``ca_bundle`` is relative to ``base``, the config file's folder.
    """

    def __init__(
        self,
        config: Config,
        base: Path | None = None,
        environ: Mapping[str, str] | None = None,
        source: str = "config",
    ) -> None:
        environ = os.environ if environ is None else environ
        problems: list[str] = []
        idle = config.API_TIMEOUT_MS / 1000
        # "first_byte" is TrioTransport's: one deadline for the whole response head.
        self.timeouts: dict[str, float] = {
            "connect": config.CONNECT_TIMEOUT_MS / 1000,
            "first_byte": config.FIRST_BYTE_TIMEOUT_MS / 1000,
            "read": idle,
            "write": idle,
            "pool": idle,
        }
        try:
            self._choice = ProxyChoice(config.PROXY_URL, environ)
        except ProxyURLError as error:
            problems.append(str(error))
            self._choice = ProxyChoice("", {})
        default = _default_context(environ, problems)
        contexts = {"": default}
        self._fallback = _ProviderDial(None, default, "")
        self._providers: dict[str, _ProviderDial] = {}
        for i, provider in enumerate(config.Providers):
            proxy = None
            if provider.proxy.strip():
                try:
                    proxy = parse_proxy(provider.proxy)
                except ProxyURLError as error:
                    problems.append(f"Providers[{i}].proxy: {error}")
            trust = provider.ca_bundle
            if trust and trust not in contexts:
                place = f"Providers[{i}].ca_bundle"
                contexts[trust] = _bundle_context(environ, _resolve(trust, base), place, problems)
            self._providers[provider.name] = _ProviderDial(proxy, contexts[trust], trust)
        if problems:
            raise ConfigError(source, problems)
        # (provider, url) -> what the transport is handed; a gateway sends to few URLs.
        self._targets: dict[tuple[str, str], tuple[httpx.URL, Dial]] = {}

    def target(self, provider: str, url: str) -> tuple[httpx.URL, Dial]:
        """The parsed URL (a third of building an httpx.Request) and how to reach it."""
        found = self._targets.get((provider, url))
        if found is None:
            if len(self._targets) >= 1024:
                self._targets.clear()
            parsed = httpx.URL(url)
            settings = self._providers.get(provider, self._fallback)
            proxy = settings.proxy
            if proxy is None:
                port = parsed.port or (443 if parsed.scheme == "https" else 80)
                proxy = self._choice.for_url(parsed.scheme, parsed.host, port)
            dial = Dial(proxy, settings.context, settings.trust)
            found = self._targets[(provider, url)] = (parsed, dial)
        return found


def _resolve(path: str, base: Path | None) -> Path:
    found = Path(path).expanduser()
    return found if found.is_absolute() or base is None else base / found


def _default_context(environ: Mapping[str, str], problems: list[str]) -> ssl.SSLContext:
    """The CAs every provider is verified against, as httpx picks them, read once."""
    cafile = environ.get("SSL_CERT_FILE") or None
    capath = environ.get("SSL_CERT_DIR") or None
    if capath is not None and not Path(capath).is_dir():
        problems.append(f"SSL_CERT_DIR (environment): not a directory: {capath!r}")
        capath = None
    try:
        if cafile is None and capath is None:
            import certifi

            context = ssl.create_default_context(cafile=certifi.where())
        else:
            context = ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as error:
        problems.append(f"SSL_CERT_FILE (environment): cannot load {cafile!r}: {error}")
        context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


def _bundle_context(
    environ: Mapping[str, str], path: Path, place: str, problems: list[str]
) -> ssl.SSLContext:
    """The default CAs and those of one provider's bundle."""
    context = _default_context(environ, [])
    try:
        context.load_verify_locations(cafile=path)
    except FileNotFoundError:
        problems.append(f"{place}: file not found: {str(path)!r}")
    except (OSError, ssl.SSLError) as error:
        problems.append(f"{place}: cannot load CA certificates from {str(path)!r}: {error}")
    return context


def _seconds(timeout: float) -> str:
    return f"{timeout:g}"


class Upstream:
    def __init__(self, settings: Settings) -> None:
        # A shared gateway holds one upstream connection per concurrent stream: no limit on
        # connections, and up to 256 kept alive between requests.
        self.transport = TrioTransport(max_keepalive_connections=256)
        self.settings = settings

    def configure(self, settings: Settings) -> None:
        """For requests opened from now on; one in flight keeps the settings it opened with,
        and a pooled connection is reused only by requests that would reach it the same way."""
        self.settings = settings

    async def aclose(self) -> None:
        await self.transport.aclose()

    @asynccontextmanager
    async def open(
        self, request: UpstreamRequest, provider: str, fmt: ProviderFormat
    ) -> AsyncIterator[httpx.Response]:
        """A response with a 2xx status whose body is not read yet.

        An error status, a connection failure or a timeout, and a read failure in the body
        (while the caller iterates inside the ``async with``) all raise :class:`UpstreamError`;
        a timeout's message names the one that fired.
        """
        settings = self.settings
        timeouts = settings.timeouts
        url, dial = settings.target(provider, request.url)
        try:
            outgoing = httpx.Request(
                request.method,
                url,
                headers={**_DEFAULT_HEADERS, **request.headers},
                content=request.body,
                extensions={"timeout": timeouts, DIAL: dial},
            )
            response = await self.transport.handle_async_request(outgoing)
            response.request = outgoing
            try:
                if response.status_code >= 400:
                    # Through a tunnel the answer is the provider's; in plain http, the proxy's.
                    if response.status_code == 407 and dial.proxy and url.scheme == "http":
                        raise _proxy_refused(provider, dial.proxy)
                    body = await read_answer(response, provider)
                    raise _status_error(response, body, provider, fmt)
                yield response
            finally:
                await response.aclose()
        except httpx.TimeoutException as error:
            raise _timed_out(provider, error, timeouts, dial) from None
        except httpx.ProxyError as error:
            raise UpstreamError(
                f"cannot reach provider {provider!r}: {error}", status=502, error_type="api_error"
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


def _timed_out(
    provider: str,
    error: httpx.TimeoutException,
    timeouts: dict[str, float],
    dial: Dial,
) -> UpstreamError:
    if isinstance(error, httpx.ConnectTimeout):
        via = f" through proxy {dial.proxy.shown}" if dial.proxy is not None else ""
        which = f"could not connect{via} within {_seconds(timeouts['connect'])} s (connect timeout)"
    elif isinstance(error, FirstByteTimeout):
        which = (
            f"it sent no response headers within {_seconds(timeouts['first_byte'])} s "
            "(first-byte timeout)"
        )
    elif isinstance(error, httpx.ReadTimeout):
        which = f"it was silent for {_seconds(timeouts['read'])} s (idle timeout, API_TIMEOUT_MS)"
    else:
        which = (
            f"it took no more of the request for {_seconds(timeouts['write'])} s "
            "(write timeout, API_TIMEOUT_MS)"
        )
    return UpstreamError(
        f"provider {provider!r} timed out: {which}", status=504, error_type="api_error"
    )


def _proxy_refused(provider: str, proxy: Proxy) -> UpstreamError:
    """A plain-http provider's request that its proxy refused: the proxy's 407, not the
    provider's."""
    return UpstreamError(
        f"cannot reach provider {provider!r}: proxy {proxy.shown} refused the request: "
        "407 Proxy Authentication Required",
        status=502,
        error_type="api_error",
    )


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

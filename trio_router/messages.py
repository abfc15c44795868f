"""``POST /v1/messages`` as a raw ASGI handler: the gateway's hot path.

The handler talks to the ASGI server directly instead of going through Quart, because every
streamed chunk pays for each layer it crosses. Per request the data flows one way: body ->
route -> chain (hooks + format) -> upstream -> stream translator -> client.

Structured concurrency: the upstream call runs in a nursery beside a task that waits for the
client's ``http.disconnect``; a disconnect cancels the nursery, which closes the upstream
response at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec
import trio

from . import auth
from .anthropic import ErrorBody, ErrorEvent, MessagesRequest, Usage
from .errors import InvalidRequestError, RouterError, TransformerError, error_envelope
from .intake import ClientDisconnected, decode_request, read_body
from .logs import logger
from .providers.base import Route, StreamOutput, StreamTranslator, UpstreamRequest
from .sse import encode_event
from .state import Runtime, State
from .tokens import count_tokens
from .transformers import Chain, transformer_failure
from .upstream import read_answer, upstream_chunks

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A stream silent this long gets an SSE comment, which clients ignore: a model that thinks
# before its first token must not look dead to nginx (proxy_read_timeout: 60 s by default) or
# to a client's idle timeout.
KEEPALIVE_SECONDS = 15.0
_KEEPALIVE: Message = {"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True}
BILLING_PREFIX = "x-anthropic-billing-header:"
MAX_SESSION_ID = 128

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        # nginx buffers proxied responses unless told not to; SSE must flow chunk by chunk.
        (b"x-accel-buffering", b"no"),
    ],
}


class _Outcome:
    """What the request log line and the usage store need to know at the end."""

    __slots__ = (
        "cache_read",
        "complete",
        "error",
        "input_tokens",
        "output_tokens",
        "recorded",
        "route",
        "sent",
        "session",
        "started",
        "status",
    )

    def __init__(self) -> None:
        self.status = 200
        self.started = False  # response headers sent: errors now go in the body
        self.complete = False  # the last byte of the response is being sent
        self.recorded = False  # usage added to the store
        self.sent = 0  # body messages sent so far
        self.session = "default"
        self.route: Route | None = None
        self.input_tokens = self.output_tokens = self.cache_read = 0
        self.error = ""


async def send_json(
    send: Send, status: int, body: bytes, extra: dict[str, str] | None = None
) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend((k.encode(), v.encode()) for k, v in extra.items())
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def normalize(request: MessagesRequest) -> MessagesRequest:
    """Drop what only Anthropic's own API understands and no provider should see.

    Claude Code 2.1 sends its billing line as the first system block
    (``x-anthropic-billing-header: cc_version=...``): metadata, not an instruction.
    """
    system = request.system
    if isinstance(system, list) and any(b.text.startswith(BILLING_PREFIX) for b in system):
        kept = [b for b in system if not b.text.startswith(BILLING_PREFIX)]
        return msgspec.structs.replace(request, system=kept or None)
    if isinstance(system, str) and system.startswith(BILLING_PREFIX):
        return msgspec.structs.replace(request, system=None)
    return request


def _clean_session(session: str) -> str:
    """A session id as the log and the usage API show it: printable, one word, bounded."""
    if len(session) <= MAX_SESSION_ID and session.isprintable() and " " not in session:
        return session
    return "".join(c if c.isprintable() and c != " " else "_" for c in session[:MAX_SESSION_ID])


def session_id(headers: list[tuple[bytes, bytes]], request: MessagesRequest | None) -> str:
    """Claude Code's session header, else the session inside ``metadata.user_id``, else
    ``x-session-id``, else ``default``."""
    fallback = None
    for name, value in headers:
        if name == b"x-claude-code-session-id" and value:
            return _clean_session(value.decode("latin-1"))
        if name == b"x-session-id" and value:
            fallback = _clean_session(value.decode("latin-1"))
    if request is not None and request.metadata and request.metadata.user_id:
        user_id = request.metadata.user_id
        if user_id.startswith("{"):
            try:
                found = msgspec.json.decode(user_id).get("session_id")
            except (msgspec.DecodeError, AttributeError, RecursionError):  # nested too deep
                found = None
            if isinstance(found, str) and found:
                return _clean_session(found)
    return fallback or "default"


def _encode_outputs(outputs: list[StreamOutput]) -> bytes:
    if len(outputs) == 1:  # most chunks: one text delta
        only = outputs[0]
        return only if isinstance(only, bytes) else encode_event(only)
    return b"".join(o if isinstance(o, bytes) else encode_event(o) for o in outputs)


async def _keep_alive(send: Send, outcome: _Outcome) -> None:
    """Sends a comment into a stream that has been silent for KEEPALIVE_SECONDS.

    It never writes after the last event: ``complete`` is set before that is sent, and a comment
    already waiting in the server's send lock goes out first.
    """
    seen = outcome.sent
    while True:
        await trio.sleep(KEEPALIVE_SECONDS)
        if outcome.complete:
            return
        if outcome.sent == seen:
            await send(_KEEPALIVE)
        seen = outcome.sent


async def _watch_disconnect(
    receive: Receive, cancel_scope: trio.CancelScope, outcome: _Outcome
) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # The server also says so once a response is complete: not the client leaving.
            if not outcome.complete:
                outcome.status = 499  # nginx's code for "client closed request"
                cancel_scope.cancel()
            return


class MessagesHandler:
    def __init__(self, state: State) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        outcome = _Outcome()
        request: MessagesRequest | None = None
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        runtime = self.state.runtime
        try:
            if runtime.api_key:
                auth.check(headers, runtime.api_key)
            body = await read_body(receive, self.state.bodies)
            request = decode_request(body)
            outcome.session = session_id(headers, request)
            if not request.model:
                raise InvalidRequestError("invalid request: `model` is required")
            await self._handle(runtime, request, body, receive, send, outcome)
        except ClientDisconnected:
            outcome.status = 499
        except RouterError as error:
            await self._fail(runtime, send, outcome, error)
        except Exception as error:
            logger.exception("unexpected error in /v1/messages")
            failure = RouterError(f"internal error: {type(error).__name__}: {error}")
            await self._fail(runtime, send, outcome, failure)
        finally:
            if request is None:
                outcome.session = session_id(headers, None)
            await self._finish(scope, request, outcome, started)

    async def _fail(
        self, runtime: Runtime, send: Send, outcome: _Outcome, error: RouterError
    ) -> None:
        """Answer with ``error``, every configured secret redacted from it. The request is
        recorded first, so a client that saw its error reads usage that counts it."""
        message = runtime.redact(error.message)
        outcome.status, outcome.error = error.status, message
        await self._record(outcome)
        if not outcome.started:
            envelope = error_envelope(error.error_type, message)
            await send_json(send, error.status, envelope, error.headers)

    async def _handle(
        self,
        runtime: Runtime,
        request: MessagesRequest,
        body: bytes,
        receive: Receive,
        send: Send,
        outcome: _Outcome,
    ) -> None:
        router = runtime.router
        # A token is at least one byte, so a body under the threshold cannot be over it.
        if router.needs_token_count and len(body) > router.threshold:
            # Counting 100k tokens takes tens of ms: off the event loop, other streams flow on.
            tokens = await trio.to_thread.run_sync(count_tokens, request)
            route, request = router.choose(request, lambda: tokens)
        else:
            route, request = router.choose(request, lambda: 0)
        outcome.route = route
        chain = runtime.transformers.for_route(route)
        request = normalize(request)
        upstream_request = chain.build_request(request, route, body)
        failure: RouterError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope, outcome)
            try:
                if request.stream:
                    await self._stream(
                        runtime, request, route, chain, upstream_request, send, outcome, nursery
                    )
                else:
                    await self._complete(route, chain, upstream_request, send, outcome)
            except RouterError as error:
                # Raised from here it would leave the nursery wrapped in an ExceptionGroup.
                failure = error
            finally:
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _stream(
        self,
        runtime: Runtime,
        request: MessagesRequest,
        route: Route,
        chain: Chain,
        upstream_request: UpstreamRequest,
        send: Send,
        outcome: _Outcome,
        nursery: trio.Nursery,
    ) -> None:
        fmt = chain.format
        try:
            translator: StreamTranslator = fmt.stream_translator(request, route)
        except Exception as error:
            raise transformer_failure(fmt.name, error) from error
        event_hooks = chain.transform_events if chain.has_event_hooks else None
        try:
            async with self.state.upstream.open(
                upstream_request, route.provider.name, fmt
            ) as response:
                await send(_SSE_START)
                outcome.started = True
                nursery.start_soon(_keep_alive, send, outcome)
                feed = translator.feed
                message: Message = {"type": "http.response.body", "body": b"", "more_body": True}
                async for chunk in upstream_chunks(response):
                    outputs = feed(chunk)
                    if event_hooks is not None:
                        outputs = event_hooks(outputs, route)
                    if outputs:
                        message["body"] = _encode_outputs(outputs)
                        outcome.sent += 1
                        await send(message)
                tail = translator.close()
                if event_hooks is not None:
                    tail = event_hooks(tail, route)
            _take_usage(outcome, translator.usage)
            # The error event the stream ended with, if any (redacted by the translator): the
            # status it stands for is what the client effectively got.
            failure: RouterError | None = translator.error
            if failure is not None:
                outcome.status, outcome.error = failure.status, failure.message
            # Recorded before the last event, so a client that saw its stream end reads
            # usage that includes it.
            await self._record(outcome)
            outcome.complete = True
            await send({"type": "http.response.body", "body": _encode_outputs(tail)})
        except Exception as error:
            if not outcome.started:
                raise
            if isinstance(error, RouterError):
                failure = error
            else:
                logger.exception("stream translation failed (%s)", fmt.name)
                failure = TransformerError(f"transformer {fmt.name!r} failed: {error}")
            text = runtime.redact(failure.message)
            outcome.status, outcome.error = failure.status, text
            _take_usage(outcome, translator.usage)
            await self._record(outcome)
            outcome.complete = True
            event = ErrorEvent(ErrorBody(failure.error_type, text))
            await send({"type": "http.response.body", "body": encode_event(event)})
        finally:
            _take_usage(outcome, translator.usage)

    async def _complete(
        self,
        route: Route,
        chain: Chain,
        upstream_request: UpstreamRequest,
        send: Send,
        outcome: _Outcome,
    ) -> None:
        fmt = chain.format
        provider = route.provider.name
        async with self.state.upstream.open(upstream_request, provider, fmt) as response:
            body = await read_answer(response, provider)
        raw_usage = chain.raw_usage
        if raw_usage is not None:
            # A passthrough answer goes back as it came, every field kept.
            usage, answer = raw_usage(body), body
        else:
            message = chain.parse_response(body, route)
            usage, answer = message.usage, msgspec.json.encode(message)
        _take_usage(outcome, usage)
        await self._record(outcome)
        outcome.started = outcome.complete = True
        await send_json(send, 200, answer)

    async def _record(self, outcome: _Outcome) -> None:
        """Count the request and add its tokens to its session, once, whatever cancels it.

        Every routed request counts, failed or cut short, with the tokens known by then.
        """
        route = outcome.route
        if outcome.recorded or route is None:
            return
        outcome.recorded = True
        with trio.CancelScope(shield=True):
            try:
                await self.state.usage.add(
                    outcome.session,
                    route.provider.name,
                    outcome.input_tokens,
                    outcome.output_tokens,
                    outcome.cache_read,
                )
            except Exception:
                logger.exception("could not record usage for session %s", outcome.session)

    async def _finish(
        self,
        scope: Scope,
        request: MessagesRequest | None,
        outcome: _Outcome,
        started: float,
    ) -> None:
        route = outcome.route
        await self._record(outcome)
        # What an operator must see on the console: the router or a provider failing (5xx), or
        # a provider refusing a routed request (its key, quota, rate limit, model name). The
        # client's own mistakes (bad key, bad body) and a client leaving (499) stay at INFO.
        failed = outcome.status >= 500 or (route is not None and 400 <= outcome.status < 499)
        logger.log(
            logging.WARNING if failed else logging.INFO,
            "%s %s %d route=%s provider=%s model=%s session=%s stream=%s in=%d out=%d %.1fms%s",
            scope["method"],
            scope["path"],
            outcome.status,
            route.reason if route else "-",
            route.provider.name if route else "-",
            route.model if route else "-",
            outcome.session,
            "yes" if request is not None and request.stream else "no",
            outcome.input_tokens,
            outcome.output_tokens,
            (time.perf_counter() - started) * 1000,
            f" error={outcome.error!r}" if outcome.error else "",
        )


def _take_usage(outcome: _Outcome, usage: Usage) -> None:
    outcome.input_tokens = usage.input_tokens
    outcome.output_tokens = usage.output_tokens
    outcome.cache_read = usage.cache_read_input_tokens or 0

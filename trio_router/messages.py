"""``POST /v1/messages`` as a raw ASGI handler: the gateway's hot path.

The handler talks to the ASGI server directly instead of going through Quart, because every
streamed chunk pays for each layer it crosses. Per request the data flows one way: body ->
route -> chain (hooks + format) -> upstream -> stream translator -> client.

Structured concurrency: the upstream call runs in a nursery beside a task that waits for the
client's ``http.disconnect``; a disconnect cancels the nursery, which closes the upstream
response at once.

Reliability (:meth:`MessagesHandler._open`): until the response's first byte is sent, a failed
attempt may be retried (retry.py), with another key of the provider's pool (reliability.py), or
given up for the route's next fallback; a provider whose circuit breaker is open is skipped, and
a worker at ``MAX_OPEN_STREAMS`` open upstream requests answers 529 at once. Once the client has
a byte, nothing is retried: the client would get two answers in one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AsyncExitStack
from typing import Any

import httpx
import msgspec
import trio

from . import keys, metrics
from .anthropic import ErrorBody, ErrorEvent, MessagesRequest, Usage
from .errors import (
    InvalidRequestError,
    RouterError,
    TransformerError,
    UpstreamError,
    error_envelope,
)
from .intake import ClientDisconnected, decode_request, read_body
from .limits import APIKEY_HOLDER, LimitExceeded
from .logs import logger
from .masking import mask
from .overflow import prompt_too_long
from .providers.base import Route, StreamOutput, StreamTranslator
from .reliability import Breaker, Reliability
from .retry import MAX_HINT_SECONDS, backoff, hinted_delay, is_retryable
from .sse import encode_event
from .state import Runtime, State
from .store import ClientKey, RequestRecord
from .tokens import count_tokens, count_tokens_cached
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
MAX_ERROR_MESSAGE = 1000  # characters of an error kept for the recent-errors view

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
        "betas",
        "cache_read",
        "cache_write",
        "complete",
        "error",
        "fallback_from",
        "first_byte",
        "first_token",
        "input_tokens",
        "key",
        "lease",
        "limited",
        "output_tokens",
        "recorded",
        "route",
        "runtime",
        "sent",
        "session",
        "slot",
        "started",
        "status",
    )

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime  # the config the request is served and priced with
        self.status = 200
        self.started = False  # response headers sent: errors now go in the body
        self.complete = False  # the last byte of the response is being sent
        self.recorded = False  # usage added to the store
        self.sent = 0  # body messages sent so far (a stream's chunks, for the metrics)
        self.first_byte = self.first_token = 0.0  # perf_counter() at the provider's headers
        # and at its first chunk; 0 until then
        self.session = "default"
        self.route: Route | None = None  # the route that answered, once one did
        self.fallback_from: Route | None = None  # the route chosen, when a fallback answered
        self.input_tokens = self.output_tokens = self.cache_read = self.cache_write = 0
        self.error = ""
        self.key: ClientKey | None = None  # None: APIKEY, or an open gateway
        self.lease: str | None = None  # held against a concurrency limit, released at the end
        self.slot: str | None = None  # the provider whose max_concurrent the lease counts in
        self.limited = False  # refused by one of the gateway's own limits
        self.betas: str | None = None  # the client's anthropic-beta header


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


# How soon a client refused for overload may come back: Claude Code and the Anthropic SDKs
# retry a 529 after the retry-after they are given.
OVERLOAD_RETRY_AFTER = "1"


class MessagesHandler:
    def __init__(self, state: State) -> None:
        self.state = state
        # The worker's breakers, key pools and open-request count: the handler lives as long
        # as the worker, across config reloads.
        self.reliability = Reliability()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        runtime = self.state.runtime
        outcome = _Outcome(runtime)
        request: MessagesRequest | None = None
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        try:
            key = outcome.key = await self.state.access.client(headers, runtime.api_key)
            if key is not None and key.limits.any:
                # Known before the store takes it, so that it is released whatever happens.
                outcome.lease = self.state.limits.new_lease()
                await self.state.limits.admit(key, outcome.lease)
            body = await read_body(receive, self.state.bodies)
            request = decode_request(body)
            outcome.session = session_id(headers, request)
            # The client's beta flags, for an Anthropic-compatible upstream: a field such as
            # `context_management` is refused there without its `anthropic-beta` header.
            outcome.betas = next(
                (v.decode("latin-1") for k, v in headers if k == b"anthropic-beta"), None
            )
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
            if outcome.status < 400 and not outcome.complete and _cancelled():
                # Cut from outside: the worker's drain deadline or its shutdown (drain.py
                # answers the client); recorded as the error it is.
                outcome.status, outcome.error = 503, "cut: the gateway shut down before it ended"
            await self._finish(scope, request, outcome, started)

    async def _fail(
        self, runtime: Runtime, send: Send, outcome: _Outcome, error: RouterError
    ) -> None:
        """Answer with ``error``, every configured secret redacted from it. The request is
        recorded first, so a client that saw its error reads usage that counts it."""
        message = runtime.redact(error.message)
        outcome.status, outcome.error = error.status, message
        outcome.limited = isinstance(error, LimitExceeded)
        if outcome.limited and runtime.config.METRICS:
            key = outcome.key  # None: APIKEY's request, refused a provider slot
            labels = ("", "") if key is None else (key.id, key.name)
            found = metrics.get()
            found.rate_limited.labels(*found.key_labels(*labels)).inc()
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
        original = request
        # Every request is counted: the body's size bounds nothing (an image by URL is 70 bytes
        # and 1,600 tokens). Counts are memoized per text, so a conversation's next turn counts
        # only what is new, here (a thread hand-off costs more than that); a new one takes tens
        # of ms, off the event loop.
        if router.needs_token_count:
            counted = count_tokens_cached(request)
            tokens = (
                counted
                if counted is not None
                else await trio.to_thread.run_sync(count_tokens, request)
            )
            route, request = router.choose(request, lambda: tokens)
        else:
            route, request = router.choose(request, lambda: 0)
        if outcome.key is not None:
            keys.permit(outcome.key, route)  # before it counts for a provider it never reached
        outcome.route = route
        # A passthrough forwards the client's body as it came, unless a rule rewrote the request.
        raw = body if request is original else None
        request = normalize(request)
        routes = (route, *router.fallbacks(route))
        health = self.reliability
        cap = runtime.config.MAX_OPEN_STREAMS
        if cap and health.open >= cap:
            # Answered now, not queued: past the cap every stream's chunks would wait longer.
            raise RouterError(
                f"the gateway is at its limit of {cap} open upstream requests (MAX_OPEN_STREAMS):"
                " retry shortly",
                status=529,
                error_type="overloaded_error",
                headers={"retry-after": OVERLOAD_RETRY_AFTER},
            )
        failure: RouterError | None = None
        health.open += 1
        gauge = metrics.get().open_streams if runtime.config.METRICS else None
        if gauge is not None:
            gauge.inc()
        stack = AsyncExitStack()  # the upstream response, once an attempt got one
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope, outcome)
                try:
                    opened = await self._open(runtime, request, raw, routes, stack, outcome)
                    outcome.first_byte = time.perf_counter()
                    if opened.translator is not None:
                        await self._stream(runtime, opened, stack, send, outcome, nursery)
                    else:
                        await self._complete(request, opened, stack, send, outcome)
                except RouterError as error:
                    # Raised from here it would leave the nursery wrapped in an ExceptionGroup.
                    failure = error
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            health.open -= 1
            if gauge is not None:
                gauge.dec()
            await stack.aclose()  # a no-op once _stream or _complete closed it
        if failure is not None:
            raise failure

    async def _open(
        self,
        runtime: Runtime,
        request: MessagesRequest,
        raw: bytes | None,
        routes: tuple[Route, ...],
        stack: AsyncExitStack,
        outcome: _Outcome,
    ) -> _Opened:
        """The first route of ``routes`` to answer 2xx, its response entered into ``stack``.

        A route that fails in a retryable way after its retries, or whose breaker is open, hands
        over to the next; the error the client gets when all fail is the first route's, as
        claude-code-router does. A non-retryable failure (a bad request, a refused key) is the
        answer at once: the next model would refuse the same request. Failed attempts are not
        usage records of their own: the request is recorded once, for the provider that
        answered (or the chosen one when none did); the log has a line for each failure.
        """
        first: RouterError | None = None
        for index, route in enumerate(routes):
            if index:
                if outcome.key is not None:
                    try:
                        keys.permit(outcome.key, route)
                    except RouterError:
                        continue  # this key may not use the fallback
                logger.warning(
                    "falling back from %s,%s to %s,%s",
                    routes[index - 1].provider.name,
                    routes[index - 1].model,
                    route.provider.name,
                    route.model,
                )
                if runtime.config.METRICS:
                    metrics.get().fallbacks.labels(
                        routes[index - 1].provider.name, route.provider.name
                    ).inc()
            try:
                opened = await self._attempts(runtime, request, raw, route, stack, outcome)
            except _GiveUp as give_up:
                first = first or give_up.error
                continue
            if index:
                outcome.route, outcome.fallback_from = route, routes[0]
            return opened
        assert first is not None
        raise first

    async def _attempts(
        self,
        runtime: Runtime,
        request: MessagesRequest,
        raw: bytes | None,
        route: Route,
        stack: AsyncExitStack,
        outcome: _Outcome,
    ) -> _Opened:
        """One route's attempts: the first, then ``retries`` more within ``retry_budget_ms``.

        Raises :class:`_GiveUp` when a fallback may do better, any other RouterError when it
        would not. The breaker counts requests, not attempts: one that gave up on a retryable
        error is a failure. Counting attempts, a provider failing 20 % of them at random would
        show 5 failures in a row every few thousand attempts, and a busy gateway would shut it
        out for a cool-down every few seconds; with 2 retries a request fails 0.8 % of the
        time, and 5 such in a row is an outage. A 429 is not a failure (the provider is up; a
        rate limit is waited for or, with a pool, one key's), nor is a non-retryable answer.
        """
        provider = route.provider
        config = runtime.config
        threshold, cooldown = config.BREAKER_FAILURES, config.BREAKER_COOLDOWN_MS / 1000
        breaker = self.reliability.breaker(provider.name)
        if not breaker.admits(threshold, cooldown):
            wait = math.ceil(breaker.retry_after(cooldown)) or 1
            raise _GiveUp(
                UpstreamError(
                    f"provider {provider.name!r} is failing: skipped for {wait} s more "
                    f"after {breaker.failures} failed requests in a row (circuit breaker)",
                    status=503,
                    error_type="overloaded_error",
                    headers={"retry-after": str(wait)},
                )
            )
        probe = breaker.probing  # admitted while open: this request decides
        observed = metrics.get() if config.METRICS else None
        if probe and observed is not None:
            observed.breaker.labels(provider.name).set(metrics.PROBING)
        pool = self.reliability.pool(provider) if provider.api_keys else None
        chain = runtime.transformers.for_route(route)
        translator: StreamTranslator | None = None
        if request.stream:  # before any attempt: a translator that cannot start sends nothing
            try:
                translator = chain.format.stream_translator(request, route)
            except Exception as error:
                raise transformer_failure(chain.format.name, error) from error
        deadline = trio.current_time() + provider.retry_budget_ms / 1000
        refused: set[str] = set()  # pool keys this request saw refused
        retry = 0
        try:
            while True:
                sent = route
                key = None
                if pool is not None:
                    key = pool.pick(refused)
                    if key is None:
                        raise UpstreamError(
                            f"provider {provider.name!r} refused every key of its api_keys "
                            "(401/403): fix them, then reload the config",
                            status=401,
                        )
                    sent = msgspec.structs.replace(
                        route, provider=msgspec.structs.replace(provider, api_key=key)
                    )
                upstream_request = chain.build_request(request, sent, raw)
                if outcome.betas and chain.format.name == "anthropic":
                    upstream_request.headers.setdefault("anthropic-beta", outcome.betas)
                if provider.max_concurrent and outcome.slot is None:
                    # The first route's slot only: a lease holds one provider's slot.
                    await self._take_slot(route, outcome)
                try:
                    response = await stack.enter_async_context(
                        self.state.upstream.open(upstream_request, provider.name, chain.format)
                    )
                except UpstreamError as error:
                    status = error.status
                    if observed is not None:
                        kind = metrics.error_kind(status)
                        observed.upstream_errors.labels(provider.name, kind).inc()
                    if pool is not None and key is not None and status in (401, 403):
                        pool.revoke(key)
                        refused.add(key)
                        logger.warning(
                            "provider %r refused key %s (%d): taken out of its pool, %d left",
                            provider.name,
                            mask(key),
                            status,
                            pool.live,
                        )
                        if pool.pick(refused) is not None:
                            continue
                    if not is_retryable(status, error):
                        self._breaker_closed(breaker, provider.name, observed)
                        raise prompt_too_long(status, error.message) or error from None
                    hint = hinted_delay(error.headers)
                    if pool is not None and key is not None and status == 429:
                        pool.rest(key, hint if hint is not None else 1.0)
                        if pool.ready():
                            hint = 0.0  # another key is not limited: no reason to wait
                    delay = hint if hint is not None else backoff(retry)
                    if (
                        retry >= provider.retries
                        or delay > MAX_HINT_SECONDS
                        or trio.current_time() + delay > deadline
                    ):
                        if status != 429 and breaker.failed(threshold):
                            if observed is not None:
                                observed.breaker.labels(provider.name).set(metrics.OPEN)
                            logger.warning(
                                "provider %r: circuit breaker open for %g s after %d failed "
                                "requests",
                                provider.name,
                                cooldown,
                                breaker.failures,
                            )
                        raise _GiveUp(error) from None
                    retry += 1
                    if observed is not None:
                        observed.retries.labels(provider.name).inc()
                    logger.warning(
                        "%s; retry %d of %d in %.2f s",
                        runtime.redact(error.message),
                        retry,
                        provider.retries,
                        delay,
                    )
                    await trio.sleep(delay)
                    continue
                self._breaker_closed(breaker, provider.name, observed)
                return _Opened(response, sent, chain, translator)
        finally:
            if probe and breaker.probing:  # the probe ended with no verdict (the client left)
                breaker.abandoned()
                if observed is not None:
                    observed.breaker.labels(provider.name).set(metrics.OPEN)

    @staticmethod
    def _breaker_closed(breaker: Breaker, provider: str, observed: metrics.Metrics | None) -> None:
        """A verdict of success; the gauge changes only when the breaker was open."""
        was_open = breaker.opened_at is not None
        breaker.succeeded()
        if was_open and observed is not None:
            observed.breaker.labels(provider).set(metrics.CLOSED)

    async def _stream(
        self,
        runtime: Runtime,
        opened: _Opened,
        stack: AsyncExitStack,
        send: Send,
        outcome: _Outcome,
        nursery: trio.Nursery,
    ) -> None:
        """Relays the opened response; ``stack`` holds it open, and turns a failure to read it
        into an UpstreamError on its way out."""
        route, chain, translator = opened.route, opened.chain, opened.translator
        assert translator is not None  # opened for a stream
        fmt = chain.format
        event_hooks = chain.transform_events if chain.has_event_hooks else None
        try:
            async with stack:
                await send(_SSE_START)
                outcome.started = True
                nursery.start_soon(_keep_alive, send, outcome)
                feed = translator.feed
                message: Message = {"type": "http.response.body", "body": b"", "more_body": True}
                chunks = upstream_chunks(opened.response)
                # The first chunk apart, so that its time (to the first token) is taken once,
                # not tested for on every chunk; breaking out leaves ``chunks`` open.
                async for chunk in chunks:
                    outcome.first_token = time.perf_counter()
                    outputs = feed(chunk)
                    if event_hooks is not None:
                        outputs = event_hooks(outputs, route)
                    if outputs:
                        message["body"] = _encode_outputs(outputs)
                        outcome.sent += 1
                        await send(message)
                    break
                async for chunk in chunks:
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
                _count_stream_error(runtime, route)
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
            _count_stream_error(runtime, route)
            _take_usage(outcome, translator.usage)
            await self._record(outcome)
            outcome.complete = True
            event = ErrorEvent(ErrorBody(failure.error_type, text))
            await send({"type": "http.response.body", "body": encode_event(event)})
        finally:
            _take_usage(outcome, translator.usage)

    async def _complete(
        self,
        request: MessagesRequest,
        opened: _Opened,
        stack: AsyncExitStack,
        send: Send,
        outcome: _Outcome,
    ) -> None:
        route, chain = opened.route, opened.chain
        async with stack:
            body = await read_answer(opened.response, route.provider.name)
        raw_usage = chain.raw_usage
        if raw_usage is not None:
            # A passthrough answer goes back as it came, every field kept.
            usage, answer = raw_usage(body), body
        else:
            message = chain.parse_response(body, route, request)
            usage, answer = message.usage, msgspec.json.encode(message)
        _take_usage(outcome, usage)
        await self._record(outcome)
        outcome.started = outcome.complete = True
        await send_json(send, 200, answer)

    async def _take_slot(self, route: Route, outcome: _Outcome) -> None:
        """One of the provider's ``max_concurrent`` slots, shared fairly between keys."""
        if outcome.lease is None:
            outcome.lease = self.state.limits.new_lease()
        outcome.slot = route.provider.name
        key_id = outcome.key.id if outcome.key is not None else APIKEY_HOLDER
        await self.state.limits.take_slot(
            route.provider.name, route.provider.max_concurrent, key_id, outcome.lease
        )

    async def _record(self, outcome: _Outcome) -> None:
        """Count the request for its session and key and release its lease: once, in one
        store transaction, whatever cancels it.

        Every routed request counts, failed or cut short, with the tokens known by then; a
        client key's requests count for the key even when refused before routing.
        """
        route, key, lease = outcome.route, outcome.key, outcome.lease
        if outcome.recorded or (route is None and key is None and lease is None):
            return
        outcome.recorded = True
        cost = None
        if route is not None:
            cost = outcome.runtime.prices.cost(
                route.provider.name,
                route.model,
                outcome.input_tokens,
                outcome.output_tokens,
                outcome.cache_read,
                outcome.cache_write,
            )
        status = outcome.status
        error = outcome.error or ("the client closed the request" if status == 499 else "")
        entry = RequestRecord(
            outcome.session,
            route.provider.name if route is not None else None,
            outcome.input_tokens,
            outcome.output_tokens,
            outcome.cache_read,
            key_id=key.id if key is not None else None,
            user=key.user if key is not None else "",
            error=status >= 400,
            rate_limited=outcome.limited,
            lease=lease,
            rated=key is not None and key.limits.tpm is not None,
            model=route.model if route is not None else "",
            cost_usd=cost,
            status=status,
            # Already redacted where it was set (_fail, _stream, the translators); one line.
            error_message=" ".join(error.split())[:MAX_ERROR_MESSAGE],
            ended_at=time.time(),
        )
        with trio.CancelScope(shield=True):
            try:
                await self.state.usage.record(entry)
            except Exception:
                logger.exception("could not record usage for session %s", outcome.session)
            finally:
                if lease is not None:
                    self.state.limits.released(lease, outcome.slot)

    async def _finish(
        self,
        scope: Scope,
        request: MessagesRequest | None,
        outcome: _Outcome,
        started: float,
    ) -> None:
        route = outcome.route
        await self._record(outcome)
        if outcome.runtime.config.METRICS:
            _observe(outcome, request is not None and request.stream, started)
        # What an operator must see on the console: the router or a provider failing (5xx), or
        # a provider refusing a routed request (its key, quota, rate limit, model name). The
        # client's own mistakes (bad key, bad body) and a client leaving (499) stay at INFO.
        failed = outcome.status >= 500 or (route is not None and 400 <= outcome.status < 499)
        logger.log(
            logging.WARNING if failed else logging.INFO,
            "%s %s %d route=%s provider=%s model=%s%s session=%s stream=%s in=%d out=%d %.1fms%s",
            scope["method"],
            scope["path"],
            outcome.status,
            route.reason if route else "-",
            route.provider.name if route else "-",
            route.model if route else "-",
            f" fallback_from={_target(outcome.fallback_from)}" if outcome.fallback_from else "",
            outcome.session,
            "yes" if request is not None and request.stream else "no",
            outcome.input_tokens,
            outcome.output_tokens,
            (time.perf_counter() - started) * 1000,
            f" error={outcome.error!r}" if outcome.error else "",
        )


def _cancelled() -> bool:
    """Whether the task is being cancelled (a cancelled scope's deadline is -inf, in trio)."""
    return trio.current_effective_deadline() == -math.inf


def _take_usage(outcome: _Outcome, usage: Usage) -> None:
    outcome.input_tokens = usage.input_tokens
    outcome.output_tokens = usage.output_tokens
    outcome.cache_read = usage.cache_read_input_tokens or 0
    outcome.cache_write = usage.cache_creation_input_tokens or 0


def _count_stream_error(runtime: Runtime, route: Route) -> None:
    """A stream that failed after its first byte (the provider's error event, a cut)."""
    if runtime.config.METRICS:
        metrics.get().upstream_errors.labels(route.provider.name, "stream").inc()


def _observe(outcome: _Outcome, stream: bool, started: float) -> None:
    """The request's metrics, once at its end."""
    found = metrics.get()
    route, status = outcome.route, outcome.status
    provider = route.provider.name if route is not None else ""
    model = outcome.runtime.labels.model(route.model) if route is not None else ""
    reason = route.reason if route is not None else ""
    found.requests.labels(reason, provider, model, str(status), str(stream).lower()).inc()
    if status == 499:
        found.disconnects.labels(provider).inc()
    if route is None:
        return
    if outcome.first_byte:
        found.first_byte.labels(provider, model).observe(outcome.first_byte - started)
    if stream and outcome.started:
        if outcome.first_token:
            found.first_token.labels(provider, model).observe(outcome.first_token - started)
        found.stream_duration.labels(provider, model).observe(time.perf_counter() - started)
        found.chunks.labels(provider, model).inc(outcome.sent)
    for kind, tokens in (
        ("input", outcome.input_tokens),
        ("output", outcome.output_tokens),
        ("cache_read", outcome.cache_read),
    ):
        if tokens:
            found.tokens.labels(provider, model, kind).inc(tokens)


def _target(route: Route) -> str:
    return f"{route.provider.name},{route.model}"


class _Opened:
    """A 2xx response not read yet, the route as it was sent (with the pool key it used), its
    chain, and for a stream its translator."""

    __slots__ = ("chain", "response", "route", "translator")

    def __init__(
        self,
        response: httpx.Response,
        route: Route,
        chain: Chain,
        translator: StreamTranslator | None,
    ) -> None:
        self.response = response
        self.route = route
        self.chain = chain
        self.translator = translator


class _GiveUp(Exception):
    """A route failed in a way its fallback may not: ``error`` is what the client gets if none
    is left."""

    def __init__(self, error: RouterError) -> None:
        super().__init__(error.message)
        self.error = error

"""Property-based fuzzing of ``/v1/messages`` and ``count_tokens`` through the real server.

Mutated Claude Code requests (tests/fuzz_strategies.py) go to each provider format, streamed and
not, each to a strict fake of its provider. Whatever the body, the router must answer in bounded
time with a 2xx or a 4xx in Anthropic's error envelope; a 5xx is allowed only as an upstream's
own status passed through. No body may carry a traceback, a Python exception's name or a
provider key (the passthrough fake quotes its key in its errors); the router must log no
unexpected exception and write no log line a client could have forged; a stream must be
well-formed SSE that ends with ``message_stop`` or ``error``; and a fake must never crash on what
the router forwarded (the real API would reject it: the router should have, with a 400).

Hypothesis drives sync tests: the router and the fakes run in one ``trio.run`` in a background
thread for the whole module (a server per example would cost more than the example), and the
tests talk to them with a sync httpx client.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fake_deepseek import FakeDeepSeek
from tests.fake_gemini import FakeGemini
from tests.fake_openai import FakeChatProvider
from tests.fakeserver import FakeServer, Handler, Reply, Request
from tests.fuzz_strategies import (
    HEADERS,
    KNOWN_BAD_BLOCKS,
    KNOWN_BAD_SCHEMAS,
    TARGET,
    claude_code_request,
    encode,
    header_value,
    raw_body,
)
from trio_router.app import create_app
from trio_router.config import load

KEY = "fuzz-client-key"
# Each read may wait this long, and a whole answer this long: generous for a shared 2-core CI
# box, far below what a hang looks like.
READ_TIMEOUT = 10.0
ANSWER_TIMEOUT = 20.0
LOG_WAIT = 5.0
STREAM_SSE = Path(__file__).parent / "fixtures" / "openai" / "passthrough" / "anthropic_text.sse"

# format -> (provider name, models); one provider per format, routed by "provider,model".
FORMATS: dict[str, list[str]] = {
    "openrouter": ["openai/gpt-5", "anthropic/claude-sonnet-4.5"],
    "deepseek": ["deepseek-chat", "deepseek-reasoner"],
    # Gemini 3 checks thought signatures, 2.5 does not: both paths get traffic.
    "gemini": ["gemini-3-pro-preview", "gemini-2.5-flash"],
    "anthropic": ["claude-relay"],
}
_EXCEPTION = re.compile(
    r"Traceback|File \"|\b(?:TypeError|KeyError|ValueError|AttributeError|IndexError|"
    r"RecursionError|UnicodeEncodeError|UnicodeDecodeError|UnicodeError|AssertionError|"
    r"RuntimeError|OverflowError|ZeroDivisionError|NameError|NotImplementedError|MemoryError|"
    r"StopIteration|ExceptionGroup|DecodeError|ValidationError|UnboundLocalError)\b"
)
# How each record in trio-router.log starts (trio_router/logs.py, SafeFormatter), or a
# traceback's indented line; anything else a client could have forged.
_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} [A-Z]+ \[pid \d+\] |  ")
# An upstream's error as the router passes it on (trio_router/upstream.py, _status_error).
_UPSTREAM = re.compile(r"^provider '[^']*' answered \d{3}\b")
_FIVE_XX_TYPES = {"api_error", "overloaded_error", "timeout_error"}


@dataclass
class FakeAnthropic:
    """An Anthropic-compatible relay for the passthrough format: it wants its key, its model and
    a messages list, and answers a recorded stream or one message (shapes from
    https://docs.anthropic.com/en/api/messages; errors from https://docs.anthropic.com/en/api/errors).
    """

    api_key: str
    model: str

    def __call__(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/v1/messages":
            return self._error(404, "not_found_error", "Not found")
        if request.headers.get("x-api-key") != self.api_key:
            return self._error(401, "authentication_error", "invalid x-api-key")
        try:
            body = request.json()
        except ValueError:
            return self._error(400, "invalid_request_error", "invalid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self._error(400, "invalid_request_error", "messages: Field required")
        if body.get("model") != self.model:
            return self._error(404, "not_found_error", f"model: {body.get('model')}")
        if body.get("stream") is True:
            return Reply.sse([STREAM_SSE.read_bytes()])
        message = {
            "id": "msg_fuzz",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [{"type": "text", "text": "Hi there"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 2},
        }
        return Reply.json(message)

    def _error(self, status: int, kind: str, message: str) -> Reply:
        # It quotes the key it was sent, as some relays do: the router must redact it (issue 15,
        # item 4).
        text = f"{message} (key {self.api_key})"
        return Reply.json({"type": "error", "error": {"type": kind, "message": text}}, status)


@dataclass
class Guarded:
    """A fake whose crash becomes a 500 answer and a record, instead of killing the server."""

    handler: Handler
    crashes: list[str]

    def __call__(self, request: Request) -> Reply:
        try:
            reply = self.handler(request)
        except Exception:
            self.crashes.append(traceback.format_exc())
            return Reply.json({"error": {"message": "fake crashed", "type": "server_error"}}, 500)
        assert isinstance(reply, Reply)
        return reply


class Captured(logging.Handler):
    """Keeps every record that reports an exception or an error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.records.append(text)


class Gateway:
    """The router and its fakes, served by ``trio.run`` in a background thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url = ""
        self.crashes: list[str] = []
        self.logged = Captured()
        self.secrets: list[str] = []
        self._fakes: list[FakeServer] = []
        self._log_read = 0
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # Hypothesis prints it with each failing example
        return f"Gateway({self.url})"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fuzz-gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._failure is not None:
            raise RuntimeError("the fuzz gateway did not start") from self._failure

    def stop(self) -> None:
        if self._token is not None and self._cancel is not None:
            trio.from_thread.run_sync(self._cancel.cancel, trio_token=self._token)
        assert self._thread is not None
        self._thread.join(10)
        logging.getLogger("trio_router").removeHandler(self.logged)

    def log_lines(self, path: str) -> list[str]:
        """The lines the router logged since the last call, up to its record of a request to
        ``path``, which it may write after the answer has gone; [] if none comes in time."""
        deadline = time.monotonic() + LOG_WAIT
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines += self._complete_log_lines()
            if any(f" POST {path} " in line for line in lines):
                return lines
            time.sleep(0.005)
        return []

    def _complete_log_lines(self) -> list[str]:
        log = self.directory / "logs" / "trio-router.log"
        if not log.exists():
            return []
        with log.open("rb") as file:
            file.seek(self._log_read)
            text = file.read()
        text = text[: text.rfind(b"\n") + 1]  # a line being written waits for the next read
        self._log_read += len(text)
        return text.decode("utf-8").splitlines()

    def forget(self) -> None:
        """Drop what the fakes keep per request, so a long run does not hoard bodies."""
        for fake in self._fakes:
            fake.requests.clear()
            handler = fake.handler
            assert isinstance(handler, Guarded)
            inner: Any = handler.handler
            for name in ("answers", "rejected"):
                if hasattr(inner, name):
                    getattr(inner, name).clear()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as error:
            self._failure = error
            self._ready.set()

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self._token = trio.lowlevel.current_trio_token()
            self._cancel = nursery.cancel_scope
            providers = []
            for fmt, models in FORMATS.items():
                api_key = f"sk-fuzz-{fmt}-0123456789"
                self.secrets.append(api_key)
                handler, base = self._fake_for(fmt, api_key, models)
                fake = await FakeServer(Guarded(handler, self.crashes)).start(nursery)
                self._fakes.append(fake)
                providers.append(
                    {
                        "name": fmt,
                        "api_base_url": fake.url + base,
                        "api_key": api_key,
                        "models": models,
                        "transformer": {"use": [fmt]},
                    }
                )
            config = {
                "APIKEY": KEY,
                "Providers": providers,
                "Router": {"default": f"openrouter,{FORMATS['openrouter'][0]}"},
            }
            path = self.directory / "config.json"
            path.write_text(json.dumps(config, indent=2))
            app = create_app(load(path))
            # After create_app, whose log setup drops the handlers it finds.
            logging.getLogger("trio_router").addHandler(self.logged)
            errors = logging.getLogger("tests.fuzz.hypercorn")
            errors.addHandler(self.logged)
            errors.propagate = False
            hc = HypercornConfig()
            hc.bind = ["127.0.0.1:0"]
            hc.accesslog = None
            hc.errorlog = errors
            hc.graceful_timeout = 0.1
            binds = await nursery.start(partial(serve, app, hc))  # type: ignore[arg-type]
            self.url = binds[0]
            self._ready.set()

    @staticmethod
    def _fake_for(fmt: str, api_key: str, models: list[str]) -> tuple[Handler, str]:
        if fmt == "openrouter":
            return FakeChatProvider(api_key, models, "true"), FakeChatProvider.path
        if fmt == "deepseek":
            return FakeDeepSeek(api_key, models, "true"), FakeDeepSeek.path
        if fmt == "gemini":
            return FakeGemini(api_key, models, "true"), "/v1beta/models/"
        return FakeAnthropic(api_key, models[0]), "/v1/messages"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CONFIG_PATH", raising=False)
        running = Gateway(tmp_path_factory.mktemp("fuzz"))
        running.start()
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    timeout = httpx.Timeout(READ_TIMEOUT, connect=READ_TIMEOUT)
    with httpx.Client(base_url=gateway.url, timeout=timeout) as session:
        yield session


# Bytes, so that a header value may hold any latin-1 character (httpx encodes str as ASCII).
Headers = dict[bytes, bytes]


def client_headers() -> Headers:
    """What Claude Code sends, with this router's key."""
    headers = {k.encode(): v.encode() for k, v in HEADERS.items()}
    headers[b"x-api-key"] = KEY.encode()
    return headers


# --- one exchange and what must hold of it --------------------------------------------------


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes


def send(client: httpx.Client, target: str, body: bytes, headers: Headers) -> Answer:
    """POST and read the whole answer, or fail as a hang."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    chunks: list[bytes] = []
    try:
        with client.stream("POST", target, content=body, headers=headers) as response:
            for chunk in response.iter_raw():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise AssertionError(f"answer still streaming after {ANSWER_TIMEOUT} s")
            return Answer(
                response.status_code, response.headers.get("content-type", ""), b"".join(chunks)
            )
    except httpx.TimeoutException as error:
        raise AssertionError(f"no answer within {READ_TIMEOUT} s (a hang): {error!r}") from None
    except httpx.TransportError as error:
        raise AssertionError(f"connection failed mid-answer: {error!r}") from None


def check_error(answer: Answer) -> None:
    """A 4xx or 5xx is Anthropic's envelope, and a 5xx is an upstream's own."""
    try:
        data = json.loads(answer.body)
        error = data["error"]
        assert data["type"] == "error" and isinstance(error["type"], str)
        message = error["message"]
        assert isinstance(message, str)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise AssertionError(
            f"{answer.status} is not an error envelope: {answer.body[:500]!r}"
        ) from None
    if answer.status >= 500:
        assert _UPSTREAM.match(message), f"the router's own {answer.status}: {message[:500]!r}"


def check_stream(answer: Answer) -> None:
    """Well-formed SSE (https://html.spec.whatwg.org/multipage/server-sent-events.html) of
    Anthropic events (https://docs.anthropic.com/en/docs/build-with-claude/streaming), ending
    with message_stop or error and nothing after."""
    assert answer.content_type.startswith("text/event-stream"), answer.content_type
    text = answer.body.decode("utf-8").replace("\r\n", "\n")
    types: list[str] = []
    for frame in text.split("\n\n"):
        lines = [line for line in frame.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert set(fields) <= {"event", "data"}, frame[:300]
        event = json.loads(fields["data"])
        assert isinstance(event, dict) and isinstance(event.get("type"), str), frame[:300]
        assert fields.get("event", event["type"]) == event["type"], frame[:300]
        if event["type"] == "error":
            kind, message = event["error"]["type"], event["error"]["message"]
            assert kind not in _FIVE_XX_TYPES or _UPSTREAM.match(message), (
                f"the router's own {kind} in a stream: {message[:500]!r}"
            )
        types.append(event["type"])
    assert types, "an empty stream"
    assert types[-1] in ("message_stop", "error"), f"the stream ends with {types[-1]}"
    ends = [i for i, t in enumerate(types) if t in ("message_stop", "error")]
    assert ends == [len(types) - 1], f"events after the end: {types}"


def exchange(
    gateway: Gateway, client: httpx.Client, target: str, body: bytes, headers: Headers
) -> Answer:
    """One request, checked for what must hold of any answer: no traceback, no provider key,
    no crashed fake, no logged error or forged log line, and an error envelope on a 4xx or 5xx."""
    crashes, logged = len(gateway.crashes), len(gateway.logged.records)
    answer = send(client, target, body, headers)
    gateway.forget()
    # Read before any check fails, or this request's lines would count against the next one.
    lines = gateway.log_lines(target.split("?", 1)[0])
    shown = answer.body.decode("utf-8", "replace")
    assert not _EXCEPTION.search(shown), f"{answer.status} carries a traceback: {shown[:2000]}"
    assert lines, f"no record of the request in the log within {LOG_WAIT} s"
    for secret in gateway.secrets:
        assert secret not in shown, f"a provider key in a {answer.status}: {shown[:2000]}"
        assert not any(secret in line for line in lines), f"a provider key in the log: {lines}"
    forged = [line for line in lines if not _LOG_LINE.match(line)]
    assert not forged, f"log lines the router did not start (forged?): {forged}"
    assert len(gateway.crashes) == crashes, (
        f"a fake crashed on what the router forwarded: {gateway.crashes[crashes:]}"
    )
    assert len(gateway.logged.records) == logged, (
        f"the router logged an error: {gateway.logged.records[logged:]}"
    )
    if answer.status >= 400:
        check_error(answer)
    return answer


def check_message(answer: Answer, streamed: bool | None) -> None:
    """A 2xx is a stream if one was asked for, else one message; ``None``: either, as its
    content type says (for a body whose ``stream`` no JSON reader agrees on)."""
    if answer.status >= 400:
        return
    if streamed is None:
        streamed = answer.content_type.startswith("text/event-stream")
    if streamed:
        check_stream(answer)
        return
    assert answer.content_type.startswith("application/json"), answer.content_type
    message = json.loads(answer.body)
    assert isinstance(message, dict) and message.get("type") == "message", answer.body[:500]


# --- the properties -------------------------------------------------------------------------

# About 700 requests in all: some 20 s on two idle cores, 40 s on two overloaded ones.
FUZZ = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_SESSION_HEADERS = ["X-Claude-Code-Session-Id", "x-session-id", "anthropic-version", "x-app"]


def _requests(fmt: str) -> st.SearchStrategy[Any]:
    models = st.sampled_from(FORMATS[fmt]).map(lambda model: f"{fmt},{model}")
    return models.flatmap(claude_code_request)


@pytest.mark.parametrize("fmt", list(FORMATS))
@FUZZ
@given(data=st.data())
def test_mutated_claude_code_requests(
    gateway: Gateway, client: httpx.Client, fmt: str, data: st.DataObject
) -> None:
    body = data.draw(_requests(fmt), label="body")
    headers = client_headers()
    if data.draw(st.integers(0, 4), label="odd headers") == 4:
        name = data.draw(st.sampled_from(_SESSION_HEADERS), label="header")
        headers[name.encode()] = data.draw(header_value, label="value").encode("latin-1")
    answer = exchange(gateway, client, TARGET, encode(body), headers)
    check_message(answer, body.get("stream") is True)


@pytest.mark.parametrize("fmt", list(FORMATS))
@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_bodies_that_are_not_requests(
    gateway: Gateway, client: httpx.Client, fmt: str, data: st.DataObject
) -> None:
    body = data.draw(raw_body(f"{fmt},{FORMATS[fmt][0]}"), label="body")
    check_message(exchange(gateway, client, TARGET, body, client_headers()), None)


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_count_tokens(gateway: Gateway, client: httpx.Client, data: st.DataObject) -> None:
    """No upstream here: any 5xx is the router's own."""
    fmt = data.draw(st.sampled_from(list(FORMATS)), label="format")
    model = f"{fmt},{FORMATS[fmt][0]}"
    body = data.draw(claude_code_request(model).map(encode) | raw_body(model), label="body")
    answer = exchange(gateway, client, "/v1/messages/count_tokens", body, client_headers())
    assert answer.status < 500, answer.body[:500]
    if answer.status == 200:
        assert isinstance(json.loads(answer.body)["input_tokens"], int)


def _known_bad(name: str) -> dict[str, Any]:
    """A one-turn request holding the known-bad schema or content block ``name``."""
    kind, _, key = name.partition(":")
    if kind == "schema":
        tool = {"name": "f", "description": "d", "input_schema": KNOWN_BAD_SCHEMAS[key]}
        return {"messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    return {"messages": [{"role": "user", "content": [KNOWN_BAD_BLOCKS[key]]}]}


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize(
    "name", [f"schema:{k}" for k in KNOWN_BAD_SCHEMAS] + [f"block:{k}" for k in KNOWN_BAD_BLOCKS]
)
def test_known_bad_requests(
    gateway: Gateway, client: httpx.Client, name: str, fmt: str, streamed: bool
) -> None:
    """Each known-bad shape on every format: the random mix draws any one of them rarely."""
    model = f"{fmt},{FORMATS[fmt][0]}"
    body = {"model": model, "max_tokens": 1024, "stream": streamed, **_known_bad(name)}
    check_message(exchange(gateway, client, TARGET, encode(body), client_headers()), streamed)

"""Secrets never reach a client or the log, log lines cannot be forged, buffered answers are
capped, and errors inside streams are logged and counted as what they were (issue 15: 3, 4, 5,
14, 16). Every test drives the real server against fakes on loopback."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from tests import openai_wire as wire
from tests.conftest import RunningRouter, StartFake, StartRouter, free_port, provider_config
from tests.fakeserver import Reply, Request

ROUTER_KEY = "router-key-0a1b2c3d4e"
PROVIDER_KEY = "sk-or-v1-provider-key-5b7c9d1e"
HEADER_SECRET = "hdr-secret-token-8e1f2a3b"
QUERY_SECRET = "AIzaQuerySecret-3c4d5e6f7a"
SECRETS = (ROUTER_KEY, PROVIDER_KEY, HEADER_SECRET, QUERY_SECRET)
AUTH = {"x-api-key": ROUTER_KEY}
USER = [{"role": "user", "content": "hi"}]
FORGED = "2026-12-01T00:00:00+0000 INFO [pid 1] POST /api/config 200"


def body(*, stream: bool = False, model: str = "m") -> dict[str, Any]:
    return {"model": model, "max_tokens": 10, "messages": USER, "stream": stream}


def config(*providers: dict[str, Any], default: str = "fake,fake-model") -> dict[str, Any]:
    return {
        "APIKEY": ROUTER_KEY,
        "LOG_LEVEL": "trace",
        "Providers": list(providers),
        "Router": {"default": default},
    }


def secret_provider(url: str, **extra: Any) -> dict[str, Any]:
    """A provider holding a secret in each place a config can: key, header, URL query."""
    return {
        "name": "fake",
        "api_base_url": f"{url}?key={QUERY_SECRET}",
        "api_key": PROVIDER_KEY,
        "models": ["fake-model"],
        "headers": {"X-Upstream-Token": f"Token {HEADER_SECRET}"},
        **extra,
    }


def log_text(router: RunningRouter) -> str:
    files = router.log_file.parent.iterdir() if router.log_file.parent.exists() else []
    return "".join(p.read_text() for p in files)


async def request_lines(router: RunningRouter, count: int = 1) -> list[str]:
    """The request log lines, once ``count`` are there: each is written after its response."""
    with trio.fail_after(10):
        while True:
            lines = [
                line for line in log_text(router).splitlines() if " POST /v1/messages " in line
            ]
            if len(lines) >= count:
                return lines
            await trio.sleep(0.02)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# --- 3: secrets outside api_key in client errors and in the log --------------------------


async def test_connect_error_shows_the_url_with_its_secrets_masked(
    start_router: StartRouter,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
    router = await start_router(config(secret_provider(closed)))
    async with router.client() as client:
        response = await client.post("/v1/messages", json=body(), headers=AUTH)
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert message.startswith("cannot connect to provider 'fake' at http://127.0.0.1:")
    assert "key=AIza****6f7a" in message  # masked as GET /api/config shows it
    assert_no_secret(response.text)
    [line] = await request_lines(router)
    assert "POST /v1/messages 502 " in line, line
    assert_no_secret(log_text(router))


# --- 4: upstream error text that quotes what the upstream was sent ------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_error_text_is_redacted_for_the_client(
    start_router: StartRouter, start_fake: StartFake, stream: bool
) -> None:
    quoted = f"key {PROVIDER_KEY}, header {HEADER_SECRET}, query {QUERY_SECRET}, {ROUTER_KEY}"
    fake = await start_fake(
        lambda request: wire.error_reply(401, f"Incorrect API key: {quoted}", "invalid_api_key")
    )
    router = await start_router(config(secret_provider(fake.url + "/v1/chat/completions")))
    async with router.client() as client:
        response = await client.post("/v1/messages", json=body(stream=stream), headers=AUTH)
    # The upstream was sent each secret; the client sees none of them.
    sent = fake.requests[0]
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert sent.headers["x-upstream-token"] == f"Token {HEADER_SECRET}"
    assert sent.target.endswith(f"?key={QUERY_SECRET}")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert error["message"] == (
        "provider 'fake' answered 401: Incorrect API key: key ***, header ***, query ***, ***"
    )
    assert_no_secret(log_text(router))


# --- 16 (and 4 inside streams): errors in a stream ----------------------------------------

GEMINI_CHUNK = {
    "candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}}],
    "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "resp-1",
}
ANTHROPIC_START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 5, "output_tokens": 1},
    },
}


def data(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


GEMINI_FORMAT = {"use": ["gemini"]}
OPENROUTER: dict[str, Any] = {"path": "/v1/chat/completions"}
GEMINI: dict[str, Any] = {"path": "/v1beta/models/", "transformer": GEMINI_FORMAT}
ANTHROPIC: dict[str, Any] = {"path": "/v1/messages", "transformer": {"use": ["anthropic"]}}
HELLO = data(wire.chunk({"role": "assistant", "content": "Hi"}))

# (provider settings, the upstream's stream, the status logged, the error's start)
STREAM_ERRORS = {
    # https://openrouter.ai/docs/api-reference/streaming: a mid-stream error is a chunk with
    # an error object (code: the HTTP status) and finish_reason "error".
    "openrouter error object": (
        OPENROUTER,
        [
            HELLO,
            data(
                {
                    "id": "gen-1",
                    "error": {"code": 429, "message": f"Rate limited on key {PROVIDER_KEY}"},
                    "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
                }
            ),
        ],
        429,
        "Rate limited on key ***",
    ),
    "invalid SSE JSON": (
        OPENROUTER,
        [HELLO, b'data: {"broken": "' + PROVIDER_KEY.encode() + b"\n\n"],
        502,
        'upstream sent an invalid stream chunk: b\'{"broken": "***\'',
    ),
    "ends before a finish reason": (
        OPENROUTER,
        [HELLO],
        502,
        "upstream stream ended before completion",
    ),
    # https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes: an error object in
    # place of a chunk.
    "gemini error object": (
        GEMINI,
        [
            data(GEMINI_CHUNK),
            data(
                {
                    "error": {
                        "code": 503,
                        "message": f"The model is overloaded ({PROVIDER_KEY})",
                        "status": "UNAVAILABLE",
                    }
                }
            ),
        ],
        503,
        "The model is overloaded (***)",
    ),
    "gemini ends before a finishReason": (
        GEMINI,
        [data(GEMINI_CHUNK)],
        502,
        "Gemini stream ended before a finishReason",
    ),
    # https://docs.anthropic.com/en/docs/build-with-claude/streaming#error-events
    "anthropic error event": (
        ANTHROPIC,
        [
            b"event: message_start\n" + data(ANTHROPIC_START),
            b"event: error\n"
            + data(
                {
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": f"Overloaded {PROVIDER_KEY}"},
                }
            ),
        ],
        529,
        "Overloaded ***",
    ),
}


@pytest.mark.parametrize("case", list(STREAM_ERRORS))
async def test_stream_errors_are_logged_with_their_status_and_redacted(
    start_router: StartRouter, start_fake: StartFake, case: str
) -> None:
    settings, frames, status, message = STREAM_ERRORS[case]
    fake = await start_fake(lambda request: Reply.sse(frames))
    model = "gemini-2.5-flash" if settings is GEMINI else "fake-model"
    provider = provider_config(
        fake,
        path=str(settings["path"]),
        models=[model],
        transformer=settings.get("transformer"),
        api_key=PROVIDER_KEY,
    )
    router = await start_router(config(provider, default=f"fake,{model}"))
    async with router.client() as client:
        response = await client.post("/v1/messages", json=body(stream=True), headers=AUTH)
    assert response.status_code == 200
    assert "event: error" in response.text
    assert PROVIDER_KEY not in response.text
    errors = [
        json.loads(line[6:])["error"]
        for line in response.text.splitlines()
        if line.startswith("data: ") and '"type":"error"' in line.replace(" ", "")
    ]
    assert [e["message"] for e in errors] == [message]
    [line] = await request_lines(router)
    assert f"POST /v1/messages {status} route=default provider=fake " in line, line
    assert f" error={message!r}" in line, line
    assert PROVIDER_KEY not in log_text(router)


@pytest.mark.parametrize(
    ("status", "error_type"), [(401, "authentication_error"), (403, "permission_error")]
)
async def test_gemini_error_without_code_keeps_the_upstream_status(
    start_router: StartRouter, start_fake: StartFake, status: int, error_type: str
) -> None:
    # Gemini's proxies and older endpoints answer without "code"; the status line still counts.
    answer = {"error": {"message": "Request had invalid credentials.", "status": "DENIED"}}
    fake = await start_fake(lambda request: Reply.json(answer, status=status))
    provider = provider_config(
        fake, path="/v1beta/models/", models=["gemini-2.5-flash"], transformer=GEMINI_FORMAT
    )
    router = await start_router(config(provider, default="fake,gemini-2.5-flash"))
    async with router.client() as client:
        response = await client.post("/v1/messages", json=body(), headers=AUTH)
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type
    [line] = await request_lines(router)
    assert f"POST /v1/messages {status} " in line, line


async def session_usage(router: RunningRouter, session: str) -> dict[str, Any]:
    """The session's usage once it is recorded (a 499 is recorded as the router notices)."""
    async with router.client() as client:
        with trio.fail_after(10):
            while True:
                response = await client.get(f"/api/usage/sessions/{session}", headers=AUTH)
                if response.status_code == 200:
                    found: dict[str, Any] = response.json()
                    return found
                await trio.sleep(0.02)


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [(None, (0, 0)), ({"prompt_tokens": 9, "completion_tokens": 2}, (9, 2))],
)
async def test_a_cut_stream_is_logged_and_counted(
    start_router: StartRouter,
    start_fake: StartFake,
    usage: dict[str, int] | None,
    tokens: tuple[int, int],
) -> None:
    # Some servers (vLLM's continuous usage stats) put usage on every chunk.
    extra = {"usage": usage} if usage else {}
    frames = [data(wire.chunk({"role": "assistant", "content": "Hi"}, **extra))]
    fake = await start_fake(lambda request: Reply.sse(frames, then="cut"))
    router = await start_router(config(provider_config(fake)))
    async with router.client() as client:
        response = await client.post(
            "/v1/messages", json=body(stream=True), headers={**AUTH, "x-session-id": "cut"}
        )
    assert "event: error" in response.text
    found = await session_usage(router, "cut")
    assert found["providers"]["fake"] == {
        "inputTokens": tokens[0],
        "outputTokens": tokens[1],
        "cacheReadTokens": 0,
        "requests": 1,
        "costUsd": None,
        "unpricedRequests": 1,
    }
    [line] = await request_lines(router)
    assert "POST /v1/messages 502 " in line, line
    assert """ error="connection to provider 'fake' failed: RemoteProtocolError""" in line, line


async def test_a_stream_the_client_left_is_logged_499_and_counted(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    frames = [data(wire.chunk({"role": "assistant", "content": "Never ending"}))]
    fake = await start_fake(lambda request: Reply.sse(frames, then="hang"))
    router = await start_router(config(provider_config(fake)))
    headers = {**AUTH, "x-session-id": "gone"}
    async with (
        router.client() as client,
        client.stream("POST", "/v1/messages", json=body(stream=True), headers=headers) as response,
    ):
        async for line in response.aiter_lines():
            if "content_block_delta" in line:
                break
    found = await session_usage(router, "gone")
    assert found["totalRequests"] == 1
    [line] = await request_lines(router)
    assert "POST /v1/messages 499 " in line, line


# --- 14: a buffered answer is capped ------------------------------------------------------

BIG = 40 * 1024 * 1024


def big_completion() -> bytes:
    """A valid chat completion of 40 MB: without a cap it would be answered 200."""
    answer = wire.completion("x")
    answer["choices"][0]["message"]["content"] = "x" * BIG
    return json.dumps(answer).encode()


class BigAnswer:
    """A raw HTTP/1.1 upstream that answers one 40 MB completion and notes when the router
    closes its connection (a pooled connection would stay open)."""

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked
        self.closed = trio.Event()
        self.port = 0

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(trio.serve_tcp, self._serve, 0)
        self.port = listeners[0].socket.getsockname()[1]

    async def _serve(self, stream: trio.SocketStream) -> None:
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                head += await stream.receive_some(65536)
            answer = big_completion()
            if self.chunked:
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                for i in range(0, len(answer), 1 << 20):
                    piece = answer[i : i + (1 << 20)]
                    await stream.send_all(b"%x\r\n%s\r\n" % (len(piece), piece))
                await stream.send_all(b"0\r\n\r\n")
            else:
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n" % len(answer)
                )
                await stream.send_all(answer)
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.closed.set()
            await stream.aclose()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_buffered_answer_over_32_mb_is_a_502(
    start_router: StartRouter, nursery: trio.Nursery, chunked: bool
) -> None:
    upstream = BigAnswer(chunked)
    await upstream.start(nursery)
    provider = {
        "name": "big",
        "api_base_url": f"http://127.0.0.1:{upstream.port}/v1/chat/completions",
        "api_key": PROVIDER_KEY,
        "models": ["m"],
    }
    router = await start_router(config(provider, default="big,m"))
    async with router.client() as client:
        response = await client.post("/v1/messages", json=body(), headers=AUTH)
    assert response.status_code == 502
    assert response.json()["error"] == {
        "type": "api_error",
        "message": "provider 'big' answered more than 32 MB",
    }
    # The connection was closed, not kept in the pool with 8 MB of the answer unread.
    with trio.fail_after(10):
        await upstream.closed.wait()


# --- 5: log lines a client cannot forge ---------------------------------------------------


async def raw_get(router: RunningRouter, target: bytes) -> bytes:
    """One request over a raw socket: the target goes on the wire exactly as given."""
    host, port = router.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"GET " + target + b" HTTP/1.1\r\nhost: x\r\n\r\n")
        received = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in received:
                received += await stream.receive_some(65536)
        return received.split(b"\r\n", 1)[0]


async def test_a_path_cannot_forge_a_log_line_or_write_a_nul(start_router: StartRouter) -> None:
    router = await start_router({})
    forged = FORGED.replace(" ", "%20").encode()
    assert await raw_get(router, b"/x%0a" + forged) == b"HTTP/1.1 404 "
    assert await raw_get(router, b"/y%0d%0a" + forged) == b"HTTP/1.1 404 "
    assert await raw_get(router, b"/z%00nul%7f%c2%85") == b"HTTP/1.1 404 "
    raw = router.log_file.read_bytes()
    assert b"\x00" not in raw and b"\r" not in raw
    lines = raw.decode().splitlines()
    assert not [line for line in lines if line.startswith(FORGED[:24])]
    assert any(f"GET /x\\n{FORGED} 404 " in line for line in lines)
    assert any(f"GET /y\\r\\n{FORGED} 404 " in line for line in lines)
    assert any("GET /z\\x00nul\\x7f\\x85 404 " in line for line in lines)


async def test_a_model_name_cannot_forge_a_log_line(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    def upstream(request: Request) -> Reply:
        return Reply.json(wire.completion("ok"))

    fake = await start_fake(upstream)
    router = await start_router(config(provider_config(fake)))
    async with router.client() as client:
        response = await client.post(
            "/v1/messages", json=body(model=f"fake,fake-model\n{FORGED}"), headers=AUTH
        )
    assert response.status_code == 200
    [line] = await request_lines(router)
    lines = log_text(router).splitlines()
    assert not [line for line in lines if line.startswith(FORGED[:24])]
    assert f" model=fake-model\\n{FORGED} " in line

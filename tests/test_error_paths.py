"""The error paths of ``POST /v1/messages`` and ``count_tokens`` that no other test reached,
each driven through the real server: a provider that never answers, a request without a model,
a client that leaves mid-upload, translators and hooks that fail before or during a stream, a
usage store that cannot record, an unexpected exception, and image sizes in token counts.

Where a failure cannot be caused from outside (a bug in a translator, a broken usage store), the
one object that fails is replaced inside the running router; everything else is real.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import RunningRouter, StartFake, StartRouter, provider_config
from tests.fake_openai import FakeChatProvider
from tests.fakeserver import Reply, Request
from trio_router import messages
from trio_router.providers.openai import OpenAIFormat

KEY = "sk-or-fake-0123456789"
ASK = {"model": "fake,m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


async def router_for(
    start_router: StartRouter, start_fake: StartFake, handler: Any = None, **config: Any
) -> tuple[RunningRouter, Any]:
    handler = handler or FakeChatProvider(KEY, ["m"], "true")
    fake = await start_fake(handler)
    provider = provider_config(fake, path=FakeChatProvider.path, api_key=KEY, models=["m"])
    provider.update(config.pop("provider", {}))
    router = await start_router(
        {"Providers": [provider], "Router": {"default": "fake,m"}, **config}
    )
    return router, handler


def events(text: str) -> list[dict[str, Any]]:
    found = []
    for frame in text.strip().split("\n\n"):
        for line in frame.splitlines():
            if line.startswith("data: "):
                found.append(json.loads(line[6:]))
    return found


async def wait_for_log(router: RunningRouter, words: str) -> str:
    with trio.fail_after(10):
        while True:
            text = router.log_file.read_text() if router.log_file.exists() else ""
            if words in text:
                return text
            await trio.sleep(0.05)


async def silent_after_the_head(request: Request) -> Reply:
    """Headers at once, then nothing for longer than API_TIMEOUT_MS between two reads."""
    if request.json().get("stream"):
        return Reply.sse([b": keep-alive\n\n"], delay=30)
    return Reply(200, [("content-type", "application/json")], [b"{}"], delay=30)


async def test_a_provider_that_goes_silent_is_a_504(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    router, _ = await router_for(
        start_router, start_fake, silent_after_the_head, API_TIMEOUT_MS=300
    )
    async with router.client() as client:
        response = await client.post("/v1/messages", json=ASK)
        stream = await client.post("/v1/messages", json={**ASK, "stream": True})
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["type"] == "api_error"
    assert error["message"].startswith("provider 'fake' timed out"), error
    # Streamed, the 200 and its headers are already sent: the stream ends with the error.
    assert stream.status_code == 200
    (last,) = events(stream.text)
    assert last["type"] == "error" and last["error"]["type"] == "api_error"
    assert last["error"]["message"].startswith("provider 'fake' timed out"), last


async def test_a_request_without_a_model_is_a_400(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    router, fake = await router_for(start_router, start_fake)
    async with router.client() as client:
        response = await client.post("/v1/messages", json={**ASK, "model": ""})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "invalid request: `model` is required",
    }
    assert not fake.answers


async def test_a_client_that_leaves_mid_upload_is_a_499(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    router, fake = await router_for(start_router, start_fake)
    host, port = router.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(
        b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 1000\r\n\r\n" + b'{"model": "fake,m", '
    )
    await stream.aclose()
    log = await wait_for_log(router, "POST /v1/messages 499")
    assert "Traceback" not in log
    assert not fake.answers


async def test_an_unexpected_exception_is_a_500_that_names_it(
    start_router: StartRouter, start_fake: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(request: Any) -> Any:
        raise LookupError("no such table")

    monkeypatch.setattr(messages, "normalize", broken)
    router, _ = await router_for(start_router, start_fake)
    async with router.client() as client:
        response = await client.post("/v1/messages", json=ASK)
    assert response.status_code == 500
    assert response.json()["error"] == {
        "type": "api_error",
        "message": "internal error: LookupError: no such table",
    }
    assert "unexpected error in /v1/messages" in await wait_for_log(router, "500")


async def test_a_translator_that_fails_to_start_is_a_500_before_the_stream(
    start_router: StartRouter, start_fake: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, request: Any, route: Any) -> Any:
        raise KeyError("thinking")

    monkeypatch.setattr(OpenAIFormat, "stream_translator", broken)
    router, fake = await router_for(start_router, start_fake)
    async with router.client() as client:
        response = await client.post("/v1/messages", json={**ASK, "stream": True})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == {
        "type": "api_error",
        "message": "transformer 'openrouter' failed: KeyError: 'thinking'",
    }
    assert not fake.answers  # nothing was sent upstream


async def test_a_translator_that_fails_mid_stream_ends_it_with_an_error_event(
    start_router: StartRouter, start_fake: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = OpenAIFormat.stream_translator

    def failing(self: Any, request: Any, route: Any) -> Any:
        """The real translator, failing once the upstream's stream has ended."""
        translator = original(self, request, route)

        def close() -> Any:
            raise ValueError("unexpected delta")

        translator.close = close  # type: ignore[method-assign]
        return translator

    monkeypatch.setattr(OpenAIFormat, "stream_translator", failing)
    router, _ = await router_for(start_router, start_fake)
    async with router.client() as client:
        response = await client.post("/v1/messages", json={**ASK, "stream": True})
    assert response.status_code == 200
    found = events(response.text)
    assert found[0]["type"] == "message_start"
    assert any(e["type"] == "content_block_delta" for e in found)  # sent before the failure
    assert found[-1] == {
        "type": "error",
        "error": {
            "type": "api_error",
            "message": "transformer 'openrouter' failed: unexpected delta",
        },
    }
    log = await wait_for_log(router, "stream translation failed (openrouter)")
    assert "ValueError: unexpected delta" in log


HOOK = '''
import msgspec
from trio_router.anthropic import ContentBlockDelta, Ping, TextDelta


class Shout:
    """Upper-cases streamed text, drops pings; with ``fail``, raises on the first text."""

    name = "shout"

    def __init__(self, options):
        self.fail = options.get("fail", False)

    def transform_event(self, event, route):
        if isinstance(event, Ping):
            return None
        if isinstance(event, ContentBlockDelta) and isinstance(event.delta, TextDelta):
            if self.fail:
                raise RuntimeError("no shouting today")
            return msgspec.structs.replace(event, delta=TextDelta(event.delta.text.upper()))
        return event
'''


@pytest.mark.parametrize("fail", [False, True])
async def test_custom_stream_event_hooks(
    start_router: StartRouter, start_fake: StartFake, tmp_path: Path, fail: bool
) -> None:
    """A custom transformer's ``transform_event`` sees every streamed event: what it returns is
    sent, None drops the event, and an exception ends the stream with an error event."""
    path = tmp_path / "shout.py"
    path.write_text(HOOK)
    router, _ = await router_for(
        start_router,
        start_fake,
        transformers=[{"path": str(path), "options": {"fail": fail}}],
        provider={"transformer": {"use": ["shout", "openrouter"]}},
    )
    async with router.client() as client:
        response = await client.post("/v1/messages", json={**ASK, "stream": True})
        plain = await client.post("/v1/messages", json=ASK)
    assert response.status_code == 200
    found = events(response.text)
    assert not any(e["type"] == "ping" for e in found)
    text = "".join(
        e["delta"]["text"] for e in found if e.get("delta", {}).get("type") == "text_delta"
    )
    expected = plain.json()["content"][0]["text"]  # not streamed: no event hook ran
    if fail:
        assert text == ""
        assert found[-1]["type"] == "error"
        assert "no shouting today" in found[-1]["error"]["message"]
    else:
        assert text == expected.upper() != expected
        assert found[-1]["type"] == "message_stop"


async def test_a_usage_store_that_cannot_record_does_not_fail_the_request(
    start_router: StartRouter, start_fake: StartFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    router, _ = await router_for(start_router, start_fake)

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    usage = router.app.state.usage
    name = "record" if hasattr(usage, "record") else "add"
    monkeypatch.setattr(usage, name, broken)
    async with router.client() as client:
        complete = await client.post("/v1/messages", json=ASK)
        stream = await client.post("/v1/messages", json={**ASK, "stream": True})
    assert complete.status_code == 200 and complete.json()["content"]
    assert stream.status_code == 200 and events(stream.text)[-1]["type"] == "message_stop"
    log = await wait_for_log(router, "could not record usage for session default")
    assert "OSError: disk full" in log


# --- image sizes in token counts ----------------------------------------------------------------


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00" * 16


def jpeg(width: int, height: int) -> bytes:
    """SOI, an APP0 segment to skip, then a baseline start-of-frame with the size."""
    app0 = b"\xff\xe0" + (16).to_bytes(2, "big") + b"JFIF\x00" + b"\x00" * 9
    sof0 = b"\xff\xc0" + (17).to_bytes(2, "big") + b"\x08" + struct.pack(">HH", height, width)
    return b"\xff\xd8" + app0 + sof0 + b"\x00" * 32


def image_request(data: str, media_type: str) -> dict[str, Any]:
    image = {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"model": "fake,m", "messages": [{"role": "user", "content": [image]}]}


@pytest.mark.parametrize(
    ("data", "media_type", "tokens"),
    [
        # Anthropic's estimate, width * height / 750 tokens, at most about 1600
        # (https://docs.anthropic.com/en/docs/build-with-claude/vision#calculate-image-costs).
        (base64.b64encode(gif(300, 150)).decode(), "image/gif", 60),
        (base64.b64encode(jpeg(200, 150)).decode(), "image/jpeg", 40),
        (base64.b64encode(jpeg(4000, 3000)).decode(), "image/jpeg", 1600),
        # Data that does not decode, or a JPEG whose segments are broken: the maximum.
        ("@@@@not base64@@@@", "image/png", 1600),
        (base64.b64encode(b"\xff\xd8\x00\x01" + b"\x00" * 16).decode(), "image/jpeg", 1600),
    ],
    ids=["gif", "jpeg", "large-jpeg", "bad-base64", "broken-jpeg"],
)
async def test_image_tokens(
    start_router: StartRouter, start_fake: StartFake, data: str, media_type: str, tokens: int
) -> None:
    router, _ = await router_for(start_router, start_fake)
    async with router.client() as client:
        with_image = await client.post(
            "/v1/messages/count_tokens", json=image_request(data, media_type)
        )
        text_only = await client.post(
            "/v1/messages/count_tokens",
            json={
                "model": "fake,m",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
            },
        )
    assert with_image.status_code == 200, with_image.text
    base = text_only.json()["input_tokens"] - 1  # the one-token text "x"
    assert with_image.json()["input_tokens"] - base == tokens

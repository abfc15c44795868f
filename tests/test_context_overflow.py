"""A prompt too long for the provider, in Anthropic's words (issue 17): what makes Claude Code
compact its context."""

from __future__ import annotations

from typing import Any

import pytest

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request
from trio_router.overflow import prompt_too_long

USER = [{"role": "user", "content": "hi"}]


def openai_overflow(request: Request) -> Reply:
    # https://platform.openai.com/docs/guides/error-codes: code context_length_exceeded.
    return wire.error_reply(
        400,
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 130512 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        param="messages",
        code="context_length_exceeded",
    )


def deepseek_overflow(request: Request) -> Reply:
    return wire.error_reply(
        400,
        "This model's maximum context length is 131072 tokens. However, you requested 140000 "
        "tokens (139000 in the messages, 1000 in the completion). Please reduce the length of "
        "the messages or completion.",
        "invalid_request_error",
    )


def gemini_overflow(request: Request) -> Reply:
    # https://ai.google.dev/gemini-api/docs/troubleshooting: 400 INVALID_ARGUMENT.
    error = {
        "code": 400,
        "message": "The input token count (1234567) exceeds the maximum number of tokens "
        "allowed (1048576).",
        "status": "INVALID_ARGUMENT",
    }
    return Reply.json({"error": error}, status=400)


CASES = [
    ("openai", openai_overflow, "/v1/chat/completions", "130512 tokens > 128000 maximum"),
    ("deepseek", deepseek_overflow, "/chat/completions", "139000 tokens > 131072 maximum"),
    ("gemini", gemini_overflow, "/v1beta/models/", "1234567 tokens > 1048576 maximum"),
]


@pytest.mark.parametrize(("kind", "handler", "path", "expected"), CASES)
async def test_overflow_becomes_anthropics_words(
    start_fake: StartFake,
    start_router: StartRouter,
    kind: str,
    handler: Any,
    path: str,
    expected: str,
) -> None:
    fake = await start_fake(handler)
    provider = provider_config(
        fake, name=kind, path=path, models=["m"], transformer={"use": [kind]}
    )
    router = await start_router({"Providers": [provider], "Router": {"default": f"{kind},m"}})
    body = {"model": "claude-sonnet-4", "max_tokens": 20, "messages": USER}
    async with router.client() as client:
        response = await client.post("/v1/messages", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": f"prompt is too long: {expected}"},
    }
    assert len(fake.requests) == 1


async def test_other_bad_requests_keep_their_words(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    fake = await start_fake(lambda r: wire.error_reply(400, "bad tool schema", "invalid_request"))
    provider = provider_config(fake, name="p", models=["m"])
    router = await start_router({"Providers": [provider], "Router": {"default": "p,m"}})
    body = {"model": "claude-sonnet-4", "max_tokens": 20, "messages": USER}
    async with router.client() as client:
        response = await client.post("/v1/messages", json=body)
    assert response.status_code == 400
    assert "bad tool schema" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("status", "text", "expected"),
    [
        (
            400,
            "This endpoint's maximum context length is 200000 tokens. However, you requested "
            "about 250000 tokens (249000 of text input, 1000 in the output).",
            "prompt is too long: 250000 tokens > 200000 maximum",
        ),
        (413, "maximum context length is 8192 tokens", "prompt is too long: more than 8192 tokens"),
        (400, "max_tokens is too large", None),
        (500, "maximum context length is 8192 tokens, resulted in 9000 tokens", None),
    ],
)
def test_overflow_wordings(status: int, text: str, expected: str | None) -> None:
    found = prompt_too_long(status, text)
    assert (found.message if found is not None else None) == expected

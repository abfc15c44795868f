"""What a client reads when a provider's error body is not OpenAI's shape (a proxy's plain
text, an error that is only a string, a top-level message, an empty or unknown object)."""

from __future__ import annotations

import json

import anthropic
import pytest

from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request

BODIES = [
    (b"<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>"),
    (b"", "(empty error body)"),
    (json.dumps({"error": "model overloaded"}).encode(), "model overloaded"),
    (json.dumps({"message": "quota exhausted"}).encode(), "quota exhausted"),
    (json.dumps({"detail": "no such route"}).encode(), '{"detail": "no such route"}'),
    (json.dumps({"error": {"message": "bad field", "type": "x"}}).encode(), "bad field"),
]


@pytest.mark.parametrize(("body", "shown"), BODIES)
async def test_each_error_body_shape_reaches_the_client_as_its_message(
    start_router: StartRouter, start_fake: StartFake, body: bytes, shown: str
) -> None:
    def answer(request: Request) -> Reply:
        # 400 is never retried, so one request shows the message as the provider gave it.
        return Reply(400, [("content-type", "text/plain")], [body])

    fake = await start_fake(answer)
    config = {
        "LOG": False,
        "Providers": [provider_config(fake)],
        "Router": {"default": "fake,fake-model"},
    }
    router = await start_router(config)
    sdk = anthropic.AsyncAnthropic(base_url=router.url, api_key="any", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as raised:
        await sdk.messages.create(
            model="fake,fake-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.body["error"]["message"] == f"provider 'fake' answered 400: {shown}"  # type: ignore[index]

"""DeepSeek's Anthropic-format API through the ``anthropic`` passthrough (issue 22).

DeepSeek serves Anthropic's Messages API at ``https://api.deepseek.com/anthropic``
(https://api-docs.deepseek.com/guides/anthropic_api): ``x-api-key`` is fully supported,
``anthropic-version`` and ``anthropic-beta`` are ignored, its own model names are served, and a
model name that is neither one of them nor ``claude*`` is a 400. The fake below keeps to that.
"""

from __future__ import annotations

import anthropic

from tests.capture_server import _stream_events
from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request

KEY = "sk-deepseek-anthropic-0123456789abcdef"
MODELS = ("deepseek-flash", "deepseek-v4-pro")


def deepseek_anthropic(request: Request) -> Reply:
    if request.path != "/anthropic/v1/messages":
        return Reply.json({"error": {"message": "Not Found"}}, status=404)
    if request.headers.get("x-api-key") != KEY:
        error = {"type": "authentication_error", "message": "invalid api key"}
        return Reply.json({"type": "error", "error": error}, status=401)
    body = request.json()
    model = body.get("model", "")
    if model not in MODELS and not model.startswith("claude"):
        error = {"type": "invalid_request_error", "message": f"Model Not Exist: {model}"}
        return Reply.json({"type": "error", "error": error}, status=400)
    content = [{"type": "text", "text": "Hi! How can I help?"}]
    if body.get("stream"):
        return Reply.sse(_stream_events(model, content, 1))
    return Reply.json(
        {
            "id": "msg_ds1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 9},
        }
    )


async def test_deepseek_serves_claude_code_in_anthropic_format_through_the_passthrough(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(deepseek_anthropic)
    provider = provider_config(
        fake,
        name="deepseek-anthropic",
        path="/anthropic/v1/messages",
        models=list(MODELS),
        transformer={"use": ["anthropic"]},
        api_key=KEY,
    )
    router = await start_router(
        {
            "LOG": False,
            "Providers": [provider],
            "Router": {"default": "deepseek-anthropic,deepseek-flash"},
        }
    )
    sdk = anthropic.AsyncAnthropic(base_url=router.url, api_key="any", max_retries=0)
    message = await sdk.messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "Hi! How can I help?"  # type: ignore[union-attr]
    async with sdk.messages.stream(
        model="deepseek-anthropic,deepseek-v4-pro",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == "Hi! How can I help?"  # type: ignore[union-attr]
    assert final.usage.output_tokens == 9
    sent = [r.json()["model"] for r in fake.requests]
    assert sent == ["deepseek-flash", "deepseek-v4-pro"]

"""The official anthropic SDK as the router's client, the way the end-to-end tests use it."""

from __future__ import annotations

from typing import Any

import anthropic
from anthropic.types import Message, MessageParam

from tests.conftest import RunningRouter

USER: list[MessageParam] = [{"role": "user", "content": "Say hello"}]


def client(router: RunningRouter, **kwargs: Any) -> anthropic.AsyncAnthropic:
    """No retries: a test sees the first answer, error or not."""
    return anthropic.AsyncAnthropic(
        base_url=router.url, api_key="client-key", max_retries=0, **kwargs
    )


async def ask(sdk: anthropic.AsyncAnthropic, stream: bool, **params: Any) -> Message:
    """One request, streamed (then rebuilt by the SDK) or not."""
    params.setdefault("model", "claude-sonnet-4-5")
    params.setdefault("max_tokens", 1024)
    params.setdefault("messages", USER)
    if not stream:
        message: Message = await sdk.messages.create(**params)
        return message
    async with sdk.messages.stream(**params) as events:
        return await events.get_final_message()


def usage(message: Message) -> tuple[int, int, int | None]:
    u = message.usage
    return u.input_tokens, u.output_tokens, u.cache_read_input_tokens

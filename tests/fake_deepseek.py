"""A fake DeepSeek API (https://api-docs.deepseek.com/) playing a thinking model on a Bash task.

DeepSeek speaks OpenAI chat completions (tests/fake_openai.py does the model's part) with its own
rules, enforced here with DeepSeek's status codes and messages:

- ``POST /chat/completions`` under ``https://api.deepseek.com``
  (https://api-docs.deepseek.com/api/create-chat-completion).
- ``max_tokens`` outside the mode's range is a 400, not clamped.
- Thinking mode (``thinking: {"type": "enabled"}`` or ``deepseek-reasoner``) streams the chain
  of thought as ``reasoning_content`` before the answer, and every later assistant message that
  made tool calls must carry its ``reasoning_content`` again, else 400
  (https://api-docs.deepseek.com/guides/thinking_mode#tool-calls).
- Usage reports cache hits as ``prompt_cache_hit_tokens`` / ``prompt_cache_miss_tokens`` beside
  OpenAI's ``prompt_tokens_details.cached_tokens``; a ``: keep-alive`` comment may come first
  (recorded streams in tests/fixtures/deepseek/).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from tests import openai_wire as wire
from tests.fake_openai import JSON, Answer, FakeChatProvider, Rejection, Usage
from tests.fakeserver import Reply, Request

MODELS = ("deepseek-chat", "deepseek-reasoner")
REASONER = "deepseek-reasoner"
# https://api-docs.deepseek.com/quick_start/pricing: the two names are DeepSeek-V3.2's
# non-thinking and thinking modes, with a "MAX OUTPUT" of 8K and 64K; the thinking toggle
# switches deepseek-chat into thinking mode (https://api-docs.deepseek.com/guides/thinking_mode).
MAX_TOKENS = {False: 8192, True: 65536}


@dataclass
class FakeDeepSeek(FakeChatProvider):
    reasoning: str = "The user wants the marker file written; Bash can do it."

    path: ClassVar[str] = "/chat/completions"
    reasoning_field: ClassVar[str] = "reasoning_content"
    keep_alive: ClassVar[bytes] = b": keep-alive\n\n"

    def check(self, request: Request) -> JSON:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise Rejection(
                401,
                f"Authentication Fails, Your api key: ****{self.api_key[-4:]} is invalid",
                "authentication_error",
            )
        body = super().check(request)
        limit = MAX_TOKENS[self.thinking(body)]
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and not 1 <= max_tokens <= limit:
            raise Rejection(
                400, f"Invalid max_tokens value, the valid range of max_tokens is [1, {limit}]"
            )
        if self.thinking(body):
            for i, message in enumerate(body["messages"]):
                if (
                    message["role"] == "assistant"
                    and message.get("tool_calls")
                    and "reasoning_content" not in message
                ):
                    raise Rejection(
                        400,
                        f"Missing `reasoning_content` field in the assistant message at message "
                        f"index {i}. For more information, please refer to "
                        "https://api-docs.deepseek.com/guides/thinking_mode#tool-calls",
                    )
        return body

    def check_model(self, model: Any) -> None:
        if model not in MODELS or model not in self.models:
            raise Rejection(400, "Model Not Exist")

    def thinking(self, body: JSON) -> bool:
        toggle: Any = body.get("thinking") or {}
        return body.get("model") == REASONER or toggle.get("type") == "enabled"

    def error_reply(self, rejection: Rejection) -> Reply:
        # DeepSeek's error bodies: OpenAI's shape with code "invalid_request_error"
        # (tests/fixtures/deepseek/error_balance.json).
        body = {
            "error": {
                "message": rejection.message,
                "type": rejection.kind,
                "param": None,
                "code": "invalid_request_error",
            }
        }
        return Reply.json(body, status=rejection.status)

    def events(self, body: JSON, answer: Answer) -> list[JSON]:
        """DeepSeek puts the usage on the chunk with ``finish_reason`` and ``"usage": null`` on
        the others (tests/fixtures/deepseek/stream_reasoner.sse)."""
        events = super().events(body, answer)
        usage = events.pop()["usage"] if not events[-1]["choices"] else None
        for event in events:
            event["usage"] = None
        events[-1]["usage"] = usage
        return events

    def usage_chunk(self, usage: Usage) -> JSON:
        chunk = wire.usage_chunk(usage.prompt, usage.completion, usage.cached)
        chunk["usage"]["prompt_cache_hit_tokens"] = usage.cached
        chunk["usage"]["prompt_cache_miss_tokens"] = usage.prompt - usage.cached
        chunk["usage"]["completion_tokens_details"] = {"reasoning_tokens": usage.completion // 2}
        return chunk

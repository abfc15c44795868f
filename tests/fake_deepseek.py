"""A fake DeepSeek API (https://api-docs.deepseek.com/) playing a thinking model on a Bash task.

DeepSeek speaks OpenAI chat completions (tests/fake_openai.py does the model's part) with its own
rules, enforced here with DeepSeek's status codes and messages:

- ``POST /chat/completions`` under ``https://api.deepseek.com``
  (https://api-docs.deepseek.com/api/create-chat-completion).
- ``max_tokens`` is an integer in the model's range, else a 400, not clamped.
- Messages carry text only: an ``image_url`` part is a 400 ``unknown variant `image_url`,
  expected `text``` (what the API answers; see trio_router/providers/deepseek.py).
- Model names (https://api-docs.deepseek.com/quick_start/pricing): the V4 models
  ``deepseek-flash`` (``deepseek-v4-flash`` still answers) and ``deepseek-v4-pro``, 384K output;
  the legacy aliases ``deepseek-chat`` and ``deepseek-reasoner`` (non-thinking and thinking).
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
from tests.fake_openai import (
    JSON,
    OPENAI_FIELDS,
    TEXT_PARTS,
    Answer,
    FakeChatProvider,
    Rejection,
    Rule,
    Usage,
    one_of,
    stop_rule,
)
from tests.fakeserver import Reply, Request

REASONER = "deepseek-reasoner"
LEGACY = ("deepseek-chat", REASONER)
V4 = ("deepseek-flash", "deepseek-v4-flash", "deepseek-v4-pro")
MODELS = (*LEGACY, *V4)
# https://api-docs.deepseek.com/quick_start/pricing: "MAX OUTPUT" 384K for the V4 models. The
# legacy names keep the limits of their V3.2 modes, 8K without thinking and 64K with it (the
# thinking toggle switches deepseek-chat into the reasoner's mode,
# https://api-docs.deepseek.com/guides/thinking_mode): stricter than what the aliases now serve.
V4_MAX_TOKENS = 384 * 1024
LEGACY_MAX_TOKENS = {False: 8192, True: 65536}


@dataclass
class FakeDeepSeek(FakeChatProvider):
    reasoning: str = "The user wants the marker file written; Bash can do it."

    path: ClassVar[str] = "/chat/completions"
    reasoning_field: ClassVar[str] = "reasoning_content"
    keep_alive: ClassVar[bytes] = b": keep-alive\n\n"
    # https://api-docs.deepseek.com/api/create-chat-completion: OpenAI's fields plus
    # ``thinking``; up to 16 stop strings; efforts as https://api-docs.deepseek.com/guides/
    # thinking_mode takes them (low and medium become high, xhigh becomes max).
    fields: ClassVar[dict[str, Rule | None]] = {
        **OPENAI_FIELDS,
        "thinking": None,  # these two checked in check(), with DeepSeek's messages
        "max_tokens": None,
        "stop": stop_rule(16),
        "reasoning_effort": one_of("low", "medium", "high", "xhigh", "max"),
    }
    message_fields: ClassVar[dict[str, frozenset[str]]] = {
        "assistant": frozenset({"reasoning_content", "prefix"})
    }
    user_parts: ClassVar[dict[str, JSON]] = TEXT_PARTS

    def check(self, request: Request) -> JSON:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise Rejection(
                401,
                f"Authentication Fails, Your api key: ****{self.api_key[-4:]} is invalid",
                "authentication_error",
            )
        body = super().check(request)
        toggle = body.get("thinking")
        if toggle is not None and (
            not isinstance(toggle, dict)
            or set(toggle) != {"type"}
            or toggle["type"] not in ("enabled", "disabled")
        ):
            raise Rejection(400, "thinking.type must be one of: enabled, disabled")
        limit = V4_MAX_TOKENS if body["model"] in V4 else LEGACY_MAX_TOKENS[self.thinking(body)]
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool)
            or not isinstance(max_tokens, int)
            or not 1 <= max_tokens <= limit
        ):
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

    def unknown_part(self, kind: Any, where: str, kinds: list[str]) -> Rejection:
        return Rejection(
            400,
            f"Failed to deserialize the JSON body into the target type: {where}: unknown "
            f"variant `{kind}`, expected `text`",
        )

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

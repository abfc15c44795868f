"""DeepSeek (https://api-docs.deepseek.com/): OpenAI chat completions with DeepSeek's own rules.

The wire types, the response mapping and the stream translator are openai.py's: DeepSeek streams
its chain of thought as ``reasoning_content`` (thinking blocks, before the text) and reports
``prompt_cache_hit_tokens`` / ``prompt_tokens_details.cached_tokens`` (cache reads), which that
module already reads. What differs is the request:

- ``max_tokens`` is capped at what the model accepts (:data:`MAX_OUTPUT_TOKENS`); DeepSeek
  answers 400 above it instead of clamping.
- Thinking: ``thinking`` enabled or adaptive sends ``{"thinking": {"type": "enabled"}}`` and
  ``reasoning_effort``; no thinking sends ``disabled``, because the V4 models think by default
  while an Anthropic request without ``thinking`` asks for none
  (https://api-docs.deepseek.com/guides/thinking_mode). ``deepseek-reasoner`` always thinks and
  gets no toggle. The ``thinking_model`` option switches model when thinking is asked for (e.g.
  ``deepseek-chat`` -> ``deepseek-reasoner``), for deployments where the model decides.
- In thinking mode ``temperature`` and ``top_p`` have no effect (same page), so they are not
  sent, and every assistant turn carries ``reasoning_content``: DeepSeek answers 400 "Missing
  ``reasoning_content`` field in the assistant message" on tool-call turns without it. Thinking
  the client sent back goes there; otherwise it is empty. Without thinking none is sent.
- Images and files: DeepSeek's chat models read text only, and a request with an ``image_url``
  part is a 400 (``unknown variant `image_url`, expected `text```), which would end a Claude Code
  session for good once a screenshot is in its history. Each becomes a short text note.
- ``output_config.format``: DeepSeek has JSON Output (``json_object``) but no ``json_schema``
  (https://api-docs.deepseek.com/guides/json_mode), so the schema goes into the system prompt.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import msgspec
from msgspec import Struct

from ..anthropic import MessagesRequest
from .base import Route, UpstreamRequest
from .openai import (
    ChatMessage,
    ChatRequest,
    ContentPart,
    ImagePart,
    OpenAIFormat,
    TextPart,
    chat_request,
)

# https://api-docs.deepseek.com/quick_start/pricing ("MAX OUTPUT"): 8K for deepseek-chat and
# 64K for deepseek-reasoner (V3.2; the reasoner's limit includes its chain of thought), 384K for
# the V4 models.
MAX_OUTPUT_TOKENS: Final[dict[str, int]] = {
    "deepseek-chat": 8 * 1024,
    "deepseek-reasoner": 64 * 1024,
    "deepseek-flash": 384 * 1024,
    "deepseek-v4-flash": 384 * 1024,
    "deepseek-v4-pro": 384 * 1024,
}
REASONER: Final = "deepseek-reasoner"
# The V3 names predate reasoning_effort: thinking there is the model (or the toggle), not a level.
_LEGACY: Final = frozenset({"deepseek-chat", REASONER})
# Claude Code's "ultrathink" budget is 31999; DeepSeek's efforts are high (default) and max.
_MAX_EFFORT_BUDGET: Final = 24576
_JSON_PROMPT: Final = "Reply with one JSON object that matches this JSON Schema:\n"


class DeepSeekOptions(Struct, frozen=True, forbid_unknown_fields=True):
    """The DeepSeek-only keys of a provider's ``["deepseek", {...}]`` entry; the others are
    openai.py's (e.g. ``repair_tool_json``)."""

    # Per-model output caps, over MAX_OUTPUT_TOKENS.
    max_output_tokens: dict[str, int] = {}
    # The model to use when the request asks for thinking.
    thinking_model: str | None = None
    # Send DeepSeek's thinking toggle and effort; off for hosts that reject unknown fields.
    thinking_toggle: bool = True


class ThinkingToggle(Struct):
    type: str  # enabled | disabled


class JSONObjectFormat(Struct, tag="json_object", tag_field="type"):
    pass


class DeepSeekChatRequest(ChatRequest, omit_defaults=True):
    """openai.py's request plus DeepSeek's fields."""

    response_format: JSONObjectFormat | None = None  # type: ignore[assignment]
    thinking: ThinkingToggle | None = None


_OWN_KEYS: Final = frozenset(DeepSeekOptions.__struct_fields__)
_encode = msgspec.json.Encoder().encode


def _effort(request: MessagesRequest) -> str | None:
    """``reasoning_effort``; DeepSeek takes Anthropic's names (low ... max) and maps them."""
    config = request.output_config
    if config is not None and config.effort:
        return config.effort
    thinking = request.thinking
    if thinking is not None and thinking.budget_tokens:
        return "max" if thinking.budget_tokens >= _MAX_EFFORT_BUDGET else "high"
    return None


def _add_system(messages: list[ChatMessage], text: str) -> None:
    """Append ``text`` to the leading system message (a stable prefix keeps the cache warm)."""
    first = messages[0] if messages else None
    if first is not None and first.role == "system" and isinstance(first.content, str):
        first.content = f"{first.content}\n\n{text}"
    else:
        messages.insert(0, ChatMessage(role="system", content=text))


class DeepSeekFormat(OpenAIFormat):
    name: ClassVar[str] = "deepseek"
    defaults: ClassVar[dict[str, Any]] = {
        "reasoning": "none",  # DeepSeek's own fields are set below
        "reasoning_history": "reasoning_content",
    }

    def __init__(self, options: dict[str, Any]) -> None:
        own = {k: v for k, v in options.items() if k in _OWN_KEYS}
        super().__init__({k: v for k, v in options.items() if k not in _OWN_KEYS})
        try:
            self.deepseek = msgspec.convert(own, DeepSeekOptions)
        except msgspec.ValidationError as error:
            raise ValueError(f"deepseek options: {error}") from None
        self.max_output_tokens = {**MAX_OUTPUT_TOKENS, **self.deepseek.max_output_tokens}

    def build_request(self, request: MessagesRequest, route: Route) -> UpstreamRequest:
        own = self.deepseek
        asked = request.thinking is not None and request.thinking.type in ("enabled", "adaptive")
        model = own.thinking_model if asked and own.thinking_model else route.model
        thinking = asked or model == REASONER
        chat = chat_request(request, model, self.options)
        # Each model's documented cap, thinking or not: no public source says that the toggle
        # gives deepseek-chat the reasoner's 64K, and 2026 reports still show [1, 8192] for it.
        cap = self.max_output_tokens.get(model)
        if cap is not None and chat.max_tokens is not None and chat.max_tokens > cap:
            chat.max_tokens = cap
        toggle = None
        if own.thinking_toggle and model != REASONER:
            toggle = ThinkingToggle("enabled" if thinking else "disabled")
            if thinking and model not in _LEGACY:
                chat.reasoning_effort = _effort(request)
        if thinking:
            chat.temperature = None
            chat.top_p = None
        for message in chat.messages:
            if isinstance(message.content, list):
                message.content = _text_only(message.content)
            if message.role == "assistant":
                if not thinking:
                    message.reasoning_content = None
                elif message.reasoning_content is None:
                    message.reasoning_content = ""
        response_format = None
        if chat.response_format is not None:
            schema = _encode(chat.response_format.json_schema.schema).decode()
            _add_system(chat.messages, _JSON_PROMPT + schema)
            response_format = JSONObjectFormat()
        fields = msgspec.structs.asdict(chat)
        fields["response_format"] = response_format
        body = DeepSeekChatRequest(**fields, thinking=toggle)
        return UpstreamRequest(route.provider.api_base_url, self.headers(route), _encode(body))


_OMITTED = "[{kind} omitted: this DeepSeek model reads text only]"


def _text_only(parts: list[ContentPart]) -> str:
    """A message's parts as DeepSeek can take them: text, with a note where an image was."""
    texts = []
    for part in parts:
        if isinstance(part, TextPart):
            texts.append(part.text)
        else:
            texts.append(_OMITTED.format(kind="image" if isinstance(part, ImagePart) else "file"))
    return "\n".join(texts)

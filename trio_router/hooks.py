"""Hook transformers: the interface custom transformers implement, and the built-in ones.

A hook rewrites what passes through a provider's chain around its format: the Anthropic request
before the format translates it, the upstream HTTP request after, the non-streamed answer, and
each streamed event. A subclass overrides only what it needs; hooks it does not override cost
nothing, which keeps the per-chunk path free unless some hook really wants the events.
Options come as ``["name", {...}]`` in a provider's ``use`` list, checked when the chain is
built, so a typo fails at start-up and not on the first request.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from .anthropic import (
    ContentBlock,
    DocumentBlock,
    ImageBlock,
    Message,
    MessageResponse,
    MessagesRequest,
    StreamEvent,
    TextBlock,
    Thinking,
    ToolResultBlock,
    ToolUseBlock,
)
from .providers.base import Route, UpstreamRequest

HOOK_METHODS = ("transform_request", "transform_upstream", "transform_response", "transform_event")


class Transformer:
    """Base of hook transformers (built-in and custom)."""

    name: ClassVar[str] = ""
    # Options this hook sets on the chain's format, for the formats that have them
    # (enhancetool's JSON repair means nothing to Gemini, whose arguments are never text).
    format_options: ClassVar[dict[str, Any]] = {}
    format_option_targets: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    def transform_request(self, request: MessagesRequest, route: Route) -> MessagesRequest:
        return request

    def transform_upstream(self, upstream: UpstreamRequest, route: Route) -> UpstreamRequest:
        return upstream

    def transform_response(self, response: MessageResponse, route: Route) -> MessageResponse:
        return response

    def transform_event(self, event: StreamEvent, route: Route) -> StreamEvent | None:
        """One streamed event; None drops it."""
        return event


def overrides(hook: type[Transformer], method: str) -> bool:
    return getattr(hook, method) is not getattr(Transformer, method)


def _options(name: str, options: dict[str, Any], schema: type[msgspec.Struct]) -> Any:
    try:
        return msgspec.convert(options, schema)
    except msgspec.ValidationError as error:
        raise ValueError(f"{name} options: {error}") from None


class _MaxTokenOptions(msgspec.Struct, forbid_unknown_fields=True):
    max_tokens: int
    # Always send max_tokens, not only cap what the client asked for.
    force: bool = False


class MaxToken(Transformer):
    """Caps ``max_tokens`` to what the routed model accepts.

    Claude Code asks for 32000-128000 output tokens, more than most models allow; providers
    answer 400 rather than clamp.
    """

    name: ClassVar[str] = "maxtoken"

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.settings: _MaxTokenOptions = _options(self.name, options, _MaxTokenOptions)
        if self.settings.max_tokens <= 0:
            raise ValueError("maxtoken options: max_tokens must be positive")

    def transform_request(self, request: MessagesRequest, route: Route) -> MessagesRequest:
        limit = self.settings.max_tokens
        if self.settings.force or request.max_tokens is None or request.max_tokens > limit:
            return msgspec.structs.replace(request, max_tokens=limit)
        return request


def _uncached(block: ContentBlock) -> ContentBlock:
    if isinstance(block, ToolResultBlock) and isinstance(block.content, list):
        content: list[TextBlock | ImageBlock | DocumentBlock] = [
            msgspec.structs.replace(b, cache_control=None) for b in block.content
        ]
        return msgspec.structs.replace(block, content=content, cache_control=None)
    if isinstance(block, TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock):
        return msgspec.structs.replace(block, cache_control=None)
    return block


class CleanCache(Transformer):
    """Removes every ``cache_control`` mark, for upstreams that reject the field."""

    name: ClassVar[str] = "cleancache"

    def transform_request(self, request: MessagesRequest, route: Route) -> MessagesRequest:
        system = request.system
        if isinstance(system, list):
            system = [msgspec.structs.replace(b, cache_control=None) for b in system]
        messages = [
            m if isinstance(m.content, str) else Message(m.role, [_uncached(b) for b in m.content])
            for m in request.messages
        ]
        tools = request.tools and [
            msgspec.structs.replace(t, cache_control=None) for t in request.tools
        ]
        return msgspec.structs.replace(request, system=system, messages=messages, tools=tools)


class EnhanceTool(Transformer):
    """Repairs malformed tool-call JSON from the model instead of failing the request.

    The repair happens inside the format's translator (it sees the arguments), so this hook only
    switches that option on for the chain's format.
    """

    name: ClassVar[str] = "enhancetool"
    format_options: ClassVar[dict[str, Any]] = {"repair_tool_json": True}
    format_option_targets: ClassVar[tuple[str, ...]] = ("openrouter", "openai", "deepseek")


class _ReasoningOptions(msgspec.Struct, forbid_unknown_fields=True):
    # "on": ask for thinking on every request; "off": never; "budget": keep the client's wish
    # but bound its budget.
    mode: Literal["on", "off", "budget"] = "budget"
    budget_tokens: int = 8192


class Reasoning(Transformer):
    """Sets how much a model thinks, whatever the client asked for."""

    name: ClassVar[str] = "reasoning"

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.settings: _ReasoningOptions = _options(self.name, options, _ReasoningOptions)

    def transform_request(self, request: MessagesRequest, route: Route) -> MessagesRequest:
        mode, budget = self.settings.mode, self.settings.budget_tokens
        if mode == "off":
            return msgspec.structs.replace(request, thinking=Thinking("disabled"))
        if mode == "on":
            return msgspec.structs.replace(request, thinking=Thinking("enabled", budget))
        thinking = request.thinking
        if thinking is not None and thinking.type == "enabled":
            wanted = thinking.budget_tokens or budget
            return msgspec.structs.replace(
                request, thinking=Thinking("enabled", min(wanted, budget))
            )
        return request


class _SamplingOptions(msgspec.Struct, forbid_unknown_fields=True):
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    # Drop these fields from every request (some reasoning models reject them).
    drop: list[Literal["temperature", "top_p", "top_k"]] = []


class Sampling(Transformer):
    """Overrides or removes sampling parameters per provider or model."""

    name: ClassVar[str] = "sampling"

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        settings: _SamplingOptions = _options(self.name, options, _SamplingOptions)
        self.changes: dict[str, Any] = {
            field: getattr(settings, field)
            for field in ("temperature", "top_p", "top_k")
            if getattr(settings, field) is not None
        }
        self.changes.update(dict.fromkeys(settings.drop))

    def transform_request(self, request: MessagesRequest, route: Route) -> MessagesRequest:
        return msgspec.structs.replace(request, **self.changes) if self.changes else request


BUILTIN_HOOKS: dict[str, type[Transformer]] = {
    cls.name: cls for cls in (MaxToken, CleanCache, EnhanceTool, Reasoning, Sampling)
}

"""Choosing a provider and model for a request: the custom router, then the ``Router`` rules.

Order, first match wins (claude-code-router's order at its v2.0.0 tag, where it has the rule):

1. ``custom``: the operator's ``CUSTOM_ROUTER_PATH`` hook (custom_router.py), when it returns a
   route; claude-code-router also asks its custom router before its rules.
2. ``image``: an image block in the latest user turn, directly or inside a ``tool_result``.
   claude-code-router's image agent (packages/server/src/agents/image.agent.ts, ``shouldHandle``)
   makes this choice in a pre-handler, before its router runs, so it wins over the rest.
3. ``explicit``: a ``"provider,model"`` model in the request (Claude Code's ``/model``).
4. ``longContext``: the request counts more than ``longContextThreshold`` tokens.
5. ``subagent``: a ``<CCR-SUBAGENT-MODEL>provider,model</CCR-SUBAGENT-MODEL>`` tag in a system
   text or the first user message's text. claude-code-router checks it after long context
   (packages/core/src/utils/router.ts, ``getUseModel``); it looks only at the second system
   block, where its README says to put the tag at the start of a subagent's prompt.
6. ``background``: haiku-class models.
7. ``webSearch``: a web search server tool is present.
8. ``think``: the request explicitly enables extended thinking (``{"type": "enabled"}``: Claude
   Code sends ``{"type": "adaptive"}`` on every request, which is not a request to think harder).
9. ``default``.

A rule's value may be a list, a fallback chain: its first target is the route, the rest (then
the config's ``fallback`` for that rule, claude-code-router's key) are what :meth:`Router.fallbacks`
gives the request handler to try, in order, when the route fails in a retryable way. Routes the
rules did not choose (custom, explicit, subagent) have no fallbacks: the client or the hook named
one model.

The subagent tag is removed from the request whichever route wins (claude-code-router removes
it only when its rule is reached), so that no upstream sees it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec

from .anthropic import (
    ContentBlock,
    ImageBlock,
    MessagesRequest,
    TextBlock,
    ToolResultBlock,
)
from .config import RULES, Config, rule_targets
from .custom_router import CustomRouter, CustomRouterError
from .errors import InvalidRequestError, RouterError
from .providers.base import Route


class NoProviderError(RouterError):
    """The server runs without any provider configured."""

    status = 500
    error_type = "api_error"


def parse_target(target: str) -> tuple[str, str]:
    provider, _, model = target.partition(",")
    return provider.strip(), model.strip()


SUBAGENT_OPEN = "<CCR-SUBAGENT-MODEL>"
_SUBAGENT = re.compile(r"<CCR-SUBAGENT-MODEL>(.*?)</CCR-SUBAGENT-MODEL>", re.DOTALL)


def _untagged(text: str, found: list[str]) -> str:
    """``text`` without its subagent tags; the target of each is added to ``found``."""
    if SUBAGENT_OPEN not in text:
        return text
    targets = _SUBAGENT.findall(text)
    if not targets:
        return text
    found.extend(target.strip() for target in targets)
    return _SUBAGENT.sub("", text)


def _untagged_text(block: TextBlock, found: list[str]) -> TextBlock | None:
    """``block`` without its subagent tags; None when only the tag was in it (upstreams refuse
    an empty text block)."""
    text = _untagged(block.text, found)
    if text is block.text:
        return block
    return msgspec.structs.replace(block, text=text) if text.strip() else None


def subagent_target(request: MessagesRequest) -> tuple[str | None, MessagesRequest]:
    """The first subagent tag's ``"provider,model"``, and the request without any tag.

    Looked for in the system prompt, then in the first user message's text; the request is the
    same object when neither holds one.
    """
    found: list[str] = []
    system = request.system
    if isinstance(system, str):
        system = _untagged(system, found)
    elif system is not None:
        system = [b for b in (_untagged_text(b, found) for b in system) if b is not None] or None
    messages = request.messages
    first = next((i for i, m in enumerate(messages) if m.role == "user"), None)
    if first is not None:
        content = messages[first].content
        if isinstance(content, str):
            content = _untagged(content, found)
        else:
            blocks: list[ContentBlock] = []
            for block in content:
                kept = _untagged_text(block, found) if isinstance(block, TextBlock) else block
                if kept is not None:
                    blocks.append(kept)
            content = blocks
        if found:
            messages = [*messages]
            messages[first] = msgspec.structs.replace(messages[first], content=content)
    if not found:
        return None, request
    return found[0], msgspec.structs.replace(request, system=system, messages=messages)


def has_image(request: MessagesRequest) -> bool:
    """Whether the latest user turn holds an image block, directly or in a ``tool_result``.

    What claude-code-router's image agent looks for (``shouldHandle`` in
    packages/server/src/agents/image.agent.ts at v2.0.0): the last message, when it is the
    user's, with an ``image`` item or an item whose ``content`` list has one; an image the
    Read tool returns comes inside a ``tool_result``.
    """
    if not request.messages:
        return False
    last = request.messages[-1]
    if last.role != "user" or isinstance(last.content, str):
        return False
    for block in last.content:
        if isinstance(block, ImageBlock):
            return True
        if (
            isinstance(block, ToolResultBlock)
            and isinstance(block.content, list)
            and any(isinstance(item, ImageBlock) for item in block.content)
        ):
            return True
    return False


class Router:
    def __init__(self, config: Config, hook: CustomRouter | None = None) -> None:
        """``hook`` is the custom router loaded at start (custom_router.build), if any."""
        self._config = config
        self._rules = config.Router
        self.hook = hook
        self._routes: dict[str, Route] = {}
        self._fallbacks: dict[str, tuple[Route, ...]] = {}
        for reason in RULES:
            targets = rule_targets(getattr(self._rules, reason))
            if targets:
                targets += config.fallback.get(reason, [])
                chain = [self._resolve(target, reason) for target in targets]
                self._routes[reason] = chain[0]
                self._fallbacks[reason] = tuple(chain[1:])

    def _resolve(self, target: str, reason: str) -> Route:
        provider_name, model = parse_target(target)
        provider = self._config.provider(provider_name)
        if provider is None:
            raise InvalidRequestError(
                f"model {target!r} names provider {provider_name!r}, which is not configured"
            )
        if not model:
            raise InvalidRequestError(f'model {target!r}: expected "provider,model"')
        return Route(provider=provider, model=model, reason=reason)

    def fallbacks(self, route: Route) -> tuple[Route, ...]:
        """What to try, in order, when ``route`` (one :meth:`choose` returned) fails."""
        if self._routes.get(route.reason) is route:
            return self._fallbacks[route.reason]
        return ()

    @property
    def needs_token_count(self) -> bool:
        return "longContext" in self._routes

    @property
    def threshold(self) -> int:
        return self._rules.longContextThreshold

    def choose(
        self, request: MessagesRequest, count_tokens: Callable[[], int]
    ) -> tuple[Route, MessagesRequest]:
        """The route for ``request``, and the request to send it: without its subagent tag.

        ``count_tokens`` is called only when the ``longContext`` rule needs the count.
        """
        subagent, untagged = subagent_target(request)
        return self._choose(request, count_tokens, subagent), untagged

    def _choose(
        self,
        request: MessagesRequest,
        count_tokens: Callable[[], int],
        subagent: str | None = None,
    ) -> Route:
        if self.hook is not None:
            # The hook sees the request as the client sent it, tag and all.
            target = self.hook(request, self._config)
            if target is not None:
                try:
                    return self._resolve(target, "custom")
                except InvalidRequestError as error:
                    raise CustomRouterError(
                        f"{self.hook.name} returned {target!r}: {error.message}"
                    ) from None
        routes = self._routes
        if "image" in routes and has_image(request):
            return routes["image"]
        if "," in request.model:
            return self._resolve(request.model, "explicit")
        if not routes:
            raise NoProviderError(
                "no provider is configured: add Providers and Router.default to the config file",
                headers={"x-should-retry": "false"},
            )
        if "longContext" in routes and count_tokens() > self._rules.longContextThreshold:
            return routes["longContext"]
        if subagent is not None:
            return self._resolve(subagent, "subagent")
        if "background" in routes and "haiku" in request.model:
            return routes["background"]
        if "webSearch" in routes and request.tools:
            for tool in request.tools:
                if tool.type and tool.type.startswith("web_search"):
                    return routes["webSearch"]
        thinking = request.thinking
        if "think" in routes and thinking is not None and thinking.type == "enabled":
            return routes["think"]
        return routes["default"]

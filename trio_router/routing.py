"""Choosing a provider and model for a request from the config's ``Router`` rules.

Order, first match wins: an explicit ``"provider,model"`` in the request; ``longContext`` when
the request counts more than ``longContextThreshold`` tokens; ``background`` for haiku-class
models; ``webSearch`` when a web search server tool is present; ``think`` when the request
explicitly enables extended thinking (``{"type": "enabled"}``: Claude Code sends
``{"type": "adaptive"}`` on every request, which is not a request to think harder); ``default``.
"""

from __future__ import annotations

from collections.abc import Callable

from .anthropic import MessagesRequest
from .config import Config
from .errors import InvalidRequestError, RouterError
from .providers.base import Route


class NoProviderError(RouterError):
    """The server runs without any provider configured."""

    status = 500
    error_type = "api_error"


def parse_target(target: str) -> tuple[str, str]:
    provider, _, model = target.partition(",")
    return provider.strip(), model.strip()


class Router:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._rules = config.Router
        self._routes: dict[str, Route] = {}
        for reason in ("default", "background", "think", "longContext", "webSearch"):
            target = getattr(self._rules, reason)
            if target:
                self._routes[reason] = self._resolve(target, reason)

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

    @property
    def needs_token_count(self) -> bool:
        return "longContext" in self._routes

    @property
    def threshold(self) -> int:
        return self._rules.longContextThreshold

    def choose(
        self, request: MessagesRequest, count_tokens: Callable[[], int]
    ) -> tuple[Route, MessagesRequest]:
        """The route for ``request``, and the request to send it (a rule may rewrite it).

        ``count_tokens`` is called only when the ``longContext`` rule needs the count.
        """
        return self._choose(request, count_tokens), request

    def _choose(self, request: MessagesRequest, count_tokens: Callable[[], int]) -> Route:
        if "," in request.model:
            return self._resolve(request.model, "explicit")
        routes = self._routes
        if not routes:
            raise NoProviderError(
                "no provider is configured: add Providers and Router.default to the config file",
                headers={"x-should-retry": "false"},
            )
        if "longContext" in routes and count_tokens() > self._rules.longContextThreshold:
            return routes["longContext"]
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

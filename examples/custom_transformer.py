"""A custom transformer: adds a team's standing instructions and an upstream header.

Use it from a config:

    "transformers": [
        {"path": "examples/custom_transformer.py", "options": {"instructions": "Answer in French."}}
    ],
    "Providers": [
        {"name": "openrouter", ...,
         "transformer": {"use": [["team-policy", {"header": "team-a"}], "openrouter"]}}
    ]

A transformer is one class with a ``name`` and any of the hooks ``transform_request``,
``transform_upstream``, ``transform_response(response, route)`` (a non-streamed answer) and
``transform_event(event, route)`` (each streamed event; return None to drop it). Hooks a class
does not define cost nothing, so leave out what you do not need: an event hook runs on every
streamed chunk. Options come from the ``transformers`` entry, overridden by the ``use`` entry.
Subclassing ``trio_router.hooks.Transformer`` is optional but gives type hints and defaults.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from trio_router.anthropic import MessagesRequest, TextBlock
from trio_router.hooks import Transformer
from trio_router.providers.base import Route, UpstreamRequest


class TeamPolicy(Transformer):
    name: ClassVar[str] = "team-policy"

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        # Raising ValueError here is reported at start-up, naming this transformer.
        if not isinstance(options.get("instructions", ""), str):
            raise ValueError("team-policy options: instructions must be a string")
        self.instructions = options.get("instructions", "")
        self.header = options.get("header")

    def transform_request(self, request: MessagesRequest, route: Route) -> MessagesRequest:
        """Runs before the format translates the request: Anthropic types in and out."""
        if not self.instructions:
            return request
        system = request.system
        blocks = [TextBlock(system)] if isinstance(system, str) else list(system or [])
        return msgspec.structs.replace(request, system=[TextBlock(self.instructions), *blocks])

    def transform_upstream(self, upstream: UpstreamRequest, route: Route) -> UpstreamRequest:
        """Runs after: the provider's URL, headers and body bytes."""
        if self.header:
            upstream.headers["X-Team"] = self.header
        return upstream

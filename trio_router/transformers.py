"""Transformer registry and per-provider chains.

A provider's ``transformer`` config is ``{"use": [name | [name, {options}], ...]}`` with optional
per-model overrides (``{"use": [...], "some-model": {"use": [...]}}``). Exactly one entry of a
chain is a *format* (openrouter/openai, deepseek, gemini, anthropic), which decides the wire
format; with none named, ``openrouter`` is used. The other entries are request/response hooks
applied in order around it. Chains are built once at start-up, so an unknown name fails there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .anthropic import MessageResponse, MessagesRequest
from .config import Config, Provider
from .providers.base import ProviderFormat, Route, UpstreamRequest

FormatFactory = Callable[[dict[str, Any]], ProviderFormat]

# name -> "module:attribute" of a callable taking the options dict; imported on first use.
BUILTIN_FORMATS: dict[str, tuple[str, str]] = {
    "openrouter": ("trio_router.providers.openai", "openrouter"),
    "openai": ("trio_router.providers.openai", "openai"),
    "deepseek": ("trio_router.providers.deepseek", "DeepSeekFormat"),
    "gemini": ("trio_router.providers.gemini", "GeminiFormat"),
    "anthropic": ("trio_router.providers.passthrough", "AnthropicFormat"),
}
DEFAULT_FORMAT = "openrouter"


class Transformer:
    """Base of hook transformers; a subclass overrides only the hooks it needs."""

    name = ""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    def transform_request(self, request: MessagesRequest, route: Route) -> MessagesRequest:
        return request

    def transform_upstream(self, upstream: UpstreamRequest, route: Route) -> UpstreamRequest:
        return upstream

    def transform_response(self, response: MessageResponse, route: Route) -> MessageResponse:
        return response


class TransformerConfigError(Exception):
    pass


class Chain:
    """One provider's (or model's) format plus the hooks that wrap it."""

    def __init__(self, fmt: ProviderFormat, hooks: list[Transformer], names: list[str]) -> None:
        self.format = fmt
        self.names = names
        self._request = [h.transform_request for h in hooks if _overrides(h, "transform_request")]
        self._upstream = [
            h.transform_upstream for h in hooks if _overrides(h, "transform_upstream")
        ]
        self._response = [
            h.transform_response for h in hooks if _overrides(h, "transform_response")
        ]

    def build_request(self, request: MessagesRequest, route: Route, body: bytes) -> UpstreamRequest:
        """``body`` is the client's raw request: a passthrough format forwards it whole."""
        from_body = getattr(self.format, "build_request_from_body", None)
        if from_body is not None and not self._request:
            upstream: UpstreamRequest = from_body(body, route)
        else:
            for hook in self._request:
                request = hook(request, route)
            upstream = self.format.build_request(request, route)
        for upstream_hook in self._upstream:
            upstream = upstream_hook(upstream, route)
        return upstream

    def finish_response(self, response: MessageResponse, route: Route) -> MessageResponse:
        for hook in self._response:
            response = hook(response, route)
        return response


def _overrides(hook: Transformer, method: str) -> bool:
    """Only hooks a transformer really implements run; the base ones would just cost time."""
    return getattr(type(hook), method) is not getattr(Transformer, method)


def _load_format(name: str) -> FormatFactory:
    module, attribute = BUILTIN_FORMATS[name]
    factory: FormatFactory = getattr(importlib.import_module(module), attribute)
    return factory


def _entries(spec: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(spec, dict) or not isinstance(spec.get("use", []), list):
        raise TransformerConfigError(f'{where}: expected {{"use": [...]}}')
    entries: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(spec.get("use", [])):
        if isinstance(item, str):
            entries.append((item, {}))
        elif (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], dict)
        ):
            entries.append((item[0], item[1]))
        else:
            raise TransformerConfigError(
                f"{where}.use[{i}]: expected a name or [name, {{options}}], got {item!r}"
            )
    return entries


class Transformers:
    """Every chain the config asks for, built at start-up."""

    def __init__(self, config: Config, hooks: dict[str, type[Transformer]] | None = None) -> None:
        self.hooks: dict[str, type[Transformer]] = dict(hooks or {})
        self._chains: dict[tuple[str, str | None], Chain] = {}
        for i, provider in enumerate(config.Providers):
            self._add_provider(provider, f"Providers[{i}].transformer")

    def _add_provider(self, provider: Provider, where: str) -> None:
        spec: dict[str, Any] = provider.transformer or {}
        base = _entries(spec, where)
        self._chains[(provider.name, None)] = self._build(base, where)
        for key, value in spec.items():
            if key == "use":
                continue
            self._chains[(provider.name, key)] = self._build(
                _entries(value, f"{where}.{key}"), f"{where}.{key}", base
            )

    def _build(
        self,
        entries: list[tuple[str, dict[str, Any]]],
        where: str,
        inherited: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> Chain:
        formats = [(n, o) for n, o in entries if n in BUILTIN_FORMATS]
        if not formats and inherited:
            formats = [(n, o) for n, o in inherited if n in BUILTIN_FORMATS]
        if len(formats) > 1:
            both = ", ".join(n for n, _ in formats)
            raise TransformerConfigError(f"{where}: more than one format transformer ({both})")
        format_name, format_options = formats[0] if formats else (DEFAULT_FORMAT, {})
        hooks: list[Transformer] = []
        names: list[str] = []
        for name, options in entries:
            if name in BUILTIN_FORMATS:
                names.append(name)
                continue
            cls = self.hooks.get(name)
            if cls is None:
                known = ", ".join(sorted([*BUILTIN_FORMATS, *self.hooks]))
                raise TransformerConfigError(
                    f"{where}: unknown transformer {name!r} (known: {known})"
                )
            hooks.append(cls(options))
            names.append(name)
        if format_name not in names:
            names.append(format_name)
        try:
            fmt = _load_format(format_name)(format_options)
        except ValueError as error:
            raise TransformerConfigError(f"{where}: {error}") from None
        return Chain(fmt, hooks, names)

    def for_route(self, route: Route) -> Chain:
        chains = self._chains
        return chains.get((route.provider.name, route.model)) or chains[(route.provider.name, None)]

    def describe(self) -> dict[str, list[dict[str, Any]]]:
        """Every known transformer, and which providers (or provider,model) use it."""
        used: dict[str, list[str]] = {}
        for (provider, model), chain in self._chains.items():
            where = provider if model is None else f"{provider},{model}"
            for name in chain.names:
                used.setdefault(name, []).append(where)
        rows = [
            {"name": name, "kind": "format", "builtin": True, "usedBy": used.get(name, [])}
            for name in BUILTIN_FORMATS
        ]
        rows += [
            {"name": name, "kind": "hook", "builtin": True, "usedBy": used.get(name, [])}
            for name in self.hooks
        ]
        return {"transformers": rows}

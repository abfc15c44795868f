"""Transformer registry, custom transformers loaded from files, and per-provider chains.

A provider's ``transformer`` config is ``{"use": [name | [name, {options}], ...]}`` with optional
per-model overrides (``{"use": [...], "some-model": {"use": [...]}}``). Exactly one entry of a
chain is a *format* (openrouter/openai, deepseek, gemini, anthropic), which decides the wire
format; with none named, ``openrouter`` is used, and a per-model chain without one keeps the
provider's. The other entries are hooks (:class:`hooks.Transformer`) applied in order around
the format. Chains are built once at start-up, so an unknown name or a bad option fails there.

Custom transformer files are imported only at start-up, from the config the operator wrote. A
config sent to ``POST /api/config`` is checked with :func:`api_loader`, which never imports.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from .anthropic import MessageResponse, MessagesRequest, StreamEvent, Usage
from .code_files import ImportFailed, import_file, resolved
from .config import Config, CustomTransformer, Provider, is_javascript
from .errors import RouterError, TransformerError
from .hooks import BUILTIN_HOOKS, HOOK_METHODS, Transformer, overrides
from .intake import nested_too_deeply
from .logs import logger
from .providers.base import ProviderFormat, Route, StreamOutput, UpstreamRequest

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
# claude-code-router spells two of them so (packages/core/src/transformer/*.ts at v2.0.0).
FORMAT_ALIASES = {"Anthropic": "anthropic", "OpenAI": "openai"}
# claude-code-router's transformers that are not implemented here (the same files; gemini-cli
# and the other *-cli ones are JavaScript plugins from its README). Those whose absence leaves
# each request one the provider accepts are skipped with a warning, so that its configs start;
# the others would fail every request (another wire format, or another sign-in), so a provider
# that uses one is refused at start instead.
CCR_SKIPPED = {
    "tooluse": "tool_choice is sent as the client asked",
    "groq": "the openai format already speaks Groq's chat completions",
    "cerebras": "the openai format already speaks Cerebras' chat completions",
    "vercel": "the openai format already speaks Vercel AI Gateway's chat completions",
    "streamoptions": "the openai format already asks for usage in streams",
    "maxcompletiontokens": "the `openai` format sends max_completion_tokens",
    "customparams": "no extra parameters are added",
    "forcereasoning": "no reasoning is forced",
}
CCR_UNSUPPORTED = {
    "vertex-gemini": "Vertex AI's sign-in",
    "vertex-claude": "Vertex AI's sign-in",
    "openai-responses": "OpenAI's Responses API",
    "gemini-cli": "a JavaScript plugin",
    "qwen-cli": "a JavaScript plugin",
    "rovo-cli": "a JavaScript plugin",
    "chutes-glm": "a JavaScript plugin",
}

Entry = tuple[str, dict[str, Any]]
# Gives the class a `transformers` entry names; `where` is its place in the config.
Loader = Callable[[CustomTransformer, str], type[Transformer]]


class TransformerConfigError(Exception):
    """One or more problems with the config's transformers, each naming its place."""

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(problems))


def transformer_failure(name: str, error: Exception) -> TransformerError:
    logger.exception("transformer %s failed", name)
    return TransformerError(
        f"transformer {name!r} failed: {type(error).__name__}: {error}",
        status=500,
        error_type="api_error",
    )


class Chain:
    """One provider's (or model's) format plus the hooks that wrap it.

    An exception inside a hook becomes a 500 ``api_error`` naming that hook; the server serves on.
    """

    def __init__(self, fmt: ProviderFormat, hooks: list[Transformer], names: list[str]) -> None:
        self.format = fmt
        self.names = names

        def bound(method: str) -> list[tuple[str, Any]]:
            return [(h.name, getattr(h, method)) for h in hooks if overrides(type(h), method)]

        self._request = bound("transform_request")
        self._upstream = bound("transform_upstream")
        self._response = bound("transform_response")
        self._event = bound("transform_event")
        # Only a chain with an event hook pays for one on each streamed chunk.
        self.has_event_hooks = bool(self._event)
        # A passthrough format forwards the client's raw body and hands its raw answer back,
        # unless a hook must see them as Anthropic types. Looked up once, not per request.
        self._from_body: Callable[[bytes, Route], UpstreamRequest] | None = (
            None if self._request else getattr(fmt, "build_request_from_body", None)
        )
        self.raw_usage: Callable[[bytes], Usage] | None = (
            None if self._response else getattr(fmt, "response_usage", None)
        )

    def build_request(
        self, request: MessagesRequest, route: Route, body: bytes | None
    ) -> UpstreamRequest:
        """``body`` is the client's raw request, when ``request`` is what it says: a passthrough
        format then forwards it whole."""
        if self._from_body is not None and body is not None:
            upstream: UpstreamRequest = self._format_call(self._from_body, body, route)
        else:
            for name, hook in self._request:
                request = _call(name, hook, request, route)
            upstream = self._format_call(self.format.build_request, request, route)
        for name, upstream_hook in self._upstream:
            upstream = _call(name, upstream_hook, upstream, route)
        return upstream

    def parse_response(
        self, body: bytes, route: Route, request: MessagesRequest | None = None
    ) -> MessageResponse:
        response: MessageResponse = self._format_call(
            self.format.parse_response, body, route, request
        )
        for name, hook in self._response:
            response = _call(name, hook, response, route)
        return response

    def transform_events(self, outputs: list[StreamOutput], route: Route) -> list[StreamOutput]:
        for name, hook in self._event:
            kept: list[StreamOutput] = []
            for output in outputs:
                if isinstance(output, bytes):
                    kept.append(output)
                    continue
                event: StreamEvent | None = _call(name, hook, output, route)
                if event is not None:
                    kept.append(event)
            outputs = kept
        return outputs

    def _format_call(self, method: Callable[..., Any], *args: Any) -> Any:
        return _call(self.format.name, method, *args)


def _call(name: str, method: Callable[..., Any], *args: Any) -> Any:
    try:
        return method(*args)
    except RouterError:
        raise
    except RecursionError as error:
        # JSON nested deeper than the stack allows (msgspec raises this too): the client's
        # fault in its request, the provider's in an answer.
        answer = ("parse_response", "transform_response", "transform_event")
        if getattr(method, "__name__", "") not in answer:
            raise nested_too_deeply() from None
        raise transformer_failure(name, error) from error
    except Exception as error:
        raise transformer_failure(name, error) from error


def _load_format(name: str) -> FormatFactory:
    module, attribute = BUILTIN_FORMATS[name]
    factory: FormatFactory = getattr(importlib.import_module(module), attribute)
    return factory


def _entries(spec: Any, where: str) -> list[Entry]:
    if not isinstance(spec, dict) or not isinstance(spec.get("use", []), list):
        raise TransformerConfigError(f'{where}: expected {{"use": [...]}}')
    entries: list[Entry] = []
    for i, item in enumerate(spec.get("use", [])):
        if isinstance(item, str):
            entries.append((FORMAT_ALIASES.get(item, item), {}))
        elif (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], dict)
        ):
            entries.append((FORMAT_ALIASES.get(item[0], item[0]), item[1]))
        else:
            raise TransformerConfigError(
                f"{where}.use[{i}]: expected a name or [name, {{options}}], got {item!r}"
            )
    return entries


def load_custom(spec: CustomTransformer, where: str, base: Path) -> type[Transformer]:
    """The transformer class defined in ``spec.path`` (relative paths: to the config's folder).

    The file defines one class with a ``name`` and one or more of the hook methods; it may
    subclass :class:`hooks.Transformer`, and if it does not, it is given that base so that the
    hooks it leaves out do nothing.
    """
    path = resolved(base, spec.path)
    try:
        module = import_file(path, "trio_router_custom")
    except ImportFailed as error:
        raise TransformerConfigError(f"{where}.path: {path}: {error}") from None
    module_name = module.__name__
    classes: list[type[Any]] = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and obj.__module__ == module_name
    ]
    candidates = [c for c in classes if isinstance(getattr(c, "name", None), str) and c.name]
    if len(candidates) != 1:
        raise TransformerConfigError(
            f"{where}.path: {path}: expected one class with a non-empty `name`, "
            f"found {len(candidates)}"
        )
    found: type[Any] = candidates[0]
    if not any(callable(getattr(found, m, None)) for m in HOOK_METHODS):
        raise TransformerConfigError(
            f"{where}.path: {path}: class {found.__name__} has none of the methods "
            f"{', '.join(HOOK_METHODS)}"
        )
    if found.name in BUILTIN_FORMATS or found.name in BUILTIN_HOOKS:
        raise TransformerConfigError(
            f"{where}.path: {path}: name {found.name!r} is already a built-in transformer"
        )
    if issubclass(found, Transformer):
        return found
    adapted: type[Transformer] = type(found.__name__, (found, Transformer), {})
    return adapted


def _lexical(base: Path, path: str) -> Path:
    return Path(os.path.normpath(base / os.path.expanduser(path)))


def _literal_names(node: ast.ClassDef) -> list[str]:
    """The string constants a class body assigns to ``name``."""
    found: list[str] = []
    for statement in node.body:
        if isinstance(statement, ast.Assign):
            targets = statement.targets
        elif isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        else:
            continue
        value = statement.value
        if (
            any(isinstance(target, ast.Name) and target.id == "name" for target in targets)
            and isinstance(value, ast.Constant)
            and isinstance(value.value, str)
            and value.value
        ):
            found.append(value.value)
    return found


def _static_name(path: Path, where: str) -> str:
    """The ``name`` of the one transformer class in ``path``, read from its source, never run."""
    try:
        tree = ast.parse(path.read_bytes(), filename=path.name)
    except (OSError, SyntaxError, ValueError, RecursionError) as error:
        raise TransformerConfigError(f"{where}: not readable as Python: {error}") from None
    names = [
        name
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        for name in _literal_names(node)
    ]
    if len(names) != 1:
        raise TransformerConfigError(
            f"{where}: expected one class with a non-empty string `name`, found {len(names)}"
        )
    if names[0] in BUILTIN_FORMATS or names[0] in BUILTIN_HOOKS:
        raise TransformerConfigError(
            f"{where}: name {names[0]!r} is already a built-in transformer"
        )
    return names[0]


def _unloaded(found: str) -> type[Transformer]:
    """Stands in for a file that is imported only at the next start, where its options are
    checked too."""

    class Unloaded(Transformer):
        name: ClassVar[str] = found

    return Unloaded


def api_loader(running: Transformers, base: Path, directory: str) -> Loader:
    """How a config sent to the API may name custom transformers, without importing any.

    A path is either a file this process loaded at start (its class is reused) or a file inside
    ``directory`` (``TRANSFORMERS_DIR``), whose class name is read from the source. Any other
    path gets the same answer whatever exists there, so the API cannot probe the disk.
    """
    # Inside both as written and with symlinks followed.
    roots = (_lexical(base, directory), resolved(base, directory)) if directory else None

    def load(spec: CustomTransformer, where: str) -> type[Transformer]:
        path = resolved(base, spec.path)
        known = running.files.get(path)
        if known is not None:
            return known
        if roots is None or not (
            _lexical(base, spec.path).is_relative_to(roots[0]) and path.is_relative_to(roots[1])
        ):
            raise TransformerConfigError(
                f"{where}.path: {spec.path!r}: a config sent to the API may name only a "
                "transformer loaded at start or a file inside TRANSFORMERS_DIR"
                + (f" ({directory})" if directory else ", which is not set")
            )
        if not path.is_file():
            raise TransformerConfigError(f"{where}.path: {spec.path!r}: no such file")
        return _unloaded(_static_name(path, f"{where}.path: {spec.path!r}"))

    return load


class Transformers:
    """Every chain the config asks for, built at start-up."""

    def __init__(
        self, config: Config, base: Path | None = None, loader: Loader | None = None
    ) -> None:
        """``loader`` gives the custom classes; by default it imports their files."""
        where_from = base or Path.cwd()
        self.hooks: dict[str, type[Transformer]] = dict(BUILTIN_HOOKS)
        self.custom: dict[str, str] = {}
        # Each custom class by the file it came from, for api_loader.
        self.files: dict[Path, type[Transformer]] = {}
        # A custom transformer's options from the config's `transformers` list: defaults that
        # each `use` entry's own options override.
        self.defaults: dict[str, dict[str, Any]] = {}
        # Every problem is collected, so check-config lists them all in one run.
        problems: list[str] = []
        # claude-code-router transformers skipped (CCR_SKIPPED), one line each.
        self.warnings: list[str] = []
        for i, spec in enumerate(config.transformers):
            where = f"transformers[{i}]"
            if is_javascript(spec.path):
                continue  # claude-code-router's; config.warnings names it
            try:
                cls = loader(spec, where) if loader else load_custom(spec, where, where_from)
            except TransformerConfigError as error:
                problems.extend(error.problems)
                continue
            if cls.name in self.custom:
                problems.append(
                    f"transformers[{i}]: name {cls.name!r} is also defined by "
                    f"{self.custom[cls.name]}"
                )
                continue
            self.hooks[cls.name] = cls
            self.custom[cls.name] = spec.path
            self.files[resolved(where_from, spec.path)] = cls
            self.defaults[cls.name] = dict(spec.options)
        self._chains: dict[tuple[str, str | None], Chain] = {}
        for i, provider in enumerate(config.Providers):
            problems.extend(self._add_provider(provider, f"Providers[{i}].transformer"))
        if problems:
            raise TransformerConfigError(*problems)

    def _add_provider(self, provider: Provider, where: str) -> list[str]:
        """Builds the provider's chain and each per-model one; returns their problems."""
        spec: dict[str, Any] = provider.transformer or {}
        problems: list[str] = []
        try:
            base = _entries(spec, where)
            self._chains[(provider.name, None)] = self._build(base, where, [])
        except TransformerConfigError as error:
            return error.problems  # the per-model chains inherit from this one
        for key, value in spec.items():
            if key != "use":
                try:
                    self._chains[(provider.name, key)] = self._build(
                        _entries(value, f"{where}.{key}"), f"{where}.{key}", base
                    )
                except TransformerConfigError as error:
                    problems.extend(error.problems)
        return problems

    def _build(self, entries: list[Entry], where: str, inherited: list[Entry]) -> Chain:
        formats = [(n, o) for n, o in entries if n in BUILTIN_FORMATS]
        if not formats:
            formats = [(n, o) for n, o in inherited if n in BUILTIN_FORMATS]
        if len(formats) > 1:
            both = ", ".join(n for n, _ in formats)
            raise TransformerConfigError(f"{where}: more than one format transformer ({both})")
        format_name, format_options = formats[0] if formats else (DEFAULT_FORMAT, {})
        hooks: list[Transformer] = []
        names: list[str] = []
        problems: list[str] = []
        for name, options in entries:
            names.append(name)
            if name in BUILTIN_FORMATS:
                continue
            cls = self.hooks.get(name)
            if cls is None and name in CCR_SKIPPED:
                self.warnings.append(
                    f"{where}: transformer {name!r} (claude-code-router's) is not implemented "
                    f"here: skipped ({CCR_SKIPPED[name]})"
                )
                names.pop()
                continue
            if cls is None:
                known = ", ".join(sorted([*BUILTIN_FORMATS, *self.hooks]))
                why = CCR_UNSUPPORTED.get(name)
                if why:
                    problems.append(
                        f"{where}: transformer {name!r} (claude-code-router's, for {why}) is "
                        f"not implemented here (known: {known})"
                    )
                else:
                    problems.append(f"{where}: unknown transformer {name!r} (known: {known})")
                continue
            try:
                hooks.append(cls({**self.defaults.get(name, {}), **options}))
            except ValueError as error:
                problems.append(f"{where}: {error}")
                continue
            except Exception as error:
                problems.append(
                    f"{where}: transformer {name!r} failed to start: "
                    f"{type(error).__name__}: {error}"
                )
                continue
            if format_name in cls.format_option_targets:
                format_options = {**format_options, **cls.format_options}
        if problems:
            raise TransformerConfigError(*problems)
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

        def row(name: str, kind: str, path: str | None = None) -> dict[str, Any]:
            found: dict[str, Any] = {"name": name, "kind": kind, "builtin": path is None}
            if path is not None:
                found["path"] = path
            found["usedBy"] = used.get(name, [])
            return found

        rows = [row(name, "format") for name in BUILTIN_FORMATS]
        rows += [row(name, "hook") for name in BUILTIN_HOOKS]
        rows += [row(name, "hook", path) for name, path in self.custom.items()]
        return {"transformers": rows}

"""The configuration file: its schema, loading, ``$VAR`` interpolation and validation.

Every problem is reported with the file and the place (``Providers[1].api_base_url``) so that
``trio-router check-config`` can print all of them at once and never a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import dotenv
import msgspec
from msgspec import Struct

from .proxy import ProxyURLError, parse_proxy

DEFAULT_PORT = 3456
DEFAULT_HOST = "127.0.0.1"
LOG_LEVELS = ("fatal", "error", "warn", "info", "debug", "trace")
DEFAULT_BACKUPS_KEPT = 50
# A config nests about ten levels; far deeper JSON is an attack on the recursive code that walks it.
MAX_DEPTH = 64


class Provider(Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    api_base_url: str
    api_key: str = ""
    # A pool of keys instead of ``api_key``: used round robin; a key answered 429 rests for its
    # retry-after, one answered 401/403 is taken out (reliability.py).
    api_keys: list[str] = []
    models: list[str] = []
    # {"use": [name | [name, {options}]], "<model>": {"use": [...]}}
    transformer: dict[str, Any] | None = None
    # Extra headers sent upstream, e.g. OpenRouter's HTTP-Referer and X-Title.
    headers: dict[str, str] = {}
    # Open requests to this provider at once, across workers; 0 = no cap. Shared fairly between
    # client keys, so that one user's subagents cannot take every slot.
    max_concurrent: int = 0
    # An HTTP proxy for this provider only ("http://host:port"), beside HTTPS_PROXY and friends.
    proxy: str = ""
    # A PEM file of CA certificates to trust for this provider (a private gateway's own CA).
    ca_bundle: str = ""
    # Attempts after the first on a retryable failure before the first byte (retry.py), and the
    # most time spent on this provider for one request, waits included.
    retries: int = 2
    retry_budget_ms: int = 30_000


# A rule's value: "provider,model", or a fallback chain of them tried in order.
Target = str | list[str] | None


def rule_targets(value: Target) -> list[str]:
    """A rule's "provider,model" targets in order; none for an unset rule (``""`` or null)."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


class RouterRules(Struct, frozen=True, forbid_unknown_fields=True):
    default: Target = None
    background: Target = None
    think: Target = None
    longContext: Target = None
    longContextThreshold: int = 60000
    webSearch: Target = None
    # claude-code-router's: requests whose latest user turn holds an image (routing.py).
    image: Target = None


# Each rule's name, in the order the config documents them.
RULES = ("default", "background", "think", "longContext", "webSearch", "image")


_JS_PLUGINS = "not used: claude-code-router's JavaScript plugins are not run"
_CCR_1_KEY = (
    "not read: a claude-code-router 1.0 single-provider key; configure Providers and Router"
)
# claude-code-router's keys that mean nothing here (or not yet), each with why: accepted so that
# its config.json starts unchanged, and named in a warning. A key not listed is still an unknown
# field, so that a typo is caught. Sources, at its v2.0.0 tag: README.md (NON_INTERACTIVE_MODE,
# forceUseImageAgent; OPENAI_API_KEY and GEMINI_API_KEY in its interpolation example; `log` and
# OPENAI_* in its GitHub Actions example),
# packages/ui/src/types.ts (CLAUDE_PATH, StatusLine), packages/core/src/utils/router.ts
# (REWRITE_SYSTEM_PROMPT), packages/core/src/services/config.ts (LOG_FILE),
# packages/server/src/index.ts (plugins, Plugins); usePlugins is 1.0's (README.md at v1.0.24).
CCR_KEYS: dict[str, str] = {
    "NON_INTERACTIVE_MODE": (
        "has no meaning here: it prepares claude-code-router's own Claude Code launcher for CI, "
        "and trio-router launches no client"
    ),
    "CLAUDE_PATH": "not read from the config: `trio-router code` runs $CLAUDE_PATH, else claude",
    "StatusLine": "has no meaning here: claude-code-router's Claude Code status line is its own",
    "forceUseImageAgent": (
        "not used: claude-code-router's image agent is not implemented; Router.image routes "
        "requests with images"
    ),
    "REWRITE_SYSTEM_PROMPT": "not used: trio-router does not rewrite Claude Code's system prompt",
    "LOG_FILE": "not used: the log is logs/trio-router.log in the data directory",
    "plugins": _JS_PLUGINS,
    "Plugins": _JS_PLUGINS,
    "usePlugins": _JS_PLUGINS,
    "OPENAI_API_KEY": _CCR_1_KEY,
    "OPENAI_BASE_URL": _CCR_1_KEY,
    "OPENAI_MODEL": _CCR_1_KEY,
    "GEMINI_API_KEY": 'not read: a provider\'s key goes in its api_key, e.g. "$GEMINI_API_KEY"',
    "log": "not read: the key is LOG",
}
JAVASCRIPT = (".js", ".mjs", ".cjs")


def is_javascript(path: str) -> bool:
    """A claude-code-router plugin or router: JavaScript, which this router never runs."""
    return path.lower().endswith(JAVASCRIPT)


class CustomTransformer(Struct, frozen=True, forbid_unknown_fields=True):
    path: str
    options: dict[str, Any] = {}


class Price(Struct, frozen=True, forbid_unknown_fields=True):
    """USD per million tokens; cache reads default to the input price."""

    input: Annotated[float, msgspec.Meta(ge=0)]
    output: Annotated[float, msgspec.Meta(ge=0)]
    cache_read: Annotated[float, msgspec.Meta(ge=0)] | None = None
    cache_write: Annotated[float, msgspec.Meta(ge=0)] | None = None


class Config(Struct, frozen=True, forbid_unknown_fields=True):
    # The clients' key for /v1/*; also the admin key for /api/* when ADMIN_KEY is empty.
    APIKEY: str = ""
    # The operator's key: when set, the only key that opens /api/*.
    ADMIN_KEY: str = ""
    HOST: str = DEFAULT_HOST
    PORT: int = DEFAULT_PORT
    LOG: bool = True
    LOG_LEVEL: str = "info"
    API_TIMEOUT_MS: int = 600_000
    # Until the provider's TCP (and TLS) connection is up, and until its response headers arrive.
    CONNECT_TIMEOUT_MS: int = 10_000
    FIRST_BYTE_TIMEOUT_MS: int = 120_000
    # claude-code-router's: the HTTP proxy for every provider without its own `proxy`.
    PROXY_URL: str = ""
    # Where POST /api/config may point `transformers[].path` (besides the ones loaded at start).
    # Fixed at start: the API cannot change it, or it could choose which code the router runs.
    TRANSFORMERS_DIR: str = ""
    # How many backups of the config file `.backups/` keeps; older ones are removed.
    BACKUPS_KEPT: int = DEFAULT_BACKUPS_KEPT
    Providers: list[Provider] = []
    Router: RouterRules = RouterRules()
    transformers: list[CustomTransformer] = []
    # A Python file whose `route(request, config)` chooses a route first (custom_router.py);
    # imported at start only. claude-code-router's `.js` routers are not run (a warning says so).
    CUSTOM_ROUTER_PATH: str = ""
    # claude-code-router's backup models per rule, tried after the rule's own targets
    # (docs/docs/server/config/routing.md, "Fallback", at its main branch):
    # {"default": ["provider,model", ...], ...}.
    fallback: dict[str, list[str]] = {}
    # Open upstream requests per worker past which a new one is answered 529 at once
    # (overload.py); 0 = no cap.
    MAX_OPEN_STREAMS: int = 200
    # Requests in a row that failed (after their retries) that open a provider's circuit breaker,
    # and how long it stays open before one request probes it (messages.py); 0 = no breaker.
    BREAKER_FAILURES: int = 5
    BREAKER_COOLDOWN_MS: int = 30_000
    # Where usage, client keys and limits live (store/): "" or ``sqlite:///path`` is the embedded
    # SQLite file of one host; ``postgresql://...`` is one database every node shares. The
    # environment's STORE_URL overrides it. Fixed at start.
    STORE_URL: str = ""
    # SIGTERM: how long open streams may go on before they are ended with an SSE ``error``.
    DRAIN_TIMEOUT_MS: int = 30_000
    # The log file's lines: "text" (one readable line each) or "json" (JSON lines for shippers).
    LOG_FORMAT: Literal["text", "json"] = "text"
    # A key that opens only ``GET /metrics`` (Prometheus' scraper); the admin key opens it too.
    METRICS_KEY: str = ""
    # Prometheus metrics (metrics.py): false turns off their recording and ``GET /metrics``.
    METRICS: bool = True
    # USD prices that override or add to the price library's, by ``"provider,model"`` or by a
    # model name for every provider: {"my-model": {"input": 0.5, "output": 1.5}} per MTok.
    prices: dict[str, Price] = {}

    def provider(self, name: str) -> Provider | None:
        for provider in self.Providers:
            if provider.name == name:
                return provider
        return None


class ConfigError(Exception):
    """One or more problems with a config file; ``problems`` lists each with its place."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def report(self) -> str:
        lines = [f"Invalid config {self.source}:"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)


class LoadedConfig(Struct, frozen=True):
    config: Config
    path: Path | None  # None when running on the built-in default
    raw: dict[str, Any]  # the file as written, before interpolation (what /api/config edits)
    # One line each, naming the key: what the file asks for that this router does not do.
    warnings: list[str] = []


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def default_config_path() -> Path:
    return Path(os.environ.get("CONFIG_PATH") or "config.json").expanduser()


def load_dotenv(config_path: Path | None) -> None:
    """Load ``.env`` from beside the config, then the working directory; the environment wins.

    python-dotenv parses it, as every Python user's ``.env`` is written for: quotes, ``#``
    comments, ``export``, ``\\n`` escapes in double quotes and ``${VAR}`` expansion.
    """
    candidates = [Path.cwd() / ".env"]
    if config_path is not None:
        candidates.insert(0, config_path.parent / ".env")
    seen: set[Path] = set()
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved in seen or not candidate.is_file():
            continue
        seen.add(resolved)
        # override=False: a variable already set (by the environment or the first file) stays.
        dotenv.load_dotenv(candidate, override=False, encoding="utf-8")


def interpolate(value: Any, env: dict[str, str], where: str, problems: list[str]) -> Any:
    """Replace ``$VAR`` and ``${VAR}`` in every string; an unset variable is a problem."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            if name not in env:
                problems.append(f"{where}: environment variable ${name} is not set")
                return ""
            return env[name]

        return _VAR.sub(substitute, value) if "$" in value else value
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {
            k: interpolate(v, env, f"{where}.{k}" if where else k, problems)
            for k, v in value.items()
        }
    return value


def _json_position(text: str, error: msgspec.DecodeError) -> str:
    """msgspec says ``JSON is malformed: ... (byte 32)``; people want a line and column."""
    match = re.search(r"\((?:byte|char) (\d+)\)", str(error))
    reason = re.sub(r"\s*\((?:byte|char) \d+\)", "", str(error))
    if match:
        offset = len(text.encode()[: int(match.group(1))].decode("utf-8", "ignore"))
    elif "truncated" in reason:
        offset = len(text)
    else:
        return f"invalid JSON: {reason}"
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"invalid JSON at line {line}, column {column}: {reason}"


def _msgspec_problem(error: msgspec.ValidationError, where: str) -> tuple[str, str]:
    """msgspec's ``... - at `$[1].x``` as a place below ``where``, and the readable problem."""
    message, _, at = str(error).partition(" - at `$")
    place = (where + at.rstrip("`")).lstrip(".")
    return place, f"{place}: {message}" if place else message


def _under(place: str, places: Collection[str]) -> bool:
    """Whether ``place`` is one of ``places`` or inside one (``Providers[0].name`` is in
    ``Providers[0]``)."""
    return any(place == p or not p or place.startswith((f"{p}.", f"{p}[")) for p in places)


_MISSING: Any = object()


def _placed(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


class _TypeCheck:
    """The config's types checked field by field, so that no wrong field hides another.

    ``problems`` lists every one with its place; ``unsure`` holds the places whose value was
    unusable, for the cross-field checks to leave alone. What the check returns is the config
    with each such value left at its default (or ``""`` when required), for those checks.
    """

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.unsure: set[str] = set()

    def struct(self, value: Any, kind: type[Struct], where: str) -> Any:
        fields = msgspec.structs.fields(kind)
        if not isinstance(value, dict):
            self.convert(value, kind, where)  # reports what msgspec says of it
            value = {}
        names = {field.encode_name for field in fields}
        for key in value:
            if key not in names:
                self.problems.append(_placed(where, f"Object contains unknown field `{key}`"))
        sound: dict[str, Any] = {}
        for field in fields:
            place = f"{where}.{field.encode_name}" if where else field.encode_name
            if field.encode_name in value:
                checked = self.value(value[field.encode_name], field.type, place)
            else:
                checked = _MISSING
                if field.required:
                    self.problems.append(
                        _placed(where, f"Object missing required field `{field.encode_name}`")
                    )
                    self.unsure.add(place)
            if checked is not _MISSING:
                sound[field.name] = checked
            elif field.required:
                sound[field.name] = ""  # the schema's required fields are all strings
        return kind(**sound)

    def value(self, value: Any, kind: Any, where: str) -> Any:
        if isinstance(kind, type) and issubclass(kind, Struct):
            return self.struct(value, kind, where)
        (item,) = get_args(kind) if get_origin(kind) is list else (None,)
        if isinstance(item, type) and issubclass(item, Struct) and isinstance(value, list):
            return [self.struct(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        if get_origin(kind) is dict and isinstance(value, dict):
            # Each value by its key: msgspec would place a wrong one at `headers[...]`.
            _, item = get_args(kind)
            checked = {k: self.convert(v, item, f"{where}.{k}") for k, v in value.items()}
            return {k: v for k, v in checked.items() if v is not _MISSING}
        return self.convert(value, kind, where)

    def convert(self, value: Any, kind: Any, where: str) -> Any:
        try:
            return msgspec.convert(value, kind, strict=False)
        except msgspec.ValidationError as error:
            place, problem = _msgspec_problem(error, where)
            self.problems.append(problem)
            self.unsure.update((where, place))
            return _MISSING


# Host name labels per RFC 1123 section 2.1; RFC 3696 section 2 rules out an all-numeric top
# label, which here would be a mistyped IPv4 address.
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be bound, judged by its syntax alone (no DNS lookup)."""
    if not host:
        return None  # the default
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if (
        len(host) <= 253
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    ):
        return None
    return f"HOST: must be an IP address or a host name, got {host!r}"


def validate(config: Config, unsure: Collection[str] = ()) -> list[str]:
    """Cross-field problems that the schema alone cannot see.

    ``unsure`` names the places whose value was unusable (and reported): a route is not judged
    against a provider whose name or models are among them.
    """
    problems: list[str] = []
    host = host_problem(config.HOST)
    if host:
        problems.append(host)
    if config.ADMIN_KEY and config.ADMIN_KEY == config.APIKEY:
        problems.append("ADMIN_KEY: must differ from APIKEY, or clients could manage the router")
    if config.BACKUPS_KEPT < 1:
        problems.append(f"BACKUPS_KEPT: must be at least 1, got {config.BACKUPS_KEPT}")
    # A NUL byte is the one thing no file system path can hold: os functions raise on it.
    if "\0" in config.TRANSFORMERS_DIR:
        problems.append("TRANSFORMERS_DIR: must not contain a NUL character")
    for i, spec in enumerate(config.transformers):
        if "\0" in spec.path:
            problems.append(f"transformers[{i}].path: must not contain a NUL character")
    names: set[str] = set()
    for i, provider in enumerate(config.Providers):
        if provider.name in names:
            problems.append(f"Providers[{i}].name: duplicate provider name {provider.name!r}")
        names.add(provider.name)
        if "," in provider.name:
            problems.append(f"Providers[{i}].name: must not contain a comma")
        if not provider.api_base_url.startswith(("http://", "https://")):
            problems.append(
                f"Providers[{i}].api_base_url: must be an http(s) URL, "
                f"got {provider.api_base_url!r}"
            )
        if not provider.models:
            problems.append(f"Providers[{i}].models: must list at least one model")
        problems.extend(_reliability_problems(provider, f"Providers[{i}]"))
        if provider.proxy.strip():
            try:
                parse_proxy(provider.proxy)
            except ProxyURLError as error:
                problems.append(f"Providers[{i}].proxy: {error}")
        if "\0" in provider.ca_bundle:
            problems.append(f"Providers[{i}].ca_bundle: must not contain a NUL character")
    for where, target in _route_targets(config, problems):
        provider_name, sep, model = target.partition(",")
        if not sep or not model:
            problems.append(f'{where}: must be "provider,model", got {target!r}')
            continue
        found = config.provider(provider_name.strip())
        if found is None:
            names_known = not any(
                _under(f"Providers[{i}].name", unsure) for i in range(len(config.Providers))
            )
            if names_known and not _under("Providers", unsure):
                problems.append(f"{where}: provider {provider_name!r} is not configured")
        elif _under(f"Providers[{config.Providers.index(found)}].models", unsure):
            continue
        elif model.strip() not in found.models:
            problems.append(
                f"{where}: model {model!r} is not in the models of provider {found.name!r}"
            )
    if "\0" in config.CUSTOM_ROUTER_PATH:
        problems.append("CUSTOM_ROUTER_PATH: must not contain a NUL character")
    if config.Providers and not config.Router.default:
        problems.append("Router.default: required when providers are configured")
    if config.LOG_LEVEL not in LOG_LEVELS:
        problems.append(
            f"LOG_LEVEL: must be one of {', '.join(LOG_LEVELS)}, got {config.LOG_LEVEL!r}"
        )
    if not 0 < config.PORT < 65536:
        problems.append(f"PORT: must be between 1 and 65535, got {config.PORT}")
    for name in ("API_TIMEOUT_MS", "CONNECT_TIMEOUT_MS", "FIRST_BYTE_TIMEOUT_MS"):
        if getattr(config, name) <= 0:
            problems.append(f"{name}: must be positive")
    if config.PROXY_URL.strip():
        try:
            parse_proxy(config.PROXY_URL)
        except ProxyURLError as error:
            problems.append(f"PROXY_URL: {error}")
    if config.Router.longContextThreshold <= 0:
        problems.append("Router.longContextThreshold: must be positive")
    for name in ("MAX_OPEN_STREAMS", "BREAKER_FAILURES"):
        if getattr(config, name) < 0:
            problems.append(f"{name}: must be 0 (off) or more, got {getattr(config, name)}")
    if config.BREAKER_COOLDOWN_MS <= 0:
        problems.append("BREAKER_COOLDOWN_MS: must be positive")
    return problems


def _route_targets(config: Config, problems: list[str]) -> list[tuple[str, str]]:
    """Every "provider,model" the rules and ``fallback`` name, each with its place."""
    found: list[tuple[str, str]] = []
    for rule in RULES:
        value = getattr(config.Router, rule)
        if isinstance(value, list):
            if not value:
                problems.append(f"Router.{rule}: an empty list; leave the rule out instead")
            found.extend((f"Router.{rule}[{i}]", t) for i, t in enumerate(value))
        elif value:  # claude-code-router's UI writes "" for a rule that is not set
            found.append((f"Router.{rule}", value))
    for rule, targets in config.fallback.items():
        if rule not in RULES:
            problems.append(f"fallback.{rule}: not a Router rule (one of {', '.join(RULES)})")
            continue
        if targets and not rule_targets(getattr(config.Router, rule)):
            problems.append(f"fallback.{rule}: Router.{rule} is not set, so nothing falls back")
        found.extend((f"fallback.{rule}[{i}]", t) for i, t in enumerate(targets))
    return found


def _reliability_problems(provider: Provider, where: str) -> list[str]:
    problems: list[str] = []
    if provider.api_keys:
        if provider.api_key:
            problems.append(f"{where}.api_keys: set api_key or api_keys, not both")
        for j, key in enumerate(provider.api_keys):
            if not key.strip():
                problems.append(f"{where}.api_keys[{j}]: must be a non-empty key")
    if provider.retries < 0:
        problems.append(f"{where}.retries: must be 0 (no retry) or more, got {provider.retries}")
    if provider.retry_budget_ms <= 0:
        problems.append(f"{where}.retry_budget_ms: must be positive")
    return problems


def _set(value: Any) -> bool:
    """Whether a key asks for anything: claude-code-router's UI writes "" for what is unset."""
    return value is not None and value != ""


def warnings(raw: dict[str, Any]) -> list[str]:
    """One line for each thing the config asks for that this router accepts but does not do:
    claude-code-router's keys (:data:`CCR_KEYS`) and its JavaScript routers and transformers."""
    found = [f"{key}: {why}" for key, why in CCR_KEYS.items() if _set(raw.get(key))]
    router = raw.get("CUSTOM_ROUTER_PATH")
    if isinstance(router, str) and is_javascript(router):
        found.append(
            f"CUSTOM_ROUTER_PATH: {router}: JavaScript routers are not run; the built-in rules "
            "apply (a Python file with `route(request, config)` is, see the README)"
        )
    specs = raw.get("transformers")
    for i, spec in enumerate(specs if isinstance(specs, list) else []):
        path = spec.get("path") if isinstance(spec, dict) else None
        if isinstance(path, str) and is_javascript(path):
            found.append(
                f"transformers[{i}].path: {path}: JavaScript transformers are not run: skipped "
                "(a provider that uses its name is refused)"
            )
    return found


def parse(raw: dict[str, Any], source: str, env: dict[str, str]) -> Config:
    """Interpolate, decode and validate a config already read as JSON.

    Every problem is found in one pass: unset variables, each wrong type of each field, and
    the cross-field problems of what is left (those about an unusable value are not repeated).
    claude-code-router's keys in :data:`CCR_KEYS` are left out first, unread (:func:`warnings`
    names them).
    """
    problems: list[str] = []
    kept = {key: value for key, value in raw.items() if key not in CCR_KEYS}
    resolved = interpolate(kept, env, "", problems)
    unsure = {problem.partition(": ")[0] for problem in problems}
    check = _TypeCheck()
    config: Config = check.struct(resolved, Config, "")
    problems += check.problems
    unsure |= check.unsure
    problems += [
        problem
        for problem in validate(config, unsure)
        if not _under(problem.partition(": ")[0], unsure)
    ]
    if problems:
        raise ConfigError(source, problems)
    return config


def _depth(value: Any) -> int:
    """How deeply ``value`` nests, counted without recursion (it may nest too deeply for it)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def decode_json(text: str | bytes, source: str) -> dict[str, Any]:
    """A config's JSON object; bad UTF-8, bad JSON and absurd nesting are each a problem."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(source, [f"not valid UTF-8 (byte {error.start})"]) from None
    too_deep = f"nested more than {MAX_DEPTH} levels deep"
    try:
        raw = msgspec.json.decode(text)
    except msgspec.DecodeError as error:
        raise ConfigError(source, [_json_position(text, error)]) from None
    except RecursionError:  # msgspec's own limit, near Python's recursion limit
        raise ConfigError(source, [too_deep]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the top level must be a JSON object"])
    if _depth(raw) > MAX_DEPTH:
        raise ConfigError(source, [too_deep])
    return raw


def apply_env_overrides(config: Config, env: dict[str, str]) -> Config:
    """``PORT`` and ``HOST`` in the environment override the file, as the seed README says;
    ``STORE_URL`` too."""
    changes: dict[str, Any] = {}
    if env.get("HOST"):
        problem = host_problem(env["HOST"])
        if problem:
            raise ConfigError("environment", [problem])
        changes["HOST"] = env["HOST"]
    if env.get("PORT"):
        try:
            changes["PORT"] = int(env["PORT"])
        except ValueError:
            raise ConfigError("environment", [f"PORT: not a number: {env['PORT']!r}"]) from None
    if env.get("STORE_URL"):
        changes["STORE_URL"] = env["STORE_URL"]  # each node's own database URL and password
    return msgspec.structs.replace(config, **changes) if changes else config


def load(path: Path | None = None) -> LoadedConfig:
    """Load the config at ``path`` (default ``$CONFIG_PATH`` or ``./config.json``).

    A missing file at the default location gives the built-in default (no providers); a missing
    file that was asked for explicitly is an error.
    """
    explicit = path is not None or bool(os.environ.get("CONFIG_PATH"))
    path = path if path is not None else default_config_path()
    load_dotenv(path)
    env = dict(os.environ)
    if not path.exists():
        if explicit:
            raise ConfigError(str(path), ["file not found"])
        return LoadedConfig(apply_env_overrides(Config(), env), None, {})
    try:
        text = path.read_bytes()
    except OSError as error:
        raise ConfigError(str(path), [f"cannot read: {error.strerror}"]) from None
    raw = decode_json(text, str(path))
    config = parse(raw, str(path), env)
    return LoadedConfig(apply_env_overrides(config, env), path.resolve(), raw, warnings(raw))

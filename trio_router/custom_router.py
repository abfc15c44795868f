"""The operator's custom router: a Python file whose ``route(request, config)`` is asked first.

claude-code-router's ``CUSTOM_ROUTER_PATH`` names a JavaScript module exporting an async
``router(req, config)`` that returns ``"provider,model"``, or null for the built-in rules (its
README at v2.0.0, "Custom Router"). Here the file is Python and defines::

    def route(request: MessagesRequest, config: Config) -> str | None: ...

``request`` is the decoded Messages request, ``config`` the running config; ``"provider,model"``
is routed like a client's explicit choice, ``None`` leaves the choice to the rules.

A plain function, not a coroutine: it decides from what it is handed, so it has nothing to wait
for, and the router chooses synchronously on the worker's trio loop, where an asyncio coroutine
(what ``async def`` means to most Python code) could not run anyway. It must not block: a slow
hook stalls every request of its worker.

The file is imported once, at start, because the operator's config file names it, never because
a request or ``POST /api/config`` did: a config applied while running may keep that file or drop
it, never name another (:func:`check_applied`), as custom transformers' ``api_loader`` does.

A hook that raises or returns anything but ``None`` or a configured ``"provider,model"`` fails
that request with a 500 ``api_error`` naming it (logged with its traceback), and the server
serves on. It does not fall through to the rules, as claude-code-router does: a hook often exists
to keep some requests away from some provider, and a broken one must not send them there.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from .anthropic import MessagesRequest
from .code_files import ImportFailed, import_file, resolved
from .config import Config, ConfigError, LoadedConfig, is_javascript
from .errors import RouterError
from .logs import logger

RouteFunction = Callable[[MessagesRequest, Config], object]


class CustomRouterError(RouterError):
    """The custom router failed on a request, or answered with something unroutable."""

    status = 500
    error_type = "api_error"


class CustomRouter:
    """The ``route`` function of the file ``CUSTOM_ROUTER_PATH`` names, checked around each
    call."""

    def __init__(self, path: Path, function: RouteFunction) -> None:
        self.path = path
        self.function = function
        # Clients are told the file's name, not where the server keeps it.
        self.name = f"custom router {path.name!r}"

    def __call__(self, request: MessagesRequest, config: Config) -> str | None:
        try:
            target = self.function(request, config)
        except Exception as error:
            logger.exception("%s failed", self.name)
            raise CustomRouterError(
                f"{self.name} failed: {type(error).__name__}: {error}"
            ) from error
        if target is None or isinstance(target, str):
            return target
        raise CustomRouterError(
            f'{self.name} returned {type(target).__name__}; expected "provider,model" or None'
        )


def load(path_text: str, base: Path) -> CustomRouter:
    """Import the file and find its ``route``; every failure is a ConfigError-ready problem
    naming the file."""
    path = resolved(base, path_text)
    where = f"CUSTOM_ROUTER_PATH: {path}"
    try:
        module = import_file(path, "trio_router_custom_router")
    except ImportFailed as error:
        raise ValueError(f"{where}: {error}") from None
    function = getattr(module, "route", None)
    if not callable(function):
        raise ValueError(f"{where}: defines no function `route(request, config)`")
    if inspect.iscoroutinefunction(function):
        raise ValueError(f"{where}: `route` must be a plain function (def), not async def")
    try:
        inspect.signature(function).bind(None, None)
    except TypeError:
        raise ValueError(f"{where}: `route` must take two arguments, (request, config)") from None
    except ValueError:
        pass  # a callable without a signature Python can read: it is called as it is
    return CustomRouter(path, function)


def build(loaded: LoadedConfig) -> CustomRouter | None:
    """The config's custom router, imported: at start only, from the operator's own file.

    None when there is none, or when it is claude-code-router's JavaScript (config.warnings
    says that it is not run).
    """
    path_text = loaded.config.CUSTOM_ROUTER_PATH
    if not path_text or is_javascript(path_text):
        return None
    base = loaded.path.parent if loaded.path else Path.cwd()
    try:
        return load(path_text, base)
    except ValueError as error:
        source = str(loaded.path) if loaded.path else "built-in default config"
        raise ConfigError(source, [str(error)]) from None


def check_applied(config: Config, running: CustomRouter | None, base: Path) -> list[str]:
    """The problem, if any, of the custom router a config applied while running names.

    It may keep the file loaded at start or drop it; another would be code that a config sent
    to the API chose, so it is refused, with the same answer whatever exists at that path.
    """
    path_text = config.CUSTOM_ROUTER_PATH
    if not path_text or is_javascript(path_text):
        return []
    if running is not None and resolved(base, path_text) == running.path:
        return []
    loaded = f"the one loaded at start ({running.path.name})" if running else "none was"
    return [
        f"CUSTOM_ROUTER_PATH: {path_text!r}: a config applied while running may keep the custom "
        f"router loaded at start, or drop it, but not name another ({loaded}): restart to load it"
    ]

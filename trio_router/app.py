"""The ASGI application: the raw ``/v1/messages`` hot path in front of a Quart-trio app.

``POST /v1/messages`` goes straight to :class:`MessagesHandler`; every other request (health,
count_tokens, the ``/api`` management endpoints, lifespan) is served by Quart-trio.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from . import (
    __version__,
    api_keys,
    config_store,
    connections,
    custom_router,
    dashboard_api,
    logs,
    metrics,
    models_api,
    ui,
)
from .config import Config, ConfigError, LoadedConfig, default_config_path, load
from .errors import (
    InvalidRequestError,
    NotFoundError,
    RouterError,
    error_envelope,
    error_type_for_status,
)
from .intake import MAX_BODY_BYTES, decode_request
from .logs import logger
from .masking import config_secrets
from .messages import MessagesHandler
from .reload import POST, Reloader
from .state import State, data_dir
from .store import SessionUsage
from .tokens import count_tokens, encoding
from .transformers import TransformerConfigError, Transformers, api_loader

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status=status, content_type="application/json")


def _error(error: RouterError) -> Response:
    response = Response(error.envelope(), status=error.status, content_type="application/json")
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def build_transformers(loaded: LoadedConfig) -> Transformers:
    """The config's chains; bad transformer specs are one ConfigError listing every problem."""
    source = str(loaded.path) if loaded.path else "built-in default config"
    # Relative custom transformer paths are relative to the config's folder.
    base = loaded.path.parent if loaded.path else None
    try:
        return Transformers(loaded.config, base)
    except TransformerConfigError as error:
        raise ConfigError(source, error.problems) from None


def quart_app(state: State) -> QuartTrio:
    app = QuartTrio("trio_router")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    api_keys.register(app, state)
    metrics.register(app, state)
    models_api.register(app, state)

    reloader = Reloader(state, _config_path(state))

    @app.before_serving
    async def warm_up() -> None:
        # The tokenizer holds ~47 MB: loaded up front (off the event loop) only when routing
        # counts every large request; otherwise on the first count_tokens call.
        if state.runtime.router.needs_token_count:
            await trio.to_thread.run_sync(encoding)
        await app.nursery.start(reloader.run)

    @app.after_serving
    async def close_upstream() -> None:
        reloader.scope.cancel()
        await state.upstream.aclose()
        await state.usage.aclose()  # commits the usage still pending

    @app.before_request
    async def check_auth() -> Response | None:
        g.started = time.perf_counter()
        headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in request.headers.items()]
        try:
            await state.access.check_path(
                request.path, headers, state.runtime.config, request.method
            )
        except RouterError as error:
            return _error(error)
        return None

    @app.after_request
    async def log_request(response: Response) -> Response:
        started = getattr(g, "started", None)
        took = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        logger.info("%s %s %d %.1fms", request.method, request.path, response.status_code, took)
        return response

    @app.errorhandler(RouterError)
    async def router_error(error: RouterError) -> Response:
        return _error(error)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        return Response(
            error_envelope(
                error_type_for_status(status), f"{error.name}: {request.method} {request.path}"
            ),
            status=status,
            content_type="application/json",
        )

    @app.route("/", methods=["GET", "HEAD"])
    async def health() -> Response:
        return _json(
            {
                "status": "ok",
                "service": "trio-router",
                "version": __version__,
                "providers": len(state.runtime.config.Providers),
            }
        )

    @app.post("/v1/messages/count_tokens")
    async def count() -> Response:
        message = decode_request(await request.body)
        tokens = await trio.to_thread.run_sync(count_tokens, message)
        return _json({"input_tokens": tokens})

    @app.get("/api/config")
    async def get_config() -> Response:
        # The file as it is now, not as it was at start: a client saves back what it shows.
        path = _config_path(state)
        try:
            loaded = state.runtime.loaded
            current = await trio.to_thread.run_sync(config_store.current, path, loaded)
        except ConfigError as error:
            raise RouterError(
                f"the config file cannot be shown: {error}; fix it or POST a whole config"
            ) from None
        return _json(config_store.masked(current))

    @app.post("/api/config")
    async def post_config() -> Response:
        path = _config_path(state)
        body = await request.body
        allow_no_auth = request.args.get("allow_no_auth") == "true"
        # Custom transformers are named, never imported: the API must not run code. What
        # "loaded at start" means, and TRANSFORMERS_DIR, stay as the process started.
        runtime, initial = state.runtime, state.initial
        loader = api_loader(initial.transformers, path.parent, initial.config.TRANSFORMERS_DIR)

        def check(config: Config) -> None:
            Transformers(config, path.parent, loader)
            problems = custom_router.check_applied(config, initial.router.hook, path.parent)
            if problems:
                raise ConfigError(config_store.SOURCE, problems)

        try:
            backup, raw = await trio.to_thread.run_sync(
                partial(
                    config_store.write,
                    path,
                    body,
                    dict(os.environ),
                    runtime.loaded,
                    started=initial.loaded,
                    allow_no_auth=allow_no_auth,
                    check=check,
                )
            )
        except ConfigError as error:
            raise InvalidRequestError("invalid config: " + "; ".join(error.problems)) from None
        except TransformerConfigError as error:
            raise InvalidRequestError(f"invalid config: {error}") from None
        logger.info("config written to %s (backup %s)", path, backup)
        # Applied here before the answer; the other workers see the file change.
        outcome = await reloader.reload(POST)
        # With a shared store, every other node writes and applies it too (reload.py).
        unshared = await reloader.share(raw)
        if unshared:
            outcome.warnings = [*outcome.warnings, unshared]
        if outcome.applied:
            message = f"Configuration updated and {outcome.message}."
            if outcome.restart_required:
                fixed = ", ".join(outcome.restart_required)
                message += f" {fixed}: set when the server starts, applied at a restart."
        else:
            message = (
                f"Configuration written but not applied: {outcome.message}. "
                "The previous config keeps serving."
            )
        return _json(
            {
                "success": True,
                "applied": outcome.applied,
                "message": message,
                "backup": str(backup) if backup else None,
                "restartRequired": outcome.restart_required,
                "warnings": outcome.warnings,
            }
        )

    @app.post("/api/config/backup")
    async def post_backup() -> Response:
        path = _config_path(state)
        kept = state.runtime.config.BACKUPS_KEPT
        backup = await trio.to_thread.run_sync(config_store.backup, path, kept)
        if backup is None:
            raise NotFoundError(f"no config file at {path} to back up")
        return _json({"success": True, "backup": str(backup)})

    @app.get("/api/transformers")
    async def get_transformers() -> Response:
        return _json(state.runtime.transformers.describe())

    @app.get("/api/usage")
    async def usage_total() -> Response:
        return _json(await state.usage.totals())

    @app.get("/api/usage/sessions")
    async def usage_sessions() -> Response:
        return _json({"sessions": await state.usage.sessions()})

    @app.get("/api/usage/sessions/<session>")
    async def usage_session(session: str) -> Response:
        found: SessionUsage | None = await state.usage.session(session)
        if found is None:
            raise NotFoundError(f"no usage recorded for session {session!r}")
        return _json(found)

    @app.delete("/api/usage/sessions/<session>")
    async def usage_delete(session: str) -> Response:
        if not await state.usage.delete(session):
            raise NotFoundError(f"no usage recorded for session {session!r}")
        return _json({"success": True, "sessionId": session})

    return app


def _config_path(state: State) -> Path:
    return state.runtime.loaded.path or default_config_path().resolve()


class RouterApp:
    """Dispatches the hot path to the raw handler and everything else to Quart."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.messages = MessagesHandler(state)
        quart = quart_app(state)
        ui.register(quart, state)
        # The dashboard's open-streams figure is this worker's count (messages.py keeps it).
        dashboard_api.register(quart, state, self.messages.reliability)
        self.quart = connections.Connections(quart, state.bodies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/v1/messages"
            and scope["method"] == "POST"
        ):
            await self.messages(scope, receive, send)
        else:
            await self.quart(scope, receive, send)


def create_app(loaded: LoadedConfig | None = None) -> RouterApp:
    """The app for one worker; with no argument, the config from ``$CONFIG_PATH``."""
    if loaded is None:
        loaded = load()
    config = loaded.config
    logs.setup(
        enabled=config.LOG,
        level=config.LOG_LEVEL,
        directory=data_dir(loaded) / "logs",
        secrets=config_secrets(config),
        log_format=config.LOG_FORMAT,
    )
    if loaded.path is not None:
        try:
            config_store.tidy(loaded.path, config.BACKUPS_KEPT)
        except OSError as error:
            logger.warning("cannot tidy the config's backups: %s", error)
    transformers = build_transformers(loaded)
    hook = custom_router.build(loaded)
    for warning in [*loaded.warnings, *transformers.warnings]:
        logger.warning("config: %s", warning)
    return RouterApp(State(loaded, transformers, hook))

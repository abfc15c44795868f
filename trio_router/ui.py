"""The dashboard at ``/ui``: its login, its logout, and its static files.

The pages are static files shipped in the package (``trio_router/ui/``): no build step, nothing
fetched from outside the box. The data comes from ``/api/*`` (app.py, api_keys.py,
dashboard_api.py) with the session cookie that ``POST /ui/login`` sets; ``keys.check_path``
decides who may see what, before any of these handlers runs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from importlib import resources
from typing import Final

from quart import Response, request
from quart_trio import QuartTrio

from . import auth, keys
from .errors import AuthenticationError, InvalidRequestError, NotFoundError
from .state import State

_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Only the dashboard's own files run or load: no inline script, nothing from another origin,
# no framing (https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/Content-Security-Policy).
_SECURITY_HEADERS: Final = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
_CSRF_PLACEHOLDER: Final = "{{csrf}}"
_EXPIRES_PLACEHOLDER: Final = "{{expires}}"


def _files() -> dict[str, bytes]:
    """Every file of the dashboard, by its path under ``ui/``, read once at start: the static
    route serves only these names, so no request path reaches the file system."""
    root = resources.files("trio_router").joinpath("ui")
    found: dict[str, bytes] = {}
    pending = [("", root)]
    while pending:
        prefix, folder = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                pending.append((f"{prefix}{entry.name}/", entry))
            elif any(entry.name.endswith(ext) for ext in _TYPES):
                found[prefix + entry.name] = entry.read_bytes()
    return found


def _page(body: bytes, content_type: str, status: int = 200) -> Response:
    response = Response(body, status=status, content_type=content_type)
    response.headers.update(_SECURITY_HEADERS)
    return response


def _secure() -> bool:
    """Whether the browser reached us over https, directly or through a proxy that says so
    (``X-Forwarded-Proto``, the de facto header nginx and load balancers set)."""
    forwarded = request.headers.get("x-forwarded-proto", "")
    return request.scheme == "https" or forwarded.split(",")[0].strip().lower() == "https"


def _admin_key(state: State) -> str:
    config = state.runtime.config
    return auth.key_for("/api", config.APIKEY, config.ADMIN_KEY)


def register(app: QuartTrio, state: State) -> None:
    files = _files()
    etags = {
        name: '"' + hashlib.sha256(data).hexdigest()[:16] + '"' for name, data in files.items()
    }
    index = files["index.html"].decode()

    @app.get("/ui")
    async def dashboard() -> Response:
        # The CSRF token a mutating /api call must send goes into the page itself: a page of
        # another site can neither read it nor (SameSite=Strict) make the browser send the cookie.
        session = keys.session_cookie(
            (k.lower().encode(), v.encode("latin-1")) for k, v in request.headers.items()
        )
        admin = _admin_key(state)
        token, expires = "", ""
        if session is not None and admin and keys.valid_session(session, admin, time.time()):
            token = keys.csrf_token(session, admin)
            expires = str(keys.session_expiry(session))
        html = index.replace(_CSRF_PLACEHOLDER, token).replace(_EXPIRES_PLACEHOLDER, expires)
        response = _page(html.encode(), _TYPES[".html"])
        response.headers["cache-control"] = "no-store"
        return response

    @app.get(keys.UI_LOGIN)
    async def login_page() -> Response:
        return _page(files["login.html"], _TYPES[".html"])

    @app.post(keys.UI_LOGIN)
    async def login() -> Response:
        form = await request.form
        presented = form.get("key")
        if presented is None:
            raise InvalidRequestError("missing form field 'key': the admin key")
        admin = _admin_key(state)
        if admin and not hmac.compare_digest(presented.strip().encode(), admin.encode()):
            raise AuthenticationError("invalid admin key")
        # 303: the browser follows with a GET of the dashboard (RFC 9110 section 15.4.4).
        response = Response("", status=303, headers={"location": "/ui"})
        if admin:
            # Only the cookie is kept, nowhere else (no localStorage): HttpOnly, so no script
            # reads it; SameSite=Strict, so no other site's page makes the browser send it
            # (RFC 6265bis section 4.1.2.7).
            response.set_cookie(
                keys.SESSION_COOKIE,
                keys.new_session(admin, time.time()),
                max_age=keys.SESSION_SECONDS,
                path="/",
                secure=_secure(),
                httponly=True,
                samesite="Strict",
            )
        return response

    @app.post("/ui/logout")
    async def logout() -> Response:
        response = Response("", status=303, headers={"location": keys.UI_LOGIN})
        response.delete_cookie(
            keys.SESSION_COOKIE, path="/", secure=_secure(), httponly=True, samesite="Strict"
        )
        return response

    @app.get(keys.UI_STATIC + "<path:name>")
    async def ui_static(name: str) -> Response:
        found = files.get("static/" + name)
        if found is None:
            raise NotFoundError(f"no dashboard file {name!r}")
        etag = etags["static/" + name]
        if request.headers.get("if-none-match") == etag:
            response = Response("", status=304)
        else:
            suffix = name[name.rfind(".") :]
            response = _page(found, _TYPES[suffix])
        # Revalidated on each load (a 304 costs nothing), so an upgrade is seen at once.
        response.headers["cache-control"] = "no-cache"
        response.headers["etag"] = etag
        return response

"""Who gets into the dashboard: a wrong key, no cookie, a forged or expired cookie gets no data
from any ``/ui`` route and none from ``/api``; the session cookie's flags; a cross-site-looking
mutating request refused; ``/metrics``' keys. Against the real router over HTTP (httpx)."""

from __future__ import annotations

import json
import time
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest

from tests import openai_wire as wire
from tests.conftest import RunningRouter, StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request
from trio_router import keys

ADMIN = "admin-ui-auth-key-0123456789"
CLIENT = "client-ui-auth-key-0123"
METRICS = "metrics-ui-auth-key-0123"
# Every route that shows data; each must answer 401 (``/api``) or send to the login (``/ui``).
API_DATA = [
    "/api/config",
    "/api/config/backups",
    "/api/usage",
    "/api/usage/sessions",
    "/api/usage/timeline",
    "/api/errors/recent",
    "/api/streams",
    "/api/keys",
    "/api/transformers",
]


async def _router(start_fake: StartFake, start_router: StartRouter) -> RunningRouter:
    def handler(request: Request) -> Reply:
        return Reply.json(wire.completion("ok", prompt=5, completion_tokens=3))

    fake = await start_fake(handler)
    return await start_router(
        {
            "APIKEY": CLIENT,
            "ADMIN_KEY": ADMIN,
            "METRICS_KEY": METRICS,
            "Providers": [provider_config(fake)],
            "Router": {"default": "fake,fake-model"},
        }
    )


def _ui_paths(router: RunningRouter) -> list[str]:
    """Every ``/ui`` route the app has (read from its URL map, so a new one is covered too),
    with a made-up name for each variable part, and a path that matches none."""
    quart: Any = router.app.quart.app
    paths = {"/ui/nothing-here", "/ui/"}
    for rule in quart.url_map.iter_rules():
        if rule.rule.startswith("/ui"):
            paths.add(rule.rule.replace("<path:name>", "dashboard.js"))
    return sorted(paths)


async def _login(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.post("/ui/login", data={"key": ADMIN}, headers=headers)


def _set_cookie(response: httpx.Response) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(response.headers["set-cookie"])
    return cookie


def _assert_no_data(response: httpx.Response, path: str) -> None:
    """A refusal: ``/ui`` sends to the login page, ``/api`` answers Anthropic's 401."""
    if path.startswith("/api"):
        assert response.status_code == 401, (path, response.text)
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == "authentication_error"
    else:
        assert response.status_code == 303, (path, response.status_code, response.text)
        assert response.headers["location"] == "/ui/login"
        assert response.json()["error"]["type"] == "authentication_error"
    assert "csrf" not in response.text and "keys" not in response.text


async def test_no_session_gets_no_data_from_any_ui_or_api_route(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    router = await _router(start_fake, start_router)
    paths = _ui_paths(router)
    assert {"/ui", "/ui/login", "/ui/logout", "/ui/static/dashboard.js"} <= set(paths)
    forged = keys.new_session("some-other-admin-key", time.time())
    good = keys.new_session(ADMIN, time.time())
    expiry = good.split(".")[1]
    attempts: list[dict[str, str]] = [
        {},
        {"x-api-key": "wrong-key"},
        {"x-api-key": CLIENT},  # the clients' key opens /v1, not the dashboard
        {"authorization": f"Bearer {METRICS}"},  # the scraper's key opens /metrics only
        {"cookie": f"{keys.SESSION_COOKIE}={forged}"},  # signed with another key
        # Expired 1 s ago, signed with the right key.
        {
            "cookie": f"{keys.SESSION_COOKIE}="
            + keys.new_session(ADMIN, time.time() - keys.SESSION_SECONDS - 1)
        },
        # A good cookie whose expiry was pushed later: its MAC no longer matches.
        {"cookie": f"{keys.SESSION_COOKIE}=" + good.replace(expiry, str(int(expiry) + 9999))},
        {"cookie": f"{keys.SESSION_COOKIE}={good[:-1]}{'0' if good[-1] != '0' else '1'}"},
        {"cookie": f"{keys.SESSION_COOKIE}=garbage"},
        {"cookie": f"other={good}"},  # the right value under another name
    ]
    async with router.client() as client:
        for headers in attempts:
            for path in paths:
                response = await client.get(path, headers=headers)
                if path == "/ui/login" or path.startswith("/ui/static/"):
                    # The form and its script: static, the same for everyone, no data.
                    assert response.status_code == 200, path
                    assert "{{csrf}}" not in response.text
                elif path == "/ui/logout":
                    assert response.status_code == 405  # POST only; and it only clears
                else:
                    _assert_no_data(response, path)
            for path in API_DATA:
                _assert_no_data(await client.get(path, headers=headers), path)
        # A wrong key at the login form: 401, and no cookie.
        wrong = await client.post("/ui/login", data={"key": "wrong-key"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["type"] == "authentication_error"
        assert "set-cookie" not in wrong.headers
        client_key = await client.post("/ui/login", data={"key": CLIENT})
        assert client_key.status_code == 401 and "set-cookie" not in client_key.headers
        missing = await client.post("/ui/login", data={})
        assert missing.status_code == 400
        assert missing.json()["error"]["type"] == "invalid_request_error"


async def test_login_cookie_flags_and_what_it_opens(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    router = await _router(start_fake, start_router)
    async with router.client() as client:
        response = await _login(client)
        assert response.status_code == 303 and response.headers["location"] == "/ui"
        cookie = _set_cookie(response)[keys.SESSION_COOKIE]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/"
        assert cookie["max-age"] == str(12 * 3600)
        assert not cookie["secure"]  # plain http: a Secure cookie would never come back
        assert ADMIN not in response.headers["set-cookie"]
        behind_tls = await _login(client, **{"x-forwarded-proto": "https"})
        assert _set_cookie(behind_tls)[keys.SESSION_COOKIE]["secure"] is True

        session = {"cookie": f"{keys.SESSION_COOKIE}={cookie.value}"}
        page = await client.get("/ui", headers=session)
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        token = keys.csrf_token(cookie.value, ADMIN)
        assert f'content="{token}"' in page.text
        for path in API_DATA:
            assert (await client.get(path, headers=session)).status_code == 200, path
        config = (await client.get("/api/config", headers=session)).json()
        assert config["ADMIN_KEY"] != ADMIN  # masked

        out = await client.post("/ui/logout", headers=session)
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        cleared = _set_cookie(out)[keys.SESSION_COOKIE]
        assert cleared.value == "" and cleared["max-age"] == "0"


async def test_cross_site_mutations_are_refused(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    router = await _router(start_fake, start_router)
    async with router.client() as client:
        value = _set_cookie(await _login(client))[keys.SESSION_COOKIE].value
        session = {"cookie": f"{keys.SESSION_COOKIE}={value}"}
        body = json.dumps({"name": "mallory"})
        # What another site's form or fetch can send: the cookie (were it not SameSite) but not
        # the token, which only the dashboard's own page holds.
        for extra in (
            {"content-type": "application/x-www-form-urlencoded"},
            {"origin": "https://evil.example", keys.CSRF_HEADER: "guess"},
            {keys.CSRF_HEADER: keys.csrf_token(value, "some-other-admin-key")},
        ):
            refused = await client.post("/api/keys", content=body, headers={**session, **extra})
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["type"] == "permission_error"
            assert keys.CSRF_HEADER in refused.json()["error"]["message"]
        assert (await client.get("/api/keys", headers=session)).json() == {"keys": []}
        config = await client.get("/api/config", headers={"x-api-key": ADMIN})
        refused = await client.post(
            "/api/config", content=config.content, headers={**session, "origin": "null"}
        )
        assert refused.status_code == 403
        assert (await client.post("/api/config/backup", headers=session)).status_code == 403

        csrf = {**session, keys.CSRF_HEADER: keys.csrf_token(value, ADMIN)}
        made = await client.post("/api/keys", content=body, headers=csrf)
        assert made.status_code == 201, made.text
        key_id = made.json()["id"]
        refused = await client.delete(f"/api/keys/{key_id}", headers=session)
        assert refused.status_code == 403
        assert (await client.delete(f"/api/keys/{key_id}", headers=csrf)).status_code == 200

        # A new admin key ends every session: the cookie's secret was derived from the old one.
        new_config = {**config.json(), "ADMIN_KEY": "admin-ui-auth-key-rotated-0123"}
        applied = await client.post("/api/config", json=new_config, headers=csrf)
        assert applied.status_code == 200, applied.text
        _assert_no_data(await client.get("/api/keys", headers=session), "/api/keys")
        _assert_no_data(await client.get("/ui", headers=session), "/ui")


@pytest.mark.parametrize("path", ["/metrics"])
async def test_metrics_takes_the_admin_or_the_metrics_key(
    start_fake: StartFake, start_router: StartRouter, path: str
) -> None:
    router = await _router(start_fake, start_router)
    async with router.client() as client:
        for headers in ({}, {"x-api-key": CLIENT}, {"x-api-key": "wrong"}):
            refused = await client.get(path, headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json()["error"]["type"] == "authentication_error"
        for key in (ADMIN, METRICS):
            # Past the check: the metrics route answers (or, without it, the 404 of no route).
            let_in = await client.get(path, headers={"authorization": f"Bearer {key}"})
            assert let_in.status_code in (200, 404), let_in.text
            assert let_in.status_code != 401
        # The metrics key opens nothing else.
        assert (await client.get("/api/usage", headers={"x-api-key": METRICS})).status_code == 401


async def test_dashboard_views_check_their_parameters(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    router = await _router(start_fake, start_router)
    admin = {"x-api-key": ADMIN}
    async with router.client(headers=admin) as client:
        for query in (
            "bucket=week",
            "by=session",
            "since=yesterday",
            "since=2026-01-01T00:00:00",  # no time zone
            "since=100&until=50",
            "bucket=hour&since=0&until=100000000",
        ):
            bad = await client.get(f"/api/usage/timeline?{query}")
            assert bad.status_code == 400, query
            assert bad.json()["error"]["type"] == "invalid_request_error"
        for limit in ("0", "1001", "x", "-1"):
            assert (await client.get(f"/api/errors/recent?limit={limit}")).status_code == 400
        ok = await client.get(
            "/api/usage/timeline?bucket=day&by=user&since=2026-11-01T00:00:00Z&until=1796083200"
        )
        assert ok.status_code == 200
        assert ok.json()["bucket"] == "day" and ok.json()["rows"] == []
        streams = (await client.get("/api/streams")).json()
        assert streams["open"] == 0 and streams["scope"] == "worker" and streams["max"] == 200
        backup = (await client.post("/api/config/backup")).json()["backup"]
        listed = (await client.get("/api/config/backups")).json()["backups"]
        assert [b["name"] for b in listed] == [backup.rsplit("/", 1)[1]]
        shown = (await client.get(f"/api/config/backups/{listed[0]['name']}")).json()
        assert shown["ADMIN_KEY"] != ADMIN and shown["ADMIN_KEY"].count("*") == 4
        assert (await client.get("/api/config/backups/..%2Fconfig.json")).status_code == 404
        assert (await client.get("/api/config/backups/config.json")).status_code == 404

"""The management plane under attack: no code execution, no key exfiltration, no lost keys.

Each test drives the real server and plays what a holder of the management key could do with
``GET``/``POST /api/config`` (issue 15, items 1-3, 6-11).
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tests import openai_wire as wire
from tests.conftest import RunningRouter, StartFake, StartRouter, provider_config
from tests.fakeserver import FakeServer, Reply, Request
from trio_router import cli

CLIENT_KEY = "client-key-for-v1-3a8d71"
ADMIN_KEY = "admin-key-for-api-9c24e0"
PROVIDER_KEY = "sk-or-v1-provider-secret-000000"
USER = [{"role": "user", "content": "hi"}]


def answer(request: Request) -> Reply:
    return Reply.json(wire.completion("ok"))


def base_config(fake: FakeServer | None = None, /, **extra: Any) -> dict[str, Any]:
    provider: dict[str, Any] = (
        provider_config(fake, name="p", api_key=PROVIDER_KEY, models=["m"])
        if fake is not None
        else {
            "name": "p",
            "api_base_url": "http://127.0.0.1:9/v1/chat/completions",
            "api_key": PROVIDER_KEY,
            "models": ["m"],
        }
    )
    return {"LOG": False, "Providers": [provider], "Router": {"default": "p,m"}, **extra}


async def get_config(router: RunningRouter, key: str | None = None) -> dict[str, Any]:
    headers = {"x-api-key": key} if key else {}
    async with router.client() as client:
        response = await client.get("/api/config", headers=headers)
    assert response.status_code == 200, response.text
    shown: dict[str, Any] = response.json()
    return shown


async def post_config(router: RunningRouter, body: Any, query: str = "", key: str = "") -> Any:
    headers = {"x-api-key": key} if key else {}
    async with router.client() as client:
        if isinstance(body, bytes):
            return await client.post("/api/config" + query, content=body, headers=headers)
        return await client.post("/api/config" + query, json=body, headers=headers)


def error_of(response: Any) -> str:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    message: str = response.json()["error"]["message"]
    return message


# -- 1. No code execution through the config API ------------------------------------------------

MARKER_HOOK = """
from pathlib import Path

Path({marker!r}).write_text("imported")


class MarkerHook:
    name = "marker-hook"

    def transform_request(self, request, route):
        return request
"""


def marker_file(directory: Path, marker: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "marker_hook.py"
    path.write_text(MARKER_HOOK.format(marker=str(marker)))
    return path


def with_transformer(config: dict[str, Any], path: str) -> dict[str, Any]:
    config = copy.deepcopy(config)
    config["transformers"] = [{"path": path}]
    config["Providers"][0]["transformer"] = {"use": ["marker-hook", "openrouter"]}
    return config


async def test_post_never_imports_a_transformer_it_names(
    start_router: StartRouter, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    router = await start_router(base_config())
    before = router.config_path.read_text()
    marker = tmp_path / "marker"
    evil = marker_file(tmp_path / "elsewhere", marker)
    this = importlib.util.find_spec("this")
    assert this is not None and this.origin is not None
    capfd.readouterr()
    evil_answer = await post_config(router, with_transformer(base_config(), str(evil)))
    zen_answer = await post_config(router, with_transformer(base_config(), this.origin))
    missing = str(tmp_path / "elsewhere" / "absent.py")
    missing_answer = await post_config(router, with_transformer(base_config(), missing))
    assert not marker.exists()
    assert "Beautiful is better than ugly" not in capfd.readouterr().out
    # The answer says nothing about what exists outside: the same text for a file and no file.
    messages = {
        error_of(answer).replace(path, "PATH")
        for answer, path in [
            (evil_answer, str(evil)),
            (zen_answer, this.origin),
            (missing_answer, missing),
        ]
    }
    assert len(messages) == 1
    assert "TRANSFORMERS_DIR" in messages.pop()
    nul = await post_config(router, with_transformer(base_config(), "a\0b.py"))
    assert "must not contain a NUL character" in error_of(nul)
    assert router.config_path.read_text() == before


async def test_post_names_files_in_transformers_dir_that_load_only_at_start(
    start_router: StartRouter, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    marker = tmp_path / "marker"
    marker_file(site / "transformers", marker)
    (tmp_path / "outside.py").write_text("raise SystemExit('never')\n")
    router = await start_router(base_config(TRANSFORMERS_DIR="transformers"), directory=site)
    config = base_config(TRANSFORMERS_DIR="transformers")
    accepted = await post_config(router, with_transformer(config, "transformers/marker_hook.py"))
    assert accepted.status_code == 200, accepted.text
    assert not marker.exists()
    escaped = await post_config(router, with_transformer(config, "transformers/../../outside.py"))
    assert "TRANSFORMERS_DIR (transformers)" in error_of(escaped)
    unknown = copy.deepcopy(config)
    unknown["Providers"][0]["transformer"] = {"use": ["not-a-transformer"]}
    assert "unknown transformer 'not-a-transformer'" in error_of(await post_config(router, unknown))
    # The operator's restart loads it.
    written = json.loads(router.config_path.read_text())
    assert written["transformers"] == [{"path": "transformers/marker_hook.py"}]
    await start_router(written, directory=site)
    assert marker.read_text() == "imported"


async def test_transformers_dir_cannot_be_changed_through_the_api(
    start_router: StartRouter, tmp_path: Path
) -> None:
    router = await start_router(base_config())
    before = router.config_path.read_text()
    marker = tmp_path / "marker"
    marker_file(tmp_path / "anything", marker)
    config = with_transformer(
        base_config(TRANSFORMERS_DIR=str(tmp_path)), str(tmp_path / "anything/marker_hook.py")
    )
    assert "TRANSFORMERS_DIR: is fixed when the server starts" in error_of(
        await post_config(router, config)
    )
    assert router.config_path.read_text() == before
    assert not marker.exists()


async def test_a_transformer_loaded_at_start_may_stay_in_a_posted_config(
    start_router: StartRouter, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    hook = marker_file(tmp_path / "operator", marker)
    router = await start_router(with_transformer(base_config(), str(hook)))
    marker.unlink()  # imported at start, as the operator asked
    shown = await get_config(router)
    shown["Providers"][0]["models"] = ["m", "m2"]
    response = await post_config(router, shown)
    assert response.status_code == 200, response.text
    assert not marker.exists()
    assert json.loads(router.config_path.read_text())["Providers"][0]["api_key"] == PROVIDER_KEY


# -- 2. A masked key is restored only for the same provider at the same URL -------------------


def echo_auth(request: Request) -> Reply:
    return Reply.json(wire.completion(request.headers.get("authorization", "")))


async def test_a_masked_key_does_not_follow_a_new_api_base_url(
    start_router: StartRouter, start_fake: StartFake, tmp_path: Path
) -> None:
    real = await start_fake(echo_auth)
    attacker = await start_fake(echo_auth)
    site = tmp_path / "site"
    router = await start_router(base_config(real), directory=site)
    before = router.config_path.read_text()
    shown = await get_config(router)
    assert shown["Providers"][0]["api_key"] == "sk-o****0000"
    shown["Providers"][0]["api_base_url"] = attacker.url + "/v1/chat/completions"
    message = error_of(await post_config(router, shown))
    assert "Providers[0].api_key" in message
    assert "api_base_url changed" in message and "send the real value" in message
    assert router.config_path.read_text() == before
    # After a restart the key still goes where it went, and only there.
    restarted = await start_router(json.loads(before), directory=site)
    async with restarted.client() as client:
        response = await client.post(
            "/v1/messages", json={"model": "m", "max_tokens": 10, "messages": USER}
        )
    assert response.json()["content"][0]["text"] == f"Bearer {PROVIDER_KEY}"
    assert attacker.requests == []
    # The operator who means it sends the real key with the new URL.
    shown["Providers"][0]["api_key"] = "sk-or-v1-new-key-for-new-host-1111"
    assert (await post_config(router, shown)).status_code == 200


async def test_a_masked_key_stays_for_the_same_provider_and_url(
    start_router: StartRouter,
) -> None:
    router = await start_router(base_config())
    shown = await get_config(router)
    shown["Providers"][0]["models"] = ["m", "m2"]
    renamed = copy.deepcopy(shown)
    assert (await post_config(router, shown)).status_code == 200
    assert json.loads(router.config_path.read_text())["Providers"][0]["api_key"] == PROVIDER_KEY
    renamed["Providers"][0]["name"] = "other"
    renamed["Router"]["default"] = "other,m"
    assert "no provider 'other'" in error_of(await post_config(router, renamed))


# -- 3. Secrets in headers and URLs are masked, and restored under the same rule --------------

HEADER_KEY = "sk-header-secret-5555aaaa"
GOOG_KEY = "AIza-goog-secret-6666bbbb"
QUERY_KEY = "query-secret-7777cccc"
PASSWORD = "userinfo-pass-8888dddd"


async def test_get_masks_header_and_url_secrets_and_post_restores_them(
    start_router: StartRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIO_ROUTER_TEST_HEADER", "from-env-secret-999999")
    config = base_config(APIKEY=CLIENT_KEY)
    config["Providers"][0].update(
        {
            "api_base_url": f"http://user:{PASSWORD}@127.0.0.1:9/v1/chat/completions"
            f"?key={QUERY_KEY}&alt=sse",
            "headers": {
                "Authorization": f"Bearer {HEADER_KEY}",
                "x-goog-api-key": GOOG_KEY,
                "X-Api-Token": "$TRIO_ROUTER_TEST_HEADER",
                "X-Title": "team-visible",
            },
        }
    )
    router = await start_router(config)
    before = router.config_path.read_text()
    async with router.client() as client:
        response = await client.get("/api/config", headers={"x-api-key": CLIENT_KEY})
    for secret in (CLIENT_KEY, PROVIDER_KEY, HEADER_KEY, GOOG_KEY, QUERY_KEY, PASSWORD):
        assert secret not in response.text
    shown = response.json()
    headers = shown["Providers"][0]["headers"]
    assert headers["X-Title"] == "team-visible"
    assert headers["X-Api-Token"] == "$TRIO_ROUTER_TEST_HEADER"
    assert headers["x-goog-api-key"] == "AIza****bbbb"
    assert "alt=sse" in shown["Providers"][0]["api_base_url"]
    # Saved back unchanged: every real secret comes back.
    assert (await post_config(router, shown, key=CLIENT_KEY)).status_code == 200
    assert json.loads(router.config_path.read_text()) == json.loads(before)
    # Pointed elsewhere: the masked header and query secrets are refused.
    moved = copy.deepcopy(shown)
    moved["Providers"][0]["api_base_url"] = shown["Providers"][0]["api_base_url"].replace(
        "127.0.0.1:9", "127.0.0.1:10"
    )
    message = error_of(await post_config(router, moved, key=CLIENT_KEY))
    assert "Providers[0].headers.Authorization" in message
    assert "Providers[0].headers.x-goog-api-key" in message
    assert "Providers[0].api_base_url" in message
    assert json.loads(router.config_path.read_text()) == json.loads(before)


# -- 6. ADMIN_KEY opens /api/*, APIKEY opens /v1/* ------------------------------------------


async def test_admin_key_splits_management_from_clients(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(answer)
    router = await start_router(base_config(fake, APIKEY=CLIENT_KEY, ADMIN_KEY=ADMIN_KEY))
    message = {"model": "m", "max_tokens": 10, "messages": USER}

    async def status(method: str, path: str, key: str, body: Any = None) -> int:
        async with router.client() as client:
            response = await client.request(method, path, json=body, headers={"x-api-key": key})
        return response.status_code

    assert await status("GET", "/api/config", CLIENT_KEY) == 401
    assert await status("GET", "/api/usage", CLIENT_KEY) == 401
    assert await status("POST", "/api/config/backup", CLIENT_KEY) == 401
    assert await status("GET", "/api/config", ADMIN_KEY) == 200
    assert await status("GET", "/api/usage", ADMIN_KEY) == 200
    assert await status("POST", "/v1/messages", ADMIN_KEY, message) == 401
    assert await status("POST", "/v1/messages/count_tokens", ADMIN_KEY, message) == 401
    assert await status("POST", "/v1/messages", CLIENT_KEY, message) == 200
    assert await status("POST", "/v1/messages/count_tokens", CLIENT_KEY, message) == 200
    async with router.client() as client:
        shown = await client.get("/api/config", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert shown.json()["ADMIN_KEY"] == "admi****24e0"


async def test_without_admin_key_apikey_opens_both(start_router: StartRouter) -> None:
    router = await start_router(base_config(APIKEY=CLIENT_KEY))
    async with router.client() as client:
        config = await client.get("/api/config", headers={"x-api-key": CLIENT_KEY})
        count = await client.post(
            "/v1/messages/count_tokens", json={"messages": USER}, headers={"x-api-key": CLIENT_KEY}
        )
    assert config.status_code == count.status_code == 200


def test_admin_key_alone_still_binds_loopback(router_process: Any, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"ADMIN_KEY": ADMIN_KEY, "HOST": "0.0.0.0"}))
    router = router_process()
    stderr = router.stderr_text()
    assert "binds to 127.0.0.1 instead of 0.0.0.0 (ADMIN_KEY alone leaves /v1/* open)" in stderr


async def test_admin_key_must_differ_from_apikey(start_router: StartRouter) -> None:
    router = await start_router(base_config(APIKEY=CLIENT_KEY))
    same = base_config(APIKEY=CLIENT_KEY, ADMIN_KEY=CLIENT_KEY)
    assert "ADMIN_KEY: must differ from APIKEY" in error_of(
        await post_config(router, same, key=CLIENT_KEY)
    )


# -- 7. GET reads the file; a mask matching no current key is refused --------------------------

ROTATED_KEY = "sk-or-v1-rotated-secret-111111"


async def test_a_stale_mask_never_overwrites_a_rotated_key(start_router: StartRouter) -> None:
    router = await start_router(base_config())
    first = await get_config(router)
    rotated = copy.deepcopy(first)
    rotated["Providers"][0]["api_key"] = ROTATED_KEY
    assert (await post_config(router, rotated)).status_code == 200
    second = await get_config(router)
    assert second["Providers"][0]["api_key"] == "sk-o****1111"
    assert (await post_config(router, second)).status_code == 200
    assert json.loads(router.config_path.read_text())["Providers"][0]["api_key"] == ROTATED_KEY
    written = router.config_path.read_text()
    # The mask from before the rotation matches no current key: refused, nothing written.
    message = error_of(await post_config(router, first))
    assert "'sk-o****0000' is a masked secret" in message
    assert router.config_path.read_text() == written


async def test_get_shows_an_edit_made_on_disk(start_router: StartRouter) -> None:
    router = await start_router(base_config())
    edited = base_config()
    edited["Router"]["default"] = "p,m"
    edited["Providers"][0]["models"] = ["m", "edited-on-disk"]
    router.config_path.write_text(json.dumps(edited))
    shown = await get_config(router)
    assert shown["Providers"][0]["models"] == ["m", "edited-on-disk"]
    # A file broken on disk is reported, and a whole config with real keys replaces it.
    router.config_path.write_text('{"Providers": [')
    async with router.client() as client:
        broken = await client.get("/api/config")
    assert broken.status_code == 500
    assert "cannot be shown" in broken.json()["error"]["message"]
    assert "invalid JSON at line 1" in broken.json()["error"]["message"]
    assert "send the real value" in error_of(await post_config(router, shown))
    assert (await post_config(router, edited)).status_code == 200
    assert json.loads(router.config_path.read_text()) == edited


# -- 8. Invalid UTF-8 ----------------------------------------------------------------------


async def test_invalid_utf8_is_refused(
    start_router: StartRouter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    router = await start_router(base_config())
    before = router.config_path.read_text()
    body = json.dumps(base_config()).encode().replace(b"000000", b"000\xff00", 1)
    assert "not valid UTF-8" in error_of(await post_config(router, body))
    assert router.config_path.read_text() == before
    bad = tmp_path / "bad.json"
    bad.write_bytes(body)
    assert cli.main(["check-config", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "not valid UTF-8" in err and "Traceback" not in err


# -- 9. Backups are pruned; stale temporary files are removed -------------------------------


def backups_of(router: RunningRouter) -> list[Path]:
    return sorted((router.config_path.parent / ".backups").glob("config.*.json"))


async def test_backups_keep_the_newest(start_router: StartRouter) -> None:
    router = await start_router(base_config(BACKUPS_KEPT=3))
    made = []
    for i in range(5):
        config = base_config(BACKUPS_KEPT=3)
        config["Providers"][0]["models"] = ["m", f"m{i}"]
        response = await post_config(router, config)
        assert response.status_code == 200
        made.append(Path(response.json()["backup"]))
    async with router.client() as client:
        manual = Path((await client.post("/api/config/backup")).json()["backup"])
    assert backups_of(router) == sorted([*made[-2:], manual])


async def test_fifty_backups_are_kept_by_default(start_router: StartRouter, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / ".backups").mkdir(parents=True)
    for i in range(60):
        name = f"config.2020-01-01T00-00-{i:02d}-000Z.json"
        (site / ".backups" / name).write_text("{}")
    (site / ".backups" / "operator-notes.json").write_text("{}")
    router = await start_router(base_config(), directory=site)
    assert len(backups_of(router)) == 50
    newest = Path((await post_config(router, base_config())).json()["backup"])
    kept = backups_of(router)
    assert len(kept) == 50 and newest in kept
    assert kept[0].name == "config.2020-01-01T00-00-11-000Z.json"
    assert (site / ".backups" / "operator-notes.json").exists()


async def test_stale_temporary_files_are_removed_at_start_and_on_write(
    start_router: StartRouter, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    (site / ".backups").mkdir(parents=True)
    (site / ".config.json.killed1.tmp").write_text("{")
    (site / ".backups" / ".config.2020-01-01T00-00-00-000Z.json.killed2.tmp").write_text("{")
    router = await start_router(base_config(), directory=site)
    leftovers = [*site.glob("*.tmp"), *site.glob(".*.tmp"), *(site / ".backups").glob(".*.tmp")]
    assert leftovers == []
    (site / ".config.json.killed3.tmp").write_text("{")
    assert (await post_config(router, base_config())).status_code == 200
    assert list(site.glob(".*.tmp")) == []


# -- 10. What start needs; removing auth must be meant -------------------------------------


async def test_an_unbindable_host_is_refused(
    start_router: StartRouter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    router = await start_router(base_config())
    before = router.config_path.read_text()
    for host in ("not a host!!", "-bad-.example", "300.1.2.3", "[::1]"):
        assert "HOST: must be an IP address or a host name" in error_of(
            await post_config(router, base_config(HOST=host))
        )
    assert router.config_path.read_text() == before
    for host in ("0.0.0.0", "::", "localhost", "gateway.internal.example"):
        assert (await post_config(router, base_config(HOST=host))).status_code == 200
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(base_config(HOST="not a host!!")))
    assert cli.main(["check-config", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "HOST: must be an IP address or a host name, got 'not a host!!'" in err


@pytest.mark.parametrize(
    ("field", "keys"),
    [
        ("APIKEY", {"APIKEY": CLIENT_KEY}),
        ("ADMIN_KEY", {"APIKEY": CLIENT_KEY, "ADMIN_KEY": ADMIN_KEY}),
    ],
)
async def test_removing_a_key_must_be_explicit(
    start_router: StartRouter, field: str, keys: dict[str, str]
) -> None:
    router = await start_router(base_config(**keys))
    admin = keys.get("ADMIN_KEY", CLIENT_KEY)
    before = router.config_path.read_text()
    shown = await get_config(router, admin)
    shown[field] = ""
    message = error_of(await post_config(router, shown, key=admin))
    assert f"{field}: this config removes the key" in message and "allow_no_auth=true" in message
    assert router.config_path.read_text() == before
    shown.pop(field)  # a missing key removes it as well
    assert (await post_config(router, shown, key=admin)).status_code == 400
    meant = await post_config(router, shown, "?allow_no_auth=true", key=admin)
    assert meant.status_code == 200, meant.text
    assert field not in json.loads(router.config_path.read_text())


# -- 11. Deep nesting ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [100, 1000, 100_000])
async def test_deeply_nested_json_is_a_400(
    start_router: StartRouter, tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    router = await start_router(base_config())
    before = router.config_path.read_text()
    nested = '{"LOG": false, "x": ' + "[" * depth + "]" * depth + "}"
    assert "nested more than 64 levels deep" in error_of(await post_config(router, nested.encode()))
    assert router.config_path.read_text() == before
    bad = tmp_path / "deep.json"
    bad.write_text(nested)
    assert cli.main(["check-config", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "nested more than 64 levels deep" in err and "Traceback" not in err

"""``/api/config``: read with keys masked, write with backups, never a torn file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio

from tests.conftest import StartRouter

KEY = "sk-real-provider-key-1234567890"


def config(default_model: str = "m1", api_key: str = KEY) -> dict[str, Any]:
    return {
        "LOG": False,
        "Providers": [
            {
                "name": "p",
                "api_base_url": "https://example.test/v1/chat/completions",
                "api_key": api_key,
                "models": ["m1", "m2"],
            },
            {
                "name": "q",
                "api_base_url": "https://example.test/v1/chat/completions",
                "api_key": "$TRIO_ROUTER_TEST_Q_KEY",
                "models": ["m3"],
            },
        ],
        "Router": {"default": f"p,{default_model}"},
    }


async def test_get_masks_keys_and_keeps_references(
    start_router: StartRouter, monkeypatch: Any
) -> None:
    monkeypatch.setenv("TRIO_ROUTER_TEST_Q_KEY", "sk-from-env-abcdefghijk")
    router = await start_router(config())
    async with router.client() as client:
        response = await client.get("/api/config")
    shown = response.json()
    assert shown["Providers"][0]["api_key"] == "sk-r****7890"
    assert shown["Providers"][1]["api_key"] == "$TRIO_ROUTER_TEST_Q_KEY"
    assert KEY not in response.text and "sk-from-env" not in response.text


async def test_post_writes_with_a_backup_and_keeps_masked_keys(
    start_router: StartRouter, monkeypatch: Any
) -> None:
    monkeypatch.setenv("TRIO_ROUTER_TEST_Q_KEY", "sk-from-env-abcdefghijk")
    router = await start_router(config())
    original = router.config_path.read_text()
    async with router.client() as client:
        shown = (await client.get("/api/config")).json()
        shown["Router"]["default"] = "p,m2"
        response = await client.post("/api/config", json=shown)
    assert response.status_code == 200
    result = response.json()
    assert result["success"] is True
    assert result["applied"] is True
    assert result["message"] == "Configuration updated and applied (Router.default p,m1 -> p,m2)."
    assert result["restartRequired"] == []
    backup = Path(result["backup"])
    assert backup.parent == router.config_path.parent / ".backups"
    assert backup.name.startswith("config.") and backup.suffix == ".json"
    assert backup.read_text() == original
    written = json.loads(router.config_path.read_text())
    assert written["Router"]["default"] == "p,m2"
    # The masked key that GET showed was saved back as the real one.
    assert written["Providers"][0]["api_key"] == KEY
    assert written["Providers"][1]["api_key"] == "$TRIO_ROUTER_TEST_Q_KEY"


async def test_post_rejects_invalid_config_and_writes_nothing(
    start_router: StartRouter, monkeypatch: Any
) -> None:
    monkeypatch.setenv("TRIO_ROUTER_TEST_Q_KEY", "x" * 20)
    router = await start_router(config())
    before = router.config_path.read_text()
    async with router.client() as client:
        bad_route = await client.post("/api/config", json=config(default_model="nope"))
        bad_json = await client.post("/api/config", content=b'{"Providers": [')
        bad_type = await client.post("/api/config", json={"PORT": "high"})
    for response in (bad_route, bad_json, bad_type):
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert "Router.default" in bad_route.json()["error"]["message"]
    assert "invalid JSON at line 1" in bad_json.json()["error"]["message"]
    assert "PORT" in bad_type.json()["error"]["message"]
    assert router.config_path.read_text() == before
    assert not (router.config_path.parent / ".backups").exists() or not list(
        (router.config_path.parent / ".backups").glob("*.json")
    )


async def test_concurrent_writes_leave_a_whole_file_and_one_backup_each(
    start_router: StartRouter, monkeypatch: Any
) -> None:
    monkeypatch.setenv("TRIO_ROUTER_TEST_Q_KEY", "x" * 20)
    router = await start_router(config())
    backups: list[str] = []

    async def write(i: int) -> None:
        body = config(api_key=f"sk-writer-{i:03d}-" + "k" * 4000)
        response = await client.post("/api/config", json=body)
        assert response.status_code == 200
        backups.append(response.json()["backup"])

    async with router.client() as client:
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(write, i)
        manual = await client.post("/api/config/backup")
    assert manual.status_code == 200
    written = json.loads(router.config_path.read_text())
    assert written["Providers"][0]["api_key"].startswith("sk-writer-")
    assert len(set(backups)) == 20
    for backup in backups:
        json.loads(Path(backup).read_text())  # each backup is a whole config
    assert Path(manual.json()["backup"]).read_text() == router.config_path.read_text()
    leftovers = [p.name for p in router.config_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []

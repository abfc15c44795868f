"""A config applied on one node reaches every other within a second (issue 18).

Two ``trio-router start`` processes with their own data directories share one PostgreSQL. A
``POST /api/config`` on one is stored as the file's text and NOTIFYed; the other writes it to its
own file (with a backup), resolves its own ``$VAR``s, and applies it through the live-reload
path. With SQLite nothing is shared this way (tests/test_live_config.py covers its workers).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.conftest import StartFake
from tests.fakeserver import FakeServer, Reply, Request
from tests.openai_wire import completion
from tests.test_client_keys import ADMIN, ADMIN_KEY, API_KEY, USER
from tests.test_store_postgres import StartProcess

pytest_plugins = ["tests.postgres"]


def named(name: str, seen: list[str]) -> Any:
    """A provider that answers with its name and notes the key it was sent."""

    def handler(request: Request) -> Reply:
        seen.append(request.headers.get("authorization", ""))
        return Reply.json(completion(name, prompt=5, completion_tokens=3))

    return handler


def settings(old: FakeServer, new: FakeServer, default: str) -> dict[str, Any]:
    return {
        "LOG": True,
        "APIKEY": API_KEY,
        "ADMIN_KEY": ADMIN_KEY,
        "Providers": [
            {
                "name": "old",
                "api_base_url": old.url + "/v1/chat/completions",
                "models": ["m"],
                "api_key": "$PROVIDER_KEY",
            },
            {
                "name": "new",
                "api_base_url": new.url + "/v1/chat/completions",
                "models": ["m"],
                "api_key": "$PROVIDER_KEY",
            },
        ],
        "Router": {"default": default},
    }


async def who_answers(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post(
            "/v1/messages",
            json={"model": "m", "max_tokens": 5, "messages": USER},
            headers={"x-api-key": API_KEY},
        )
    assert response.status_code == 200, response.text
    text: str = response.json()["content"][0]["text"]
    return text


async def test_a_config_posted_on_one_node_is_applied_on_the_other_within_a_second(
    start_fake: StartFake, router_process: StartProcess, tmp_path: Path, postgres_url: str
) -> None:
    old_keys: list[str] = []
    new_keys: list[str] = []
    old = await start_fake(named("old", old_keys))
    new = await start_fake(named("new", new_keys))
    nodes = []
    for name in ("node-a", "node-b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(settings(old, new, "old,m"), indent=2))
        env = {"STORE_URL": postgres_url, "PROVIDER_KEY": f"sk-provider-of-{name}"}
        nodes.append(
            await trio.to_thread.run_sync(
                lambda f=folder, e=env: router_process("--config", str(f / "config.json"), env=e)
            )
        )
    a, b = nodes
    assert await who_answers(b.url) == "old"
    async with httpx.AsyncClient(timeout=30, headers=ADMIN) as http:
        posted = await http.post(f"{a.url}/api/config", json=settings(old, new, "new,m"))
        sent = time.monotonic()
        assert posted.status_code == 200, posted.text
        assert posted.json()["applied"] is True and posted.json()["warnings"] == []
        while (answered := await who_answers(b.url)) == "old":
            assert time.monotonic() - sent < 1.0, "node b still serves the old config"
            await trio.sleep(0.02)
        assert answered == "new"
        shown = (await http.get(f"{b.url}/api/config")).json()
    assert shown["Router"]["default"] == "new,m"
    # Node b wrote the file itself, with a backup of its old one, and the $VARs unresolved:
    # it called the provider with its own key, not node a's.
    written = json.loads((tmp_path / "node-b" / "config.json").read_text())
    assert written["Router"]["default"] == "new,m"
    assert written["Providers"][1]["api_key"] == "$PROVIDER_KEY"
    backups = list((tmp_path / "node-b" / ".backups").glob("config.*.json"))
    assert len(backups) == 1 and json.loads(backups[0].read_text())["Router"]["default"] == "old,m"
    assert new_keys[-1] == "Bearer sk-provider-of-node-b"
    assert old_keys[0] == "Bearer sk-provider-of-node-b"
    log = (tmp_path / "node-b" / "logs" / "trio-router.log").read_text()
    assert "config applied (config applied on another node)" in log
    assert "sk-provider-of-node-a" not in log


async def test_a_shared_config_naming_code_not_loaded_here_is_not_written(
    start_fake: StartFake, router_process: StartProcess, tmp_path: Path, postgres_url: str
) -> None:
    """A shared config never makes a node import code: one naming a custom transformer this
    process did not load at start is refused here, and the node keeps serving its own."""
    from trio_router.store.postgres import PostgresStore

    old = await start_fake(named("old", []))
    new = await start_fake(named("new", []))
    folder = tmp_path / "node"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(settings(old, new, "old,m"), indent=2))
    (folder / "evil.py").write_text("raise SystemExit('imported')\n")
    node = await trio.to_thread.run_sync(
        lambda: router_process(
            "--config",
            str(folder / "config.json"),
            env={"STORE_URL": postgres_url, "PROVIDER_KEY": "k"},
        )
    )
    assert await who_answers(node.url) == "old"  # the app is loaded (after the port opens)
    shared = settings(old, new, "new,m")
    shared["transformers"] = [{"path": "./evil.py"}]
    store = PostgresStore(postgres_url)
    await store.publish_config(json.dumps(shared, indent=2), "elsewhere")
    log = folder / "logs" / "trio-router.log"
    with trio.fail_after(5):
        while "shared config 1 not written" not in (log.read_text() if log.exists() else ""):
            await trio.sleep(0.05)
    assert "./evil.py" in log.read_text()
    assert await who_answers(node.url) == "old"
    assert node.process.poll() is None  # evil.py was never imported (it exits the process)
    # The next config applies as usual, and the backups never held the refused one.
    await store.publish_config(json.dumps(settings(old, new, "new,m"), indent=2), "elsewhere")
    await store.aclose()
    with trio.fail_after(5):
        while await who_answers(node.url) != "new":
            await trio.sleep(0.05)
    backups = [json.loads(p.read_text()) for p in (folder / ".backups").glob("config.*.json")]
    assert [b["Router"]["default"] for b in backups] == ["old,m"]

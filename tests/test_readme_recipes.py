"""The README's production recipes, run word for word: one box (workers), and several nodes on
one PostgreSQL. Only the database URL of the second is the test's own; nginx's and Docker's
recipes are run by tests/test_nginx.py, test_two_nodes.py and test_docker.py on the same files.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

pytest_plugins = ["tests.postgres"]

ADMIN = "admin-recipes-0123456789"
APIKEY = "client-recipes-0123456789"
_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def production_blocks() -> list[list[str]]:
    """The bash blocks of the README's "Running in production" section, as lines."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Running in production\n", 1)[1].split("\n## ", 1)[0]
    return [block.strip().splitlines() for block in _BLOCK.findall(section)]


def recipe(first: str) -> list[str]:
    """The block whose first line starts with ``first``."""
    found = [block for block in production_blocks() if block[0].startswith(first)]
    assert len(found) == 1, f"one README block starting {first!r}, found {found}"
    return found[0]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Path]]:
    """Node directories as an operator has them: a checkout's ``.venv`` and a config.json."""
    made = []
    for name in ("a", "b"):
        node = tmp_path / name
        node.mkdir()
        (node / ".venv").symlink_to(ROOT / ".venv")
        config = {"APIKEY": APIKEY, "ADMIN_KEY": ADMIN, "LOG_LEVEL": "info"}
        (node / "config.json").write_text(json.dumps(config))
        made.append(node)
    yield made


def _run(lines: list[str], node: Path, port: int, started: list[subprocess.Popen[str]]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CONFIG_PATH", "HOST", "STORE_URL")}
    env.update({"PORT": str(port), "PYTHONPATH": str(ROOT)})
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", "\n".join(lines)],
        cwd=node,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the whole group is stopped at the end
    )
    started.append(process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the recipe exited {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the recipe's router did not answer within 60 s")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            process.wait(timeout=40)


def _workers(port: int, admin: str) -> set[int]:
    """The worker pids that answer on ``port`` (each connection may reach another)."""
    pids = set()
    for _ in range(40):
        with httpx.Client(timeout=5) as client:  # a new connection each time
            url = f"http://127.0.0.1:{port}/api/streams"
            answer = client.get(url, headers={"x-api-key": admin})
            pids.add(answer.json()["worker"])
    return pids


def test_one_box_runs_a_worker_per_core(
    nodes: list[Path], started: list[subprocess.Popen[str]]
) -> None:
    lines = recipe(".venv/bin/trio-router start")
    assert lines == [".venv/bin/trio-router start --config config.json --workers auto"]
    port = free_port()
    _run(lines, nodes[0], port, started)
    cores = len(os.sched_getaffinity(0))
    assert len(_workers(port, ADMIN)) == cores if cores > 1 else 1


def test_several_nodes_share_one_postgresql(
    nodes: list[Path], started: list[subprocess.Popen[str]], postgres_url: str
) -> None:
    lines = recipe("export STORE_URL=")
    assert re.fullmatch(r"export STORE_URL='postgresql://[^']+'", lines[0])
    # The database is the test's own; every other word is the README's.
    lines = [f"export STORE_URL='{postgres_url}'", *lines[1:]]
    ports = [free_port(), free_port()]
    for node, port in zip(nodes, ports, strict=True):
        _run(lines, node, port, started)
    admin = {"x-api-key": ADMIN}
    a, b = (f"http://127.0.0.1:{port}" for port in ports)
    made = httpx.post(f"{a}/api/keys", json={"name": "from a", "user": "u"}, headers=admin)
    assert made.status_code == 201, made.text
    listed = httpx.get(f"{b}/api/keys", headers=admin).json()
    assert [key["id"] for key in listed["keys"]] == [made.json()["id"]]
    # Node b knows the key node a made: it opens /v1 there (count_tokens needs no provider).
    counted = httpx.post(
        f"{b}/v1/messages/count_tokens",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": made.json()["key"]},
    )
    assert counted.status_code == 200, counted.text

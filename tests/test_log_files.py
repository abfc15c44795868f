"""The log file with several workers: one writer, rotation that loses nothing, JSON lines."""

from __future__ import annotations

import json
import os
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from trio_router import logs

SECRET = "sk-log-secret-0123456789"
LINES = 20_000


def _child(pipe: Connection, directory: str) -> None:
    """A worker's logging, as workers.serve sets it up, writing LINES records."""
    logs.use_writer(pipe)
    logs.setup(enabled=True, level="info", directory=Path(directory), secrets=[SECRET])
    for number in range(LINES):
        logs.logger.info("line %d %d key=%s", os.getpid(), number, SECRET)
    logs.close_writer()


def test_two_workers_rotating_lose_no_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "logs" / logs.LOG_FILE
    writer = logs.LogWriter(path, max_bytes=400_000, backup_count=100)
    context = get_context("spawn")
    children = []
    for _ in range(2):
        pipe = writer.add()
        child = context.Process(target=_child, args=(pipe, str(tmp_path / "logs")))
        child.start()
        pipe.close()
        children.append(child)
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    writer.close()
    files = sorted(path.parent.glob(logs.LOG_FILE + "*"))
    assert len(files) >= 5, "the test should span several rollovers"
    seen: set[tuple[str, str]] = set()
    for file in files:
        for line in file.read_text().splitlines():
            assert SECRET not in line
            _, pid, number, _ = line.split("] ", 1)[1].split(" ", 3)
            seen.add((pid, number))
    assert len(seen) == 2 * LINES  # every line of both, each once
    assert {pid for pid, _ in seen} == {str(child.pid) for child in children}
    assert "Logging error" not in capfd.readouterr().err


async def test_json_lines_from_two_workers(router_process: Any, tmp_path: Path) -> None:
    config = {"HOST": "127.0.0.1", "APIKEY": SECRET, "LOG_FORMAT": "json"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    router = await trio.to_thread.run_sync(lambda: router_process("--workers", "2"))

    def requests() -> None:
        for number in range(60):
            with httpx.Client(base_url=router.url, timeout=30) as client:
                # A path with the key and a newline in it: both must stay out of the log.
                client.get(f"/{SECRET}/x%0ay{number}", headers={"x-api-key": SECRET})

    await trio.to_thread.run_sync(requests)
    log_file = tmp_path / "logs" / logs.LOG_FILE
    with trio.fail_after(10):
        while log_file.read_text().count("x\\\\ny") < 60:
            await trio.sleep(0.05)
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert all({"time", "level", "pid", "message"} <= record.keys() for record in records)
    assert len({record["pid"] for record in records}) == 2
    assert SECRET not in log_file.read_text()
    assert any("x\\ny0 " in record["message"] for record in records)

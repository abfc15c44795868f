"""Re-record tests/fixtures/claude_code/ from the pinned Claude Code CLI.

Run from the repo root after bumping package.json: ``python -m tests.claude_code.record``.
Each scenario starts tests/capture_server.py, runs one ``claude -p`` against it from a fixed
HOME and working directory (so paths in the prompt are stable) and writes, per captured request,
``<name>.json`` (body) and ``<name>.headers.json`` (request line and headers), plus
``<name>.output.json`` (what ``--output-format json`` printed). Per-install identifiers are
replaced with fixed fakes of the same length, so Content-Length stays true.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.claude_code.cli import ensure_claude, run_claude

TESTS = Path(__file__).resolve().parent.parent
FIXTURES = TESTS / "fixtures" / "claude_code"
SANDBOX = Path("/tmp/trio-router-claude-code")

FAKE_DEVICE_ID = "0123456789abcdef" * 4
FAKE_SESSION_ID = "00000000-0000-4000-8000-000000000001"
FAKE_ACCOUNT_UUID = "00000000-0000-4000-8000-000000000002"
FAKE_RESULT_UUID = "00000000-0000-4000-8000-000000000003"
FAKE_HOST = "127.0.0.1:8080"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HEX64 = re.compile(r"\b[0-9a-f]{64}\b")


@dataclass(frozen=True)
class Scenario:
    name: str
    mode: str
    prompt: str = "say hi"
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)


SCENARIOS = (
    Scenario("default", "text"),
    Scenario("sonnet_4_5", "text", args=("--model", "claude-sonnet-4-5")),
    Scenario("unknown_model", "text", args=("--model", "openrouter,some/model")),
    Scenario("tool_use", "tool_use", prompt="run: echo hello > marker.txt"),
    # Without the retry cap the CLI retries the stream ten times (about three minutes) first.
    Scenario("broken_stream", "break", env={"CLAUDE_CODE_MAX_RETRIES": "0"}),
)


def _redactions(requests: list[dict[str, Any]], port: int) -> dict[str, str]:
    out = {f"127.0.0.1:{port}": FAKE_HOST}
    for request in requests:
        headers = dict(request["headers"])
        out[headers["X-Claude-Code-Session-Id"]] = FAKE_SESSION_ID
        user = json.loads(request["body"]["metadata"]["user_id"])
        out[user["device_id"]] = FAKE_DEVICE_ID
        if user["account_uuid"]:
            out[user["account_uuid"]] = FAKE_ACCOUNT_UUID
    return out


def _redact(text: str, table: Mapping[str, str]) -> str:
    for real, fake in table.items():
        text = text.replace(real, fake)
    return text


def _check_clean(name: str, text: str) -> None:
    """Fail on identifiers the redaction table did not know about, or on this host's name."""
    fakes = {FAKE_SESSION_ID, FAKE_ACCOUNT_UUID, FAKE_RESULT_UUID, FAKE_DEVICE_ID}
    leftovers = (set(UUID.findall(text)) | set(HEX64.findall(text))) - fakes
    if leftovers:
        raise RuntimeError(f"{name}: unredacted identifiers {sorted(leftovers)}")
    if socket.gethostname() in text:
        raise RuntimeError(f"{name}: contains this machine's hostname")


def _write(path: Path, data: Any, table: Mapping[str, str]) -> None:
    text = _redact(json.dumps(data, indent=2, ensure_ascii=False) + "\n", table)
    _check_clean(path.name, text)
    path.write_text(text, encoding="utf-8")


def record(scenario: Scenario) -> None:
    shutil.rmtree(SANDBOX, ignore_errors=True)
    home, work = SANDBOX / "home", SANDBOX / "work"
    home.mkdir(parents=True)
    work.mkdir()
    log = SANDBOX / "requests.jsonl"
    server = subprocess.Popen(
        [sys.executable, str(TESTS / "capture_server.py"), "--mode", scenario.mode, "--log", log],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        result = run_claude(
            scenario.prompt,
            base_url=f"http://127.0.0.1:{port}",
            home=home,
            cwd=work,
            args=scenario.args,
            fast=False,
            extra_env=scenario.env,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    if result.returncode != 0:
        raise RuntimeError(f"{scenario.name}: claude exited {result.returncode}: {result.stderr}")
    if scenario.mode == "tool_use" and (work / "marker.txt").read_text() != "hello\n":
        raise RuntimeError("tool_use: the Bash tool did not run")
    requests = [json.loads(line) for line in log.read_text().splitlines()]
    table = _redactions(requests, port)
    output = json.loads(result.stdout)
    table[output["uuid"]] = FAKE_RESULT_UUID
    for i, request in enumerate(requests, 1):
        stem = scenario.name if len(requests) == 1 else f"{scenario.name}_{i}"
        head = {
            "method": request["method"],
            "target": request["target"],
            "headers": dict(request["headers"]),
        }
        _write(FIXTURES / f"{stem}.headers.json", head, table)
        _write(FIXTURES / f"{stem}.json", request["body"], table)
    _write(FIXTURES / f"{scenario.name}.output.json", output, table)
    print(f"{scenario.name}: {len(requests)} request(s), {output['duration_ms']} ms")


def main() -> None:
    print(f"Claude Code at {ensure_claude()}")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for scenario in SCENARIOS:
        record(scenario)
    shutil.rmtree(SANDBOX, ignore_errors=True)


if __name__ == "__main__":
    main()

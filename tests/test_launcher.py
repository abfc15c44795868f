"""``trio-router code``: the pinned Claude Code CLI run through a router the command starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import httpx
import trio

from tests.claude_code import cli
from tests.conftest import ROOT, StartFake, free_port
from tests.fake_openai import FakeChatProvider
from tests.test_claude_code_e2e import (
    OPENROUTER_KEY,
    OPENROUTER_MODELS,
    PROMPT,
    assert_clean_upstream,
    claude_binary,  # noqa: F401  (the fixture)
    marker_command,
    openrouter_config,
)

ROUTER_KEY = "launcher-router-key-0123456789"


def code_env(home: Path, bin_dir: Path) -> dict[str, str]:
    """What a user's shell would hold: their PATH with `claude` on it, and no router setting."""
    env = cli.claude_env("http://unused.invalid", home)
    for name in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"):
        env.pop(name)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(ROOT)
    # Coverage's subprocess measurement (.ci/run) rides on its own variables.
    env.update({k: v for k, v in os.environ.items() if k.startswith("COVERAGE")})
    return env


def run_code(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_router", "code", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_code_starts_a_router_runs_claude_through_it_and_stops_it(
    tmp_path: Path,
    start_fake: StartFake,
    claude_binary: Path,  # noqa: F811
) -> None:
    marker, command = marker_command()
    provider = FakeChatProvider(OPENROUTER_KEY, OPENROUTER_MODELS, command)
    fake = await start_fake(provider)
    port = free_port()
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.json").write_text(
        json.dumps(
            {
                "APIKEY": ROUTER_KEY,
                "PORT": port,
                "Providers": [openrouter_config(fake)],
                "Router": {"default": "openrouter,openai/gpt-5"},
            }
        )
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(claude_binary)
    env = code_env(tmp_path / "home", bin_dir)
    args = ["-p", PROMPT, "--allowedTools", "Bash", "--output-format", "json"]
    completed = await trio.to_thread.run_sync(partial(run_code, args, work, env))

    assert completed.returncode == 0, completed.stderr
    assert f"starting the router on http://127.0.0.1:{port}" in completed.stderr
    output = json.loads(completed.stdout)
    assert output["is_error"] is False, completed.stdout
    assert (work / "marker.txt").read_text() == marker
    assert not provider.rejected
    assert_clean_upstream(fake)
    # Claude Code sent the router's key, and got through: the log counts both turns.
    log = (work / "logs" / "trio-router.log").read_text()
    assert log.count("POST /v1/messages 200") >= 2, log
    # The router it started is gone once claude is done.
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            await client.get(f"http://127.0.0.1:{port}/")
            stopped = False
        except httpx.ConnectError:
            stopped = True
    assert stopped


async def test_code_without_claude_says_how_to_install_it(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = code_env(tmp_path / "home", empty)
    env["PATH"] = str(empty)  # no claude anywhere
    completed = await trio.to_thread.run_sync(partial(run_code, ["-p", "hi"], tmp_path, env))
    assert completed.returncode == 127
    assert "npm install -g @anthropic-ai/claude-code" in completed.stderr
    assert "Traceback" not in completed.stderr

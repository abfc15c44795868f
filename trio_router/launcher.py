"""``trio-router code [claude args]``: Claude Code through this router, in one command.

Runs the user's own ``claude`` (``$CLAUDE_PATH``, else ``claude`` on ``PATH``) with
``ANTHROPIC_BASE_URL`` pointed at the router, the router's key as ``ANTHROPIC_AUTH_TOKEN`` (sent
as ``Authorization: Bearer``, which Claude Code uses without asking, unlike ``ANTHROPIC_API_KEY``)
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` (no telemetry or update checks to Anthropic;
https://docs.anthropic.com/en/docs/claude-code/settings#environment-variables) and
``CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1`` (``/model`` lists the router's models). When no
router answers at the config's address, one is started for the run and stopped after it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from .config import LoadedConfig

START_SECONDS = 30.0
NOT_INSTALLED = (
    "error: Claude Code's `claude` command was not found on PATH. Install it with "
    "`npm install -g @anthropic-ai/claude-code` (https://docs.anthropic.com/en/docs/claude-code), "
    "or set CLAUDE_PATH to the program."
)


def router_url(loaded: LoadedConfig) -> str:
    """Where the config's router listens, as a client on this machine reaches it."""
    host = loaded.config.HOST
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return (
        f"http://[{host}]:{loaded.config.PORT}"
        if ":" in host
        else f"http://{host}:{loaded.config.PORT}"
    )


def is_serving(url: str) -> bool:
    """A trio-router answers health at ``url`` (not just anything on the port)."""
    try:
        answer = httpx.get(url + "/", timeout=1.0)
        return bool(answer.json().get("service") == "trio-router")
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def find_claude() -> str | None:
    configured = os.environ.get("CLAUDE_PATH")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("claude")


def claude_env(url: str, key: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ANTHROPIC_BASE_URL"] = url
    # One credential only: an ANTHROPIC_API_KEY from the shell would be sent beside it.
    env.pop("ANTHROPIC_API_KEY", None)
    env["ANTHROPIC_AUTH_TOKEN"] = os.environ.get("ANTHROPIC_AUTH_TOKEN") or key or "trio-router"
    env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    # The /model picker lists the gateway's GET /v1/models only with this set (read from the
    # CLI's code; tests/test_model_picker.py drives it). Claude-named models only.
    env.setdefault("CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY", "1")
    return env


def _start_router(config_path: Path | None, log: Path, url: str) -> subprocess.Popen[bytes]:
    """``trio-router start`` in the background, its output in ``log``; back once it answers."""
    command = [sys.executable, "-m", "trio_router", "start"]
    if config_path is not None:
        command += ["--config", str(config_path)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + START_SECONDS
    while not is_serving(url):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(f"the router did not start; its output is in {log}")
        time.sleep(0.1)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(loaded: LoadedConfig, log: Path, claude_args: Sequence[str]) -> int:
    """Claude Code's exit status, or 127 when it is not installed, 1 when no router starts."""
    claude = find_claude()
    if claude is None:
        print(NOT_INSTALLED, file=sys.stderr)
        return 127
    url = router_url(loaded)
    started: subprocess.Popen[bytes] | None = None
    if not is_serving(url):
        print(f"trio-router: starting the router on {url} (log: {log})", file=sys.stderr)
        try:
            started = _start_router(loaded.path, log, url)
        except RuntimeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    try:
        return subprocess.run(
            [claude, *claude_args], env=claude_env(url, loaded.config.APIKEY), check=False
        ).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        if started is not None:
            _stop(started)

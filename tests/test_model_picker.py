"""Claude Code's interactive ``/model`` picker against the router's ``GET /v1/models`` (issue 22).

The pinned CLIs, run in tmux as a user runs them, read the picker's extra entries from a
gateway's ``GET /v1/models?limit=1000`` (read in both binaries; their debug lines are
``[gatewayDiscovery] ...``) when all of these hold:

- ``CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY`` is set and ``ANTHROPIC_BASE_URL`` is not
  api.anthropic.com;
- a credential is set: ``ANTHROPIC_AUTH_TOKEN`` (sent as a bearer) or an API key;
- on 2.1.197 only, nonessential traffic is allowed: ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC``
  (which ``trio-router code`` sets) turns discovery off there; 2.1.331's check has no such
  condition (read from its binary; this test runs both without the variable).

The answer is cached in ``~/.claude/cache/gateway-models.json`` and shown with the entry's
``display_name`` and "From gateway". Only ids that name Claude are kept: 2.1.331 keeps ids
containing ``claude`` or ``anthropic`` (``/(claude|anthropic)/i``), 2.1.197 only ids starting with
them (``/^(claude|anthropic)/i``). So ``anthropic,claude-sonnet-4-5`` is listed by both,
``openrouter,anthropic/claude-opus-4.1`` by 2.1.331 only, and ``openrouter,openai/gpt-5`` by
neither; that one is chosen by typing ``/model openrouter,openai/gpt-5``, which both accept.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests import openai_wire as wire
from tests.capture_server import _stream_events
from tests.claude_code import cli
from tests.conftest import RouterProcess, StartFake
from tests.fake_openai import FakeChatProvider
from tests.fakeserver import Reply, Request

ANTHROPIC_KEY = "sk-ant-picker-provider-key-0123456789"
OPENROUTER_KEY = "sk-or-v1-picker-provider-key-0123456789"
TOKEN = "picker-client-token"


@pytest.fixture(scope="session", params=cli.VERSIONS)
def claude_binary(request: pytest.FixtureRequest) -> Path:
    try:
        return cli.require_claude(version=request.param)
    except cli.ClaudeNotInstalled as error:
        problem = str(error)
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def tmux() -> str:
    found = shutil.which("tmux")
    if found is None:
        message = "tmux is not installed (Debian package tmux)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


class Pane:
    """One CLI in a detached tmux session on a private server socket."""

    def __init__(self, tmux: str, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self.tmux = tmux
        self.socket = "trio-router-picker-" + secrets.token_hex(6)
        # tmux starts the command through its own server, which does not pass our environment:
        # env -i gives the CLI exactly ``env``.
        self._run(
            "new-session", "-d", "-s", "cli", "-x", "160", "-y", "50", "-c", str(cwd),
            "env", "-i", *(f"{k}={v}" for k, v in env.items()), *command,
        )  # fmt: skip

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [self.tmux, "-L", self.socket, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return done.stdout

    def text(self) -> str:
        return self._run("capture-pane", "-p", "-t", "cli")

    def send(self, *keys: str) -> None:
        self._run("send-keys", "-t", "cli", *keys)

    def type(self, text: str) -> None:
        """Type ``text`` literally, then Enter as its own key (a pasted newline is not one)."""
        self._run("send-keys", "-t", "cli", "-l", text)
        self._run("send-keys", "-t", "cli", "Enter")

    async def wait(self, ready: Callable[[str], bool], what: str, timeout: float = 45) -> str:
        with trio.move_on_after(timeout):
            while True:
                text = self.text()
                if ready(text):
                    return text
                await trio.sleep(0.2)
        pytest.fail(f"waited {timeout}s for {what}; the screen:\n{self.text()}")

    def close(self) -> None:
        subprocess.run([self.tmux, "-L", self.socket, "kill-server"], capture_output=True)


def anthropic_upstream(request: Request) -> Reply:
    """An Anthropic-compatible upstream whose answer names the model it was asked for."""
    if request.path != "/v1/messages" or request.headers.get("x-api-key") != ANTHROPIC_KEY:
        error = {"type": "authentication_error", "message": "invalid x-api-key"}
        return Reply.json({"type": "error", "error": error}, status=401)
    body = request.json()
    content = [{"type": "text", "text": f"Hi from {body['model']}"}]
    if body.get("stream"):
        return Reply.sse(_stream_events(body["model"], content, 1))
    usage = {"input_tokens": 12, "output_tokens": 9}
    message = {"id": "msg_picker", "type": "message", "role": "assistant", "content": content}
    return Reply.json(
        {**message, "model": body["model"], "stop_reason": "end_turn", "usage": usage}
    )


def openrouter_upstream(request: Request) -> Reply:
    if request.headers.get("authorization") != f"Bearer {OPENROUTER_KEY}":
        return wire.error_reply(401, "No auth credentials found", "authentication_error")
    body = request.json()
    text = f"Hi from {body['model']}"
    if body.get("stream"):
        return wire.stream_reply(wire.text_stream([text]))
    # /model checks a typed name with a small request that is not streamed.
    return Reply.json(wire.completion(text))


def turns(requests: list[Request]) -> list[dict[str, Any]]:
    """The conversation's own requests (those offering tools), not titles or summaries."""
    return [body for body in (r.json() for r in requests) if body.get("tools")]


async def test_model_picker_lists_the_gateways_models_and_uses_the_pick(
    tmp_path: Path,
    start_fake: StartFake,
    router_process: Callable[..., RouterProcess],
    claude_binary: Path,
    tmux: str,
) -> None:
    version = cli.version_of(claude_binary)
    anthropic = await start_fake(anthropic_upstream)
    openrouter = await start_fake(openrouter_upstream)
    config = tmp_path / "router" / "config.json"
    config.parent.mkdir()
    config.write_text(
        json.dumps(
            {
                "LOG_LEVEL": "info",
                "Providers": [
                    {
                        "name": "anthropic",
                        "api_base_url": anthropic.url + "/v1/messages",
                        "api_key": ANTHROPIC_KEY,
                        "models": ["claude-sonnet-4-5", "claude-haiku-4-5"],
                        "transformer": {"use": ["anthropic"]},
                    },
                    {
                        "name": "openrouter",
                        "api_base_url": openrouter.url + FakeChatProvider.path,
                        "api_key": OPENROUTER_KEY,
                        "models": ["anthropic/claude-opus-4.1", "openai/gpt-5"],
                        "transformer": {"use": ["openrouter"]},
                    },
                ],
                "Router": {
                    "default": "anthropic,claude-sonnet-4-5",
                    "background": "anthropic,claude-haiku-4-5",
                    "think": "openrouter,anthropic/claude-opus-4.1",
                },
            }
        )
    )
    router = router_process("--config", str(config))
    log = config.parent / "logs" / "trio-router.log"
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    home.mkdir()
    # First-run screens: onboarding (the theme) and the folder's trust dialog, answered as
    # the CLI records them in ~/.claude.json. A bearer token needs no "use this API key?".
    (home / ".claude.json").write_text(
        json.dumps(
            {
                "hasCompletedOnboarding": True,
                "theme": "dark",
                "projects": {
                    str(work): {
                        "hasTrustDialogAccepted": True,
                        "hasCompletedProjectOnboarding": True,
                    }
                },
            }
        )
    )
    env = cli.claude_env(router.url, home)
    del env["ANTHROPIC_API_KEY"], env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"]
    env.update(
        ANTHROPIC_AUTH_TOKEN=TOKEN,
        CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY="1",
        TERM="xterm-256color",  # the full-screen UI; QUIET_ENV's "dumb" is for -p runs
    )
    pane = Pane(tmux, [str(claude_binary)], env, work)
    try:
        cache = home / ".claude" / "cache" / "gateway-models.json"
        await pane.wait(lambda _: cache.exists(), "the CLI to cache GET /v1/models")
        assert " GET /v1/models " in log.read_text()
        cached = json.loads(cache.read_text())
        kept = [m["id"] for m in cached["models"]]
        if version == cli.PINNED_VERSION:
            assert kept == [
                "anthropic,claude-sonnet-4-5",
                "anthropic,claude-haiku-4-5",
                "openrouter,anthropic/claude-opus-4.1",
            ]
        else:
            assert kept == ["anthropic,claude-sonnet-4-5", "anthropic,claude-haiku-4-5"]

        await pane.wait(lambda t: f"Claude Code v{version}" in t, "the prompt")
        pane.type("/model")
        picker = await pane.wait(lambda t: "From gateway" in t, "the /model picker")
        # The display names: each model, its provider, and the Router rules that use it.
        assert re.search(r"claude-sonnet-4-5 \(anthropic\): default +From gateway", picker)
        chosen = re.search(r"(\d+)\. claude-haiku-4-5 \(anthropic\): background", picker)
        assert chosen, picker
        think = "anthropic/claude-opus-4.1 (openrouter): think"
        assert (think in picker) is (version == cli.PINNED_VERSION), picker
        assert "gpt-5" not in picker
        pane.send(chosen.group(1))  # a number picks its entry
        await pane.wait(lambda t: "Set model to claude-haiku-4-5 (anthropic)" in t, "the pick")

        pane.type("Say hi.")
        await pane.wait(lambda t: "Hi from claude-haiku-4-5" in t, "the picked model's answer")
        (turn,) = turns(anthropic.requests)
        assert turn["model"] == "claude-haiku-4-5"
        assert "Say hi." in json.dumps(turn["messages"])
        # The request's log line is written just after its last byte.
        explicit = " route=explicit provider=anthropic model=claude-haiku-4-5 "
        await pane.wait(lambda _: explicit in log.read_text(), "the request's log line")

        # A model the picker leaves out is typed in.
        pane.type("/model openrouter,openai/gpt-5")
        switched = "Set model to openrouter,openai/gpt-5"
        screen = await pane.wait(lambda t: switched in t or "Switch model?" in t, "the switch")
        if switched not in screen:  # 2.1.331 asks first: the cached history is re-read
            pane.send("Enter")
            await pane.wait(lambda t: switched in t, "the typed model")
        pane.type("Say hi again.")
        await pane.wait(lambda t: "Hi from openai/gpt-5" in t, "the typed model's answer")
        (typed,) = turns(openrouter.requests)
        assert typed["model"] == "openai/gpt-5"
        assert "Say hi again." in json.dumps(typed["messages"])
    finally:
        pane.close()

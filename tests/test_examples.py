"""Every script in examples/ and every command in the README, run against the real router.

The router is ``python -m trio_router start`` in a subprocess, as a user runs it, with a config
whose one provider is a fake OpenAI-compatible API on 127.0.0.1. Each example runs as a user would
(its own process, an environment built from scratch so no real key or proxy leaks in) and must
print what the fake answered, so an example that drifts from the API fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests import openai_wire as wire
from tests.claude_code import cli
from tests.conftest import RouterProcess, StartFake, provider_config
from tests.fakeserver import FakeServer, Reply, Request

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TYPESCRIPT = EXAMPLES / "typescript"
README = (ROOT / "README.md").read_text()

CLIENT_KEY = "client-key-for-the-examples-0123"
ADMIN_KEY = "admin-key-for-the-examples-4567"
PROVIDER_KEY = "sk-or-v1-examples-provider-key-89abcdef"
ANSWER = ["Hello ", "from ", "the fake"]

StartRouterProcess = Callable[..., RouterProcess]


@dataclass
class Setup:
    router: RouterProcess
    fake: FakeServer
    config: Path

    def env(self, **extra: str) -> dict[str, str]:
        """What a user's shell would hold after following the example's docstring."""
        home = self.config.parent / "home"
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "ANTHROPIC_BASE_URL": self.router.url,
            "ANTHROPIC_API_KEY": CLIENT_KEY,
            "ROUTER_URL": self.router.url,
            "ROUTER_API_KEY": CLIENT_KEY,
            "ADMIN_KEY": ADMIN_KEY,
            # LangChain's tracing client stays off (it is off unless asked for; make sure).
            "LANGSMITH_TRACING": "false",
            **extra,
        }


def answer(request: Request) -> Reply:
    """The fake provider: the same text for every request, streamed when asked."""
    if request.json().get("stream"):
        return wire.stream_reply(wire.text_stream(ANSWER))
    return Reply.json(wire.completion("".join(ANSWER)))


@pytest.fixture
async def setup(tmp_path: Path, start_fake: StartFake, router_process: StartRouterProcess) -> Setup:
    fake = await start_fake(answer)
    config_dir = tmp_path / "router"
    config_dir.mkdir()
    config = config_dir / "config.json"
    provider = provider_config(
        fake, api_key=PROVIDER_KEY, transformer={"use": ["openrouter"]}, models=["fake-model"]
    )
    config.write_text(
        json.dumps(
            {
                "APIKEY": CLIENT_KEY,
                "ADMIN_KEY": ADMIN_KEY,
                "Providers": [provider],
                "Router": {"default": "fake,fake-model"},
            },
            indent=2,
        )
    )
    return Setup(router_process("--config", str(config)), fake, config)


async def run(
    command: list[str], env: Mapping[str, str], cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run one example as its own process; the fake upstream keeps serving meanwhile."""
    with trio.fail_after(timeout):
        result = await trio.run_process(
            command, cwd=cwd, env=dict(env), capture_stdout=True, capture_stderr=True, check=False
        )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    context = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, context
    return result.stdout


def sent_upstream(fake: FakeServer) -> list[dict[str, Any]]:
    """What reached the provider: every request carried its key, none the client's."""
    for request in fake.requests:
        assert request.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
        assert CLIENT_KEY not in str(request.headers)
    return [request.json() for request in fake.requests]


def assert_sdk_example_ran(out: str, setup: Setup) -> None:
    """What both SDK examples print and send: an answer, a stream, a token count."""
    assert "answer: Hello from the fake\n" in out
    assert "usage: 11 in, 7 out\n" in out
    assert "Hello from the fake\nstream stopped: end_turn\n" in out
    assert re.search(r"^count_tokens: [1-9]\d*$", out, re.M), out
    assert [body.get("stream", False) for body in sent_upstream(setup.fake)] == [False, True]


async def test_python_sdk(setup: Setup) -> None:
    out = succeeded(await run([sys.executable, str(EXAMPLES / "python_sdk.py")], setup.env()))
    assert_sdk_example_ran(out, setup)


def require_typescript_sdk() -> None:
    """Fail, saying what to run, where npm or examples/typescript's packages are missing; the
    SDK conformance test (tests/test_sdk_conformance.py) runs its script with them too."""
    if shutil.which("npm") is None:
        pytest.fail("npm is not on PATH: install Node.js 18+ and npm (see the README)")
    if not (TYPESCRIPT / "node_modules" / "@anthropic-ai" / "sdk").is_dir():
        pytest.fail(
            "the TypeScript SDK is not installed: run `npm ci --prefix examples/typescript` "
            "(it is part of the README's test command)",
            pytrace=False,
        )


async def test_typescript_sdk(setup: Setup) -> None:
    require_typescript_sdk()
    out = succeeded(await run(["npm", "start", "--silent"], setup.env(), cwd=TYPESCRIPT))
    assert_sdk_example_ran(out, setup)


async def test_langchain(setup: Setup) -> None:
    out = succeeded(await run([sys.executable, str(EXAMPLES / "langchain_chat.py")], setup.env()))
    assert "answer: Hello from the fake\n" in out
    assert "'input_tokens': 11" in out and "'output_tokens': 7" in out
    assert "stream: Hello from the fake\n" in out
    assert [body.get("stream", False) for body in sent_upstream(setup.fake)] == [False, True]


async def test_claude_code_script(setup: Setup, tmp_path: Path) -> None:
    try:
        binary = cli.require_claude()
    except cli.ClaudeNotInstalled as error:
        pytest.fail(str(error), pytrace=False)
    # `claude` on PATH, as the script expects of a user's machine.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(binary)
    work = tmp_path / "work"
    work.mkdir()
    env = setup.env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"):
        del env[name]  # the script sets them from ROUTER_URL and ROUTER_API_KEY
    env.update({**cli.QUIET_ENV, **cli.FAST_ENV})
    script = str(EXAMPLES / "claude_code.sh")
    result = await run(
        [script, "-p", "say hi", "--output-format", "json"], env, cwd=work, timeout=90
    )
    output = json.loads(succeeded(result))
    assert output["is_error"] is False, output
    assert output["result"] == "Hello from the fake"
    assert sent_upstream(setup.fake)


async def test_config_backup_script(setup: Setup) -> None:
    script = str(EXAMPLES / "config_backup.sh")
    env = setup.env()

    backup = json.loads(succeeded(await run([script, "backup"], env)))
    assert backup["success"] is True
    assert json.loads(Path(backup["backup"]).read_text())["Providers"][0]["api_key"] == (
        PROVIDER_KEY
    )

    saved = setup.config.parent / "saved.json"
    assert succeeded(await run([script, "get", str(saved)], env)) == f"saved to {saved}\n"
    downloaded = json.loads(saved.read_text())
    assert PROVIDER_KEY not in saved.read_text() and ADMIN_KEY not in saved.read_text()

    downloaded["LOG_LEVEL"] = "debug"
    saved.write_text(json.dumps(downloaded))
    updated = json.loads(succeeded(await run([script, "update", str(saved)], env)))
    assert updated["success"] is True
    on_disk = json.loads(setup.config.read_text())
    assert on_disk["LOG_LEVEL"] == "debug"
    assert on_disk["Providers"][0]["api_key"] == PROVIDER_KEY  # the mask kept the real key
    assert on_disk["ADMIN_KEY"] == ADMIN_KEY

    refused = await run([script, "backup"], setup.env(ADMIN_KEY="wrong-admin-key-000000"))
    assert refused.returncode != 0
    assert json.loads(refused.stdout)["error"]["type"] == "authentication_error"


async def test_usage_report(setup: Setup) -> None:
    async with httpx.AsyncClient(base_url=setup.router.url, timeout=30) as client:
        for session in ("session-alpha", "session-alpha", "session-beta"):
            response = await client.post(
                "/v1/messages",
                headers={"x-api-key": CLIENT_KEY, "x-claude-code-session-id": session},
                json={
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            )
            assert response.status_code == 200, response.text
    script = str(EXAMPLES / "usage_report.py")
    lines = succeeded(await run([sys.executable, script], setup.env())).splitlines()
    rows = [line.split() for line in lines[1:]]
    assert ["session-alpha", "fake", "2", "22", "14"] in rows
    assert ["session-beta", "fake", "1", "11", "7"] in rows
    assert rows[-1] == ["total", "3", "33", "21"]

    raw = json.loads(succeeded(await run([sys.executable, script, "--json"], setup.env())))
    assert {session["sessionId"] for session in raw} == {"session-alpha", "session-beta"}


def readme_block(after: str, language: str = "bash") -> str:
    """The first ``language`` code block of the README after the text ``after``."""
    start = README.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(README, start)
    assert match, f"no {language} block after {after!r}"
    return match.group(1)


async def test_readme_curl_examples(setup: Setup) -> None:
    block = readme_block("## Call it from code")
    assert block.count("curl ") == 3
    script = block.replace("http://127.0.0.1:3456", setup.router.url)
    out = succeeded(await run(["bash", "-euo", "pipefail", "-c", script], setup.env()))
    decoder = json.JSONDecoder()
    message, end = decoder.raw_decode(out)
    assert message["type"] == "message" and message["content"][0]["text"] == "Hello from the fake"
    events = re.findall(r"^event: (\w+)$", out[end:], re.M)
    assert events[0] == "message_start" and events[-1] == "message_stop"
    tail = out[out.rindex("event: message_stop") :]
    count = json.loads(tail[tail.index("{", tail.index("\n\n")) :])
    assert count["input_tokens"] > 0


async def test_readme_python_snippet(setup: Setup) -> None:
    snippet = readme_block("## Call it from code", "python")
    snippet = snippet.replace("http://127.0.0.1:3456", setup.router.url)
    snippet = snippet.replace("your-router-APIKEY", CLIENT_KEY)
    out = succeeded(await run([sys.executable, "-c", snippet], setup.env()))
    assert out == "Hello from the fake\n"


def example_config_vars() -> set[str]:
    text = (ROOT / "config.example.json").read_text()
    return {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", text)}


def test_env_example_names_every_variable_of_the_example_config(tmp_path: Path) -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    names = [line.partition("=")[0] for line in lines if line and not line.startswith("#")]
    assert set(names) == example_config_vars()
    for name in names:
        assert f"`{name}`" in README, f"the README's setup does not name {name}"

    # Followed as the README says: both files copied, .env filled in, the config loads with them.
    shutil.copy(ROOT / "config.example.json", tmp_path / "config.json")
    (tmp_path / ".env").write_text("".join(f"{name}=value-of-{name}\n" for name in names))
    probe = (
        "import json; from trio_router.config import load; c = load().config; "
        "print(json.dumps([c.APIKEY, *[p.api_key for p in c.Providers]]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in {*names, "CONFIG_PATH"}}
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(loaded.stdout) == [
        "value-of-ROUTER_API_KEY",
        "value-of-OPENROUTER_API_KEY",
        "value-of-DEEPSEEK_API_KEY",
        "value-of-GEMINI_API_KEY",
    ]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", README, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_commands_work_in_a_new_shell() -> None:
    """No bare ``trio-router`` or ``python``: a new shell has no activated virtualenv."""
    bare = re.compile(r"(?:^|&&|;|\|)\s*(trio-router|python|pip|pytest|mypy|ruff)\b")
    offending = [line for line in readme_commands() if bare.search(line)]
    assert not offending, offending


def test_ci_runs_the_readme_test_command_word_for_word() -> None:
    command = readme_block("Install everything and run the whole test suite").strip()
    assert "\n" not in command
    assert "-c constraints.txt" in command
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in ci_lines


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_constraints_pin_every_test_tool_and_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.partition("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"not an exact pin: {line!r}"
            pins[_name(name)] = version
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    missing = [req for req in wanted if _name(req) not in pins]
    assert not missing, f"constraints.txt pins none of {missing}"


def test_claude_code_readme_has_no_machine_paths() -> None:
    text = (ROOT / "tests" / "claude_code" / "README.md").read_text()
    assert not re.findall(r"(?<![\w.$])/(?:work|tmp|home|root|Users)/", text)

"""claude-code-router configs start unchanged: its keys, Router.image, CUSTOM_ROUTER_PATH and
the subagent tag, over the real CLI and server.

The fixtures in tests/fixtures/ccr/ are the configs in claude-code-router's README at v2.0.0
(the npm package @musistudio/claude-code-router@2.0.0 ships the same README).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import anthropic
import httpx
import trio

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter, provider_config, run_cli
from tests.fakeserver import Reply, Request

FIXTURES = Path(__file__).parent / "fixtures" / "ccr"
README_EXAMPLE = FIXTURES / "readme-2.0.0-comprehensive.json"
ACTIONS_EXAMPLE = FIXTURES / "readme-2.0.0-github-actions.json"
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


def warning_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "warning" in line.lower()]


def test_readme_example_checks_unchanged_and_names_each_ignored_key(tmp_path: Path) -> None:
    shutil.copy(README_EXAMPLE, tmp_path / "config.json")
    result = run_cli("check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "8 providers, default route deepseek,deepseek-chat" in result.stdout
    lines = warning_lines(result.stderr)
    assert len(lines) == 2, result.stderr
    # Its PROXY_URL is used (the proxy for every provider), so it is not named.
    assert not any("PROXY_URL" in line for line in lines)
    assert any(line.startswith("warning: NON_INTERACTIVE_MODE: ") for line in lines)
    # Its deepseek-chat model uses claude-code-router's `tooluse`, which is skipped.
    assert any("Providers[1].transformer.deepseek-chat" in ln and "'tooluse'" in ln for ln in lines)


def test_github_actions_example_checks_with_its_1_0_keys_named(tmp_path: Path) -> None:
    shutil.copy(ACTIONS_EXAMPLE, tmp_path / "config.json")
    result = run_cli("check-config", cwd=tmp_path)
    # `${{ secrets.OPENAI_API_KEY }}` is in a key that is never read, so it is no problem.
    assert result.returncode == 0, result.stderr
    warned = [line.split(":")[1].strip() for line in warning_lines(result.stderr)]
    assert warned == [
        "NON_INTERACTIVE_MODE",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_MODEL",
        "log",
    ]


def test_unknown_keys_are_still_refused(tmp_path: Path) -> None:
    config = json.loads(README_EXAMPLE.read_text())
    config["PROXY_ULR"] = "http://127.0.0.1:7890"
    config["Router"]["imag"] = "gemini,gemini-2.5-flash"
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = run_cli("check-config", cwd=tmp_path)
    assert result.returncode == 1
    assert "Object contains unknown field `PROXY_ULR`" in result.stderr
    assert "Router: Object contains unknown field `imag`" in result.stderr


def test_a_config_saved_by_its_ui_checks(tmp_path: Path) -> None:
    """claude-code-router's UI (packages/ui/src/components/ConfigProvider.tsx) saves every
    field, unset ones as "", and API_TIMEOUT_MS as a string."""
    config = json.loads(README_EXAMPLE.read_text())
    config.update(
        LOG_LEVEL="debug",
        CLAUDE_PATH="",
        API_TIMEOUT_MS="600000",
        CUSTOM_ROUTER_PATH="",
        StatusLine={"enabled": False, "currentStyle": "default", "default": {"modules": []}},
    )
    config["Router"].update(background="", image="", think="")
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = run_cli("check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warned = {line.split(":")[1].strip() for line in warning_lines(result.stderr)}
    # CLAUDE_PATH is "": nothing is asked for, so nothing is ignored.
    assert {"NON_INTERACTIVE_MODE", "StatusLine"} <= warned
    assert "CLAUDE_PATH" not in warned


async def test_readme_example_starts_unchanged(router_process: Any, tmp_path: Path) -> None:
    shutil.copy(README_EXAMPLE, tmp_path / "config.json")
    router = await trio.to_thread.run_sync(router_process)
    async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
        health = (await client.get("/")).json()
    assert health["status"] == "ok" and health["providers"] == 8
    stderr = await trio.to_thread.run_sync(router.stderr_text)
    lines = warning_lines(stderr)
    assert not any("PROXY_URL" in line for line in lines), stderr
    assert any("NON_INTERACTIVE_MODE: " in line for line in lines), stderr


async def test_readme_example_routes_to_its_providers(
    start_fake: StartFake, router_process: Any, tmp_path: Path
) -> None:
    """The example with only each api_base_url pointed at a fake: the SDK's requests reach
    the providers its Router names."""
    seen: list[tuple[str, str]] = []

    def handler(request: Request) -> Reply:
        model = request.json()["model"]
        seen.append((request.path, model))
        return Reply.json(wire.completion(f"from {model}"))

    fake = await start_fake(handler)
    config = json.loads(README_EXAMPLE.read_text())
    del config["PROXY_URL"]  # its proxy (127.0.0.1:7890) is not here; tests/test_proxy.py has one
    for provider in config["Providers"]:
        provider["api_base_url"] = fake.url + "/" + provider["name"] + "/v1/chat/completions"
    (tmp_path / "config.json").write_text(json.dumps(config))
    router = await trio.to_thread.run_sync(router_process)
    sdk = anthropic.AsyncAnthropic(base_url=router.url, api_key="your-secret-key", max_retries=0)
    answers = []
    explicit = "openrouter,anthropic/claude-sonnet-4"
    for model in ("claude-sonnet-4-5", "claude-3-5-haiku-20241022", explicit):
        message = await sdk.messages.create(
            model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
        block = message.content[0]
        assert block.type == "text"
        answers.append(block.text)
    assert answers == [
        "from deepseek-chat",
        "from qwen2.5-coder:latest",
        "from anthropic/claude-sonnet-4",
    ]
    assert [path for path, _ in seen] == [
        "/deepseek/v1/chat/completions",
        "/ollama/v1/chat/completions",
        "/openrouter/v1/chat/completions",
    ]


async def _routed_models(
    start_router: StartRouter, start_fake: StartFake, router: dict[str, Any], **extra: Any
) -> tuple[list[dict[str, Any]], Any]:
    """A router over one fake per provider (main, vision, sub); returns the bodies the fakes got."""
    bodies: list[dict[str, Any]] = []

    def handler(request: Request) -> Reply:
        bodies.append(request.json())
        return Reply.json(wire.completion("ok"))

    fake = await start_fake(handler)
    running = await start_router(
        {
            "Providers": [
                provider_config(fake, name=name, models=[f"{name}-model"])
                for name in ("main", "vision", "sub")
            ],
            "Router": router,
            **extra,
        }
    )
    return bodies, running


async def test_image_in_the_latest_user_turn_takes_the_image_route(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    bodies, router = await _routed_models(
        start_router, start_fake, {"default": "main,main-model", "image": "vision,vision-model"}
    )
    image_turn = {"role": "user", "content": [PNG_BLOCK, {"type": "text", "text": "what?"}]}
    read_result = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [PNG_BLOCK]}],
    }
    read_call = {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {"path": "a.png"}}],
    }
    cases = [
        ("claude-sonnet-4-5", [{"role": "user", "content": "hi"}], "main-model"),
        ("claude-sonnet-4-5", [image_turn], "vision-model"),
        (
            "claude-sonnet-4-5",
            [{"role": "user", "content": "read a.png"}, read_call, read_result],
            "vision-model",
        ),
        # An image in an earlier turn, answered already: the latest turn has none.
        (
            "claude-sonnet-4-5",
            [
                image_turn,
                {"role": "assistant", "content": "a cat"},
                {"role": "user", "content": "thanks"},
            ],
            "main-model",
        ),
        # claude-code-router's image agent rewrites the model before its router runs.
        ("main,main-model", [image_turn], "vision-model"),
    ]
    async with router.client() as client:
        for model, messages, _ in cases:
            response = await client.post(
                "/v1/messages", json={"model": model, "max_tokens": 5, "messages": messages}
            )
            assert response.status_code == 200, response.text
    assert [body["model"] for body in bodies] == [expected for _, _, expected in cases]


PNG_BLOCK = {"type": "image", "source": PNG}
TAG = "<CCR-SUBAGENT-MODEL>sub,sub-model</CCR-SUBAGENT-MODEL>"


async def test_subagent_tag_routes_and_never_goes_upstream(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    bodies, router = await _routed_models(
        start_router, start_fake, {"default": "main,main-model", "background": "main,main-model"}
    )
    requests = [
        # Where claude-code-router's README puts it: the start of the subagent's prompt.
        {
            "model": "claude-haiku-4-5",
            "system": [
                {"type": "text", "text": "You are Claude Code."},
                {"type": "text", "text": TAG + "\nReview the diff."},
            ],
            "messages": [{"role": "user", "content": "go"}],
        },
        {"system": TAG, "messages": [{"role": "user", "content": "go"}]},
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": f"{TAG} Find the bug."}]}
            ]
        },
        {"messages": [{"role": "user", "content": "no tag here"}]},
    ]
    async with router.client() as client:
        for body in requests:
            body = {"model": "claude-sonnet-4-5", "max_tokens": 5, **body}
            response = await client.post("/v1/messages", json=body)
            assert response.status_code == 200, response.text
        bad = await client.post(
            "/v1/messages",
            json={
                "model": "claude-sonnet-4-5",
                "max_tokens": 5,
                "system": "<CCR-SUBAGENT-MODEL>nope,x</CCR-SUBAGENT-MODEL>",
                "messages": [{"role": "user", "content": "go"}],
            },
        )
    assert [body["model"] for body in bodies] == ["sub-model"] * 3 + ["main-model"]
    for body in bodies:
        assert "CCR-SUBAGENT-MODEL" not in json.dumps(body)
    assert "Review the diff." in json.dumps(bodies[0]) and "Find the bug." in json.dumps(bodies[2])
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert "'nope'" in bad.json()["error"]["message"]


async def test_subagent_tag_is_removed_for_an_anthropic_upstream(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    """The passthrough format forwards the client's own bytes: not when the tag was in them."""
    bodies: list[dict[str, Any]] = []

    def handler(request: Request) -> Reply:
        bodies.append(request.json())
        return Reply.json(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [{"type": "text", "text": "ok"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 1},
            }
        )

    fake = await start_fake(handler)
    router = await start_router(
        {
            "Providers": [
                provider_config(
                    fake,
                    name=name,
                    path="/v1/messages",
                    models=["claude-x"],
                    transformer={"use": ["Anthropic"]},  # claude-code-router's spelling
                )
                for name in ("main", "sub")
            ],
            "Router": {"default": "main,claude-x"},
        }
    )
    async with router.client() as client:
        for system in (f"{TAG}Be brief.", "Be brief."):
            response = await client.post(
                "/v1/messages",
                json={
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 5,
                    "system": system,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            )
            assert response.status_code == 200, response.text
    assert bodies[0]["system"] == "Be brief." and bodies[1]["system"] == "Be brief."
    assert "CCR-SUBAGENT-MODEL" not in json.dumps(bodies)


HOOK = """
calls = []


def route(request, config):
    calls.append(request.model)
    text = request.messages[-1].content
    if not isinstance(text, str):
        return None
    if "explain this code" in text:
        return "sub,sub-model"
    if "boom" in text:
        raise RuntimeError("hook exploded")
    if "number" in text:
        return 42
    if "nowhere" in text:
        return "nope,x"
    return None
"""


async def test_custom_router_hook_routes_first_and_its_failures_are_clear(
    start_router: StartRouter, start_fake: StartFake, tmp_path: Path
) -> None:
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "my_router.py").write_text(HOOK)
    bodies, router = await _routed_models(
        start_router,
        start_fake,
        {"default": "main,main-model"},
        CUSTOM_ROUTER_PATH="../hooks/my_router.py",  # relative to the config's folder
    )
    results: dict[str, httpx.Response] = {}
    async with router.client() as client:
        for text in ("explain this code", "hi", "boom", "number", "nowhere", "hi again"):
            results[text] = await client.post(
                "/v1/messages",
                json={
                    # The hook wins over an explicit choice too, as in claude-code-router.
                    "model": "main,main-model" if text == "explain this code" else "claude-x",
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": text}],
                },
            )
    assert [body["model"] for body in bodies] == ["sub-model", "main-model", "main-model"]
    assert results["hi again"].status_code == 200  # the server serves on
    for text, expected in (
        ("boom", "custom router 'my_router.py' failed: RuntimeError: hook exploded"),
        ("number", "custom router 'my_router.py' returned int"),
        ("nowhere", "custom router 'my_router.py' returned 'nope,x': "),
    ):
        response = results[text]
        assert response.status_code == 500, response.text
        error = response.json()["error"]
        assert error["type"] == "api_error"
        assert expected in error["message"]
    log = router.log_file.read_text()
    assert "custom router 'my_router.py' failed" in log and "Traceback" in log


async def test_api_config_may_not_name_another_custom_router(
    start_router: StartRouter, start_fake: StartFake, tmp_path: Path
) -> None:
    (tmp_path / "hook_a.py").write_text("def route(request, config):\n    return None\n")
    (tmp_path / "hook_b.py").write_text("def route(request, config):\n    return None\n")
    _, router = await _routed_models(
        start_router,
        start_fake,
        {"default": "main,main-model"},
        CUSTOM_ROUTER_PATH=str(tmp_path / "hook_a.py"),
    )
    async with router.client() as client:
        current = (await client.get("/api/config")).json()
        same = await client.post("/api/config", json=current)
        assert same.status_code == 200, same.text
        for path in (str(tmp_path / "hook_b.py"), str(tmp_path / "absent.py")):
            response = await client.post(
                "/api/config", json={**current, "CUSTOM_ROUTER_PATH": path}
            )
            assert response.status_code == 400, response.text
            message = response.json()["error"]["message"]
            assert "may keep the custom router loaded at start" in message
            # The same answer whether the file exists or not: the API cannot probe the disk.
            assert "not found" not in message


def _check(tmp_path: Path, config: dict[str, Any]) -> Any:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return run_cli("check-config", cwd=tmp_path)


BASE: dict[str, Any] = {
    "Providers": [
        {"name": "p", "api_base_url": "https://example.test/v1/chat/completions", "models": ["m"]}
    ],
    "Router": {"default": "p,m"},
}


def test_custom_router_load_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def route(request, config:\n")
    (tmp_path / "empty.py").write_text("x = 1\n")
    (tmp_path / "later.py").write_text("async def route(request, config):\n    return None\n")
    for name, problem in (
        ("missing.py", "file not found"),
        ("broken.py", "import failed: SyntaxError"),
        ("empty.py", "defines no function `route(request, config)`"),
        ("later.py", "`route` must be a plain function (def), not async def"),
    ):
        result = _check(tmp_path, {**BASE, "CUSTOM_ROUTER_PATH": name})
        assert result.returncode == 1, (name, result.stdout)
        assert f"CUSTOM_ROUTER_PATH: {tmp_path.resolve() / name}: {problem}" in result.stderr


def test_a_javascript_custom_router_is_accepted_with_a_warning(tmp_path: Path) -> None:
    # claude-code-router's README example, never run here.
    result = _check(tmp_path, {**BASE, "CUSTOM_ROUTER_PATH": "/User/xxx/custom-router.js"})
    assert result.returncode == 0, result.stderr
    (line,) = warning_lines(result.stderr)
    assert "CUSTOM_ROUTER_PATH: /User/xxx/custom-router.js: JavaScript routers are not run" in line
    assert "the built-in rules apply" in line


def test_claude_code_router_transformers(tmp_path: Path) -> None:
    provider = {
        **BASE["Providers"][0],
        "transformer": {"use": ["OpenAI", "groq", ["maxtoken", {"max_tokens": 100}]]},
    }
    config = {
        **BASE,
        "Providers": [provider],
        # claude-code-router's README: a JavaScript plugin, skipped when no provider uses it.
        "transformers": [{"path": "/User/xxx/plugins/gemini-cli.js", "options": {"project": "x"}}],
    }
    result = _check(tmp_path, config)
    assert result.returncode == 0, result.stderr
    lines = warning_lines(result.stderr)
    assert len(lines) == 2, result.stderr
    assert "transformers[0].path: /User/xxx/plugins/gemini-cli.js: JavaScript" in lines[0]
    assert "Providers[0].transformer: transformer 'groq' (claude-code-router's)" in lines[1]
    # Ones that change the wire format or the sign-in cannot be skipped.
    for name in ("gemini-cli", "vertex-gemini"):
        config["Providers"] = [{**provider, "transformer": {"use": [name]}}]
        result = _check(tmp_path, config)
        assert result.returncode == 1
        assert f"transformer {name!r} (claude-code-router's, for " in result.stderr

"""The real Claude Code CLI -> the real router (``python -m trio_router start``) -> fake providers.

Each test runs ``claude -p`` once, as a user would, with the router as ANTHROPIC_BASE_URL and the
router's config pointing at a fake provider on 127.0.0.1. The fake plays a model: it calls Bash
to write a marker file, Claude Code runs the command, and the fake's final answer quotes the tool
result it finds in the translated request. A run passes only if the router translated Claude
Code's requests, the provider's answers, the tool call and the tool result correctly, and the
fakes reject (as the real APIs do) what a wrong translation would send.

The CLI is the version pinned in tests/claude_code/package.json, installed by
``npm ci --prefix tests/claude_code`` (part of the README's test command); without it these
tests fail and say so.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests import fake_gemini
from tests.claude_code import cli
from tests.conftest import RouterProcess, StartFake
from tests.fake_anthropic import FakeAnthropic
from tests.fake_deepseek import FakeDeepSeek
from tests.fake_gemini import FakeGemini
from tests.fake_openai import FakeChatProvider, final_text
from tests.fakeserver import FakeServer, Reply, Request

OPENROUTER_KEY = "sk-or-v1-e2e-provider-key-0123456789"
DEEPSEEK_KEY = "sk-e2e-deepseek-key-0123456789abcdef"
GEMINI_KEY = "AIzaSyE2E-fake-gemini-key-0123456789abc"
OPENROUTER_MODELS = ["openai/gpt-5", "openai/o4-mini"]
DEEPSEEK_MODELS = ["deepseek-chat", "deepseek-reasoner"]
GEMINI_MODELS = ["gemini-3-pro-preview"]
ANTHROPIC_KEY = "sk-ant-e2e-provider-key-0123456789"
ANTHROPIC_MODELS = ["claude-sonnet-4-5"]
PROMPT = "Write the marker file with Bash, then tell me what it says."
# Anthropic-only request fields that no other provider understands.
ANTHROPIC_ONLY = {"system", "thinking", "output_config", "context_management", "metadata"}

StartRouterProcess = Callable[..., RouterProcess]


@pytest.fixture(scope="session", params=cli.VERSIONS)
def claude_binary(request: pytest.FixtureRequest) -> Path:
    """Each pinned CLI in turn: the newest, and older ones users still run."""
    try:
        return cli.require_claude(version=request.param)
    except cli.ClaudeNotInstalled as error:
        problem = str(error)
    pytest.fail(problem, pytrace=False)


@dataclass
class Run:
    output: dict[str, Any]
    work: Path
    router: RouterProcess
    log_file: Path
    version: str  # of the CLI that ran

    @property
    def session(self) -> str:
        session: str = self.output["session_id"]
        return session


def marker_command() -> tuple[str, str]:
    marker = "marker-" + secrets.token_hex(8)
    return marker, f"printf '{marker}' > marker.txt && cat marker.txt"


def _context(completed: subprocess.CompletedProcess[str], fakes: Sequence[Any], log: Path) -> str:
    rejected = [(r.target, x.status, x.message) for f in fakes for r, x in f.rejected]
    return (
        f"exit {completed.returncode}\nstdout: {completed.stdout}\nstderr: {completed.stderr}\n"
        f"fakes rejected: {rejected}\n"
        f"router log:\n{log.read_text() if log.exists() else '(none)'}"
    )


async def run_claude(
    tmp_path: Path,
    router_process: StartRouterProcess,
    claude_binary: Path,
    provider: dict[str, Any],
    rules: dict[str, Any],
    fake: Any,
    *,
    args: Sequence[str] = (),
) -> Run:
    """Start the router on ``provider`` as users do, and run ``claude -p`` through it."""
    config_dir = tmp_path / "router"
    config_dir.mkdir()
    config = config_dir / "config.json"
    config.write_text(json.dumps({"LOG_LEVEL": "info", "Providers": [provider], "Router": rules}))
    router = router_process("--config", str(config))
    work = tmp_path / "work"  # empty, and not a git repository
    work.mkdir()
    completed = await trio.to_thread.run_sync(
        partial(
            cli.run_claude,
            PROMPT,
            base_url=router.url,
            home=tmp_path / "home",
            cwd=work,
            args=args,
            binary=claude_binary,
            timeout=60,
        )
    )
    log_file = config_dir / "logs" / "trio-router.log"
    context = _context(completed, [fake], log_file)
    try:
        output = json.loads(completed.stdout)
    except ValueError:
        pytest.fail(f"claude printed no JSON result\n{context}")
    # On an API error the CLI still says subtype "success": is_error and the exit code tell.
    assert completed.returncode == 0, context
    assert output["is_error"] is False, context
    assert not fake.rejected, context
    return Run(output, work, router, log_file, cli.version_of(claude_binary))


def assert_marker(run: Run, marker: str) -> None:
    """Claude Code ran the fake's Bash call, and the fake's answer quoted the tool result."""
    assert (run.work / "marker.txt").read_text() == marker
    assert run.output["result"] == final_text(marker)
    assert run.output["num_turns"] == 2
    assert run.output["stop_reason"] == "end_turn"


def assert_clean_upstream(fake: FakeServer) -> None:
    """Claude Code's billing line and key never reach the provider."""
    for request in fake.requests:
        assert b"x-anthropic-billing-header" not in request.body
        assert b"cc_version=" not in request.body
        assert b"test-key" not in request.body
        assert "test-key" not in json.dumps(request.headers)


async def request_log_lines(run: Run, count: int) -> list[str]:
    """The router's request lines; the last is written just after the response's last byte, so
    it may land a moment after the CLI exits."""
    lines: list[str] = []
    with trio.move_on_after(5):
        while True:
            text = run.log_file.read_text() if run.log_file.exists() else ""
            lines = [line for line in text.splitlines() if " POST /v1/messages " in line]
            if len(lines) >= count:
                break
            await trio.sleep(0.02)
    return lines


async def assert_router_records(
    run: Run,
    fake: FakeServer,
    provider: str,
    *,
    requests: int,
    input_tokens: int,
    output_tokens: int,
    cache_read: int,
) -> list[str]:
    """Each request is logged with the session Claude Code sent; the CLI and the usage API saw
    the tokens the fake reported (``requests`` counts every request)."""
    lines = await request_log_lines(run, len(fake.requests))
    assert len(lines) == len(fake.requests), lines
    for line in lines:
        assert f" session={run.session} " in line, line
        assert f" provider={provider} " in line, line
    usage = run.output["usage"]
    if run.version == cli.PINNED_VERSION or len(fake.requests) == 2:
        # What the CLI itself adds up. Older ones leave a non-streaming retry out of their sum;
        # the router's own records below are checked whatever the CLI.
        assert (usage["input_tokens"], usage["output_tokens"]) == (input_tokens, output_tokens)
        assert usage["cache_read_input_tokens"] == cache_read
    async with httpx.AsyncClient(base_url=run.router.url) as client:
        response = await client.get(f"/api/usage/sessions/{run.session}")
    assert response.status_code == 200, response.text
    view = response.json()
    # The view's token fields; its cost fields are the prices' tests' business.
    for entry in view["providers"].values():
        for name in ("costUsd", "unpricedRequests"):
            entry.pop(name, None)
    view.pop("costUsd", None)
    assert view == {
        "sessionId": run.session,
        "providers": {
            provider: {
                "inputTokens": input_tokens,
                "outputTokens": output_tokens,
                "cacheReadTokens": cache_read,
                "requests": requests,
            }
        },
        "totalInputTokens": input_tokens,
        "totalOutputTokens": output_tokens,
        "totalRequests": requests,
    }
    return lines


async def assert_chat_records(
    run: Run, fake: FakeServer, provider: FakeChatProvider, name: str
) -> list[str]:
    """assert_router_records for a chat-completions provider's two answers."""
    usages = [a.usage for a in provider.answers]
    return await assert_router_records(
        run,
        fake,
        name,
        requests=2,
        # OpenAI counts cached tokens inside prompt_tokens, Anthropic apart from input_tokens.
        input_tokens=sum(u.prompt - u.cached for u in usages),
        output_tokens=sum(u.completion for u in usages),
        cache_read=sum(u.cached for u in usages),
    )


def openrouter_config(fake: FakeServer) -> dict[str, Any]:
    return {
        "name": "openrouter",
        "api_base_url": fake.url + FakeChatProvider.path,
        "api_key": OPENROUTER_KEY,
        "models": OPENROUTER_MODELS,
        "transformer": {"use": ["openrouter"]},
    }


def gemini_config(fake: FakeServer, models: list[str]) -> dict[str, Any]:
    return {
        "name": "gemini",
        "api_base_url": fake.url + "/v1beta/models/",
        "api_key": GEMINI_KEY,
        "models": models,
        "transformer": {"use": ["gemini"]},
    }


def tool_exchange(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one assistant tool call of a chat-completions request, and the tool message."""
    calls = [m for m in body["messages"] if m["role"] == "assistant" and m.get("tool_calls")]
    tools = [m for m in body["messages"] if m["role"] == "tool"]
    assert len(calls) == 1 and len(tools) == 1, body["messages"]
    return calls[0], tools[0]


async def test_openai_compatible_tool_round_trip(
    tmp_path: Path,
    start_fake: StartFake,
    router_process: StartRouterProcess,
    claude_binary: Path,
) -> None:
    marker, command = marker_command()
    provider = FakeChatProvider(OPENROUTER_KEY, OPENROUTER_MODELS, command)
    fake = await start_fake(provider)
    run = await run_claude(
        tmp_path,
        router_process,
        claude_binary,
        openrouter_config(fake),
        {"default": "openrouter,openai/gpt-5"},
        provider,
    )

    assert_marker(run, marker)
    assert [a.kind for a in provider.answers] == ["tool_call", "text"]
    first, second = (r.json() for r in fake.requests)
    assert first["stream"] is second["stream"] is True
    assert first["stream_options"] == {"include_usage": True}
    assert first["model"] == "openai/gpt-5"
    assert not ANTHROPIC_ONLY & first.keys()
    assert any(m["role"] == "user" and PROMPT in m["content"] for m in first["messages"])
    # Claude Code's current models ask for adaptive thinking at effort "medium" (2.1.197: "high").
    effort = "medium" if run.version == cli.PINNED_VERSION else "high"
    assert first["reasoning"] == {"effort": effort}
    # The tool result comes back as a tool message answering the fake's own call.
    call, tool = tool_exchange(second)
    (tool_call,) = call["tool_calls"]
    assert tool_call["id"].endswith(provider.answers[0].call_id)
    assert tool_call["function"]["name"] == "Bash"
    assert json.loads(tool_call["function"]["arguments"])["command"] == command
    assert tool["tool_call_id"] == tool_call["id"]
    assert tool["content"] == marker
    assert_clean_upstream(fake)
    await assert_chat_records(run, fake, provider, "openrouter")


async def test_older_model_name_asks_for_thinking_with_a_budget(
    tmp_path: Path,
    start_fake: StartFake,
    router_process: StartRouterProcess,
    claude_binary: Path,
) -> None:
    marker, command = marker_command()
    provider = FakeChatProvider(
        OPENROUTER_KEY, OPENROUTER_MODELS, command, reasoning="The user wants a file; use Bash."
    )
    fake = await start_fake(provider)
    run = await run_claude(
        tmp_path,
        router_process,
        claude_binary,
        openrouter_config(fake),
        {"default": "openrouter,openai/gpt-5", "think": "openrouter,openai/o4-mini"},
        provider,
        args=["--model", "claude-sonnet-4-5"],
    )

    assert_marker(run, marker)
    assert list(run.output["modelUsage"]) == ["claude-sonnet-4-5"]
    bodies = [r.json() for r in fake.requests]
    for body in bodies:
        # thinking {"type": "enabled", "budget_tokens": 31999} is a request to think: the
        # think route, with OpenRouter's budget form of reasoning.
        assert body["model"] == "openai/o4-mini"
        assert body["reasoning"] == {"max_tokens": 31999}
        assert body["max_tokens"] == 32000
        assert body["stream"] is True
        assert not ANTHROPIC_ONLY & body.keys()
    assert all(a.reasoning for a in provider.answers)
    call, tool = tool_exchange(bodies[1])
    assert tool["tool_call_id"] == call["tool_calls"][0]["id"]
    assert tool["content"].startswith(marker)
    assert_clean_upstream(fake)
    lines = await assert_chat_records(run, fake, provider, "openrouter")
    assert all(" route=think " in line and " model=openai/o4-mini " in line for line in lines)


async def test_deepseek_tool_round_trip_in_thinking_mode(
    tmp_path: Path,
    start_fake: StartFake,
    router_process: StartRouterProcess,
    claude_binary: Path,
) -> None:
    marker, command = marker_command()
    provider = FakeDeepSeek(DEEPSEEK_KEY, DEEPSEEK_MODELS, command)
    fake = await start_fake(provider)
    deepseek = {
        "name": "deepseek",
        "api_base_url": fake.url + FakeDeepSeek.path,
        "api_key": DEEPSEEK_KEY,
        "models": DEEPSEEK_MODELS,
        "transformer": {"use": ["deepseek"]},
    }
    run = await run_claude(
        tmp_path,
        router_process,
        claude_binary,
        deepseek,
        {"default": "deepseek,deepseek-chat"},
        provider,
    )

    assert_marker(run, marker)
    assert [a.kind for a in provider.answers] == ["tool_call", "text"]
    first, second = (r.json() for r in fake.requests)
    for body in (first, second):
        # Adaptive thinking turns DeepSeek's thinking mode on; the fake checked max_tokens.
        assert body["thinking"] == {"type": "enabled"}
        assert body["stream"] is True
        assert not {"system", "output_config", "context_management", "metadata"} & body.keys()
    # The chain of thought streamed as reasoning_content went to Claude Code as a thinking
    # block, came back with the history, and reached DeepSeek again on the tool-call turn.
    call, tool = tool_exchange(second)
    assert call["reasoning_content"] == provider.reasoning
    assert tool["tool_call_id"] == call["tool_calls"][0]["id"]
    assert tool["content"] == marker
    assert_clean_upstream(fake)
    await assert_chat_records(run, fake, provider, "deepseek")


async def test_gemini_3_tool_round_trip_carries_the_thought_signature(
    tmp_path: Path,
    start_fake: StartFake,
    router_process: StartRouterProcess,
    claude_binary: Path,
) -> None:
    marker, command = marker_command()
    provider = FakeGemini(GEMINI_KEY, GEMINI_MODELS, command)
    fake = await start_fake(provider)
    run = await run_claude(
        tmp_path,
        router_process,
        claude_binary,
        gemini_config(fake, GEMINI_MODELS),
        {"default": "gemini,gemini-3-pro-preview"},
        provider,
    )

    assert_marker(run, marker)
    assert [a.kind for a in provider.answers] == ["tool_call", "text"]
    streaming = "/v1beta/models/gemini-3-pro-preview:streamGenerateContent?alt=sse"
    assert [r.target for r in fake.requests] == [streaming, streaming]
    first, second = (r.json() for r in fake.requests)
    system = json.dumps(first["systemInstruction"])
    # Claude Code's system prompt, and its mid-conversation system message, are instructions.
    assert "You are a Claude agent" in system and "# Environment" in system
    assert PROMPT in json.dumps(first["contents"][0])
    thinking = first["generationConfig"]["thinkingConfig"]
    # Gemini 3 Pro takes levels low and high (ai.google.dev/gemini-api/docs/gemini-3).
    assert thinking["includeThoughts"] is True and thinking["thinkingLevel"] in ("low", "high")
    # The signature went to Claude Code inside the tool_use id and came back on the call.
    _, model, results = second["contents"]
    (call,) = model["parts"]
    assert call["functionCall"]["name"] == "Bash"
    assert call["functionCall"]["args"]["command"] == command
    assert call["thoughtSignature"] == provider.answers[0].signature
    assert results["parts"] == [
        {"functionResponse": {"name": "Bash", "response": {"result": marker}}}
    ]
    assert_clean_upstream(fake)
    usages = [a.usage for a in provider.answers]
    await assert_router_records(
        run,
        fake,
        "gemini",
        requests=2,
        # Gemini counts cached tokens inside promptTokenCount, and thoughts apart from
        # candidates; Anthropic's output_tokens include thinking.
        input_tokens=sum(u.prompt - u.cached for u in usages),
        output_tokens=sum(u.candidates + u.thoughts for u in usages),
        cache_read=sum(u.cached for u in usages),
    )


async def test_gemini_2_5_on_the_long_context_route(
    tmp_path: Path,
    start_fake: StartFake,
    router_process: StartRouterProcess,
    claude_binary: Path,
) -> None:
    """Claude Code's whole tool list (2.1.197's has record-typed parameters) through the
    long-context route to Gemini 2.5, which takes a thinking budget, not a level."""
    marker, command = marker_command()
    models = ["gemini-3-pro-preview", "gemini-2.5-flash"]
    provider = FakeGemini(GEMINI_KEY, models, command)
    fake = await start_fake(provider)
    rules = {
        "default": "gemini,gemini-3-pro-preview",
        # Claude Code's first request alone counts well over this.
        "longContext": "gemini,gemini-2.5-flash",
        "longContextThreshold": 2000,
    }
    run = await run_claude(
        tmp_path, router_process, claude_binary, gemini_config(fake, models), rules, provider
    )

    assert_marker(run, marker)
    streaming = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert [r.target for r in fake.requests] == [streaming, streaming]
    thinking = fake.requests[0].json()["generationConfig"]["thinkingConfig"]
    assert "thinkingBudget" in thinking and "thinkingLevel" not in thinking
    lines = await request_log_lines(run, 2)
    assert all(" route=longContext " in line for line in lines), lines


async def test_anthropic_passthrough_tool_round_trip(
    tmp_path: Path,
    start_fake: StartFake,
    router_process: StartRouterProcess,
    claude_binary: Path,
) -> None:
    """An Anthropic-compatible upstream (the ``anthropic`` format): Claude Code's own requests
    go through with the route's model, beta fields and their ``anthropic-beta`` header intact."""
    marker, command = marker_command()
    provider = FakeAnthropic(ANTHROPIC_KEY, ANTHROPIC_MODELS, command)
    fake = await start_fake(provider)
    upstream = {
        "name": "anthropic",
        "api_base_url": fake.url + FakeAnthropic.path,
        "api_key": ANTHROPIC_KEY,
        "models": ANTHROPIC_MODELS,
        "transformer": {"use": ["anthropic"]},
    }
    run = await run_claude(
        tmp_path,
        router_process,
        claude_binary,
        upstream,
        {"default": f"anthropic,{ANTHROPIC_MODELS[0]}"},
        provider,
    )

    assert_marker(run, marker)
    assert [a.kind for a in provider.answers] == ["tool_use", "text"]
    assert [r.target for r in fake.requests] == [FakeAnthropic.path] * 2
    first, second = (r.json() for r in fake.requests)
    for request, body in zip(fake.requests, (first, second), strict=True):
        assert body["model"] == ANTHROPIC_MODELS[0]
        assert body["stream"] is True
        # The client's fields reach an Anthropic upstream as sent, beta ones with their header.
        assert {"system", "thinking", "metadata", "context_management"} <= body.keys()
        assert "context-management-2025-06-27" in request.headers["anthropic-beta"]
        assert request.headers["x-api-key"] == ANTHROPIC_KEY
    assert PROMPT in json.dumps(first["messages"][0])
    # The tool call went back as sent, and the result answers it.
    call = second["messages"][-2]
    assert call["role"] == "assistant"
    (tool_use,) = [b for b in call["content"] if b["type"] == "tool_use"]
    assert tool_use["id"] == provider.answers[0].call_id
    assert tool_use["input"]["command"] == command
    (result,) = [b for b in second["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert result["tool_use_id"] == tool_use["id"]
    # The key Claude Code presented never goes upstream.
    for request in fake.requests:
        assert "test-key" not in json.dumps(request.headers)
    # The fake reports 12 input and 9 output tokens per answer (tests/capture_server.py).
    await assert_router_records(
        run, fake, "anthropic", requests=2, input_tokens=24, output_tokens=18, cache_read=0
    )


async def test_broken_stream_falls_back_to_a_non_streaming_request(
    tmp_path: Path,
    start_fake: StartFake,
    router_process: StartRouterProcess,
    claude_binary: Path,
) -> None:
    marker, command = marker_command()
    provider = FakeChatProvider(OPENROUTER_KEY, OPENROUTER_MODELS, command, cut_first_stream=True)
    fake = await start_fake(provider)
    run = await run_claude(
        tmp_path,
        router_process,
        claude_binary,
        openrouter_config(fake),
        {"default": "openrouter,openai/gpt-5"},
        provider,
    )

    assert_marker(run, marker)
    streams = [r.json().get("stream", False) for r in fake.requests]
    # The cut stream, Claude Code's non-streaming retry of it, then the next turn streams.
    assert streams == [True, False, True]
    assert [(a.kind, a.cut) for a in provider.answers] == [
        ("tool_call", True),
        ("tool_call", False),
        ("text", False),
    ]
    retry = fake.requests[1].json()
    assert "stream_options" not in retry
    assert retry["messages"] == fake.requests[0].json()["messages"]
    call, tool = tool_exchange(fake.requests[2].json())
    assert call["tool_calls"][0]["id"].endswith(provider.answers[1].call_id)
    assert tool["content"] == marker
    assert_clean_upstream(fake)
    reported = [a.usage for a in provider.answers if not a.cut]
    lines = await assert_router_records(
        run,
        fake,
        "openrouter",
        requests=3,
        input_tokens=sum(u.prompt - u.cached for u in reported),
        output_tokens=sum(u.completion for u in reported),
        cache_read=sum(u.cached for u in reported),
    )
    assert " stream=yes " in lines[0] and "error=" in lines[0]
    assert " stream=no " in lines[1] and "error=" not in lines[1]


def test_missing_cli_fails_with_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(cli.ClaudeNotInstalled, match=re.escape(cli.INSTALL_COMMAND)):
        cli.require_claude(tmp_path)


# --- the fakes reject what the real APIs reject, so the runs above can trust them --------------

BASH_ARGS = {"command": "true", "description": "x"}


def _chat(messages: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"model": "deepseek-chat", "messages": messages, **extra}).encode()


def _gemini(contents: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"contents": contents, **extra}).encode()


CALL = {"id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}
GEMINI_TARGET = "/v1beta/models/gemini-3-pro-preview:streamGenerateContent?alt=sse"
GEMINI_CALL = {"functionCall": {"name": "Bash", "args": BASH_ARGS}}
GEMINI_TURN = [
    {"role": "user", "parts": [{"text": "hi"}]},
    {"role": "model", "parts": [GEMINI_CALL]},
    {"role": "user", "parts": [{"functionResponse": {"name": "Bash", "response": {}}}]},
]
REJECTIONS = [
    pytest.param(
        "openrouter",
        _chat([{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "x"}]),
        400,
        "messages with role 'tool' must be a response to a preceeding message",
        id="openai-orphan-tool-message",
    ),
    pytest.param(
        "openrouter",
        _chat([{"role": "assistant", "content": None, "tool_calls": [CALL]}]),
        400,
        "did not have response messages: call_1",
        id="openai-unanswered-tool-call",
    ),
    pytest.param(
        "deepseek",
        _chat(
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
            ],
            thinking={"type": "enabled"},
        ),
        400,
        "Missing `reasoning_content` field in the assistant message at message index 1",
        id="deepseek-thinking-without-reasoning-content",
    ),
    pytest.param(
        "deepseek",
        _chat([{"role": "user", "content": "hi"}], max_tokens=128000),
        400,
        "the valid range of max_tokens is [1, 8192]",
        id="deepseek-max-tokens",
    ),
    pytest.param(
        "gemini",
        _gemini(GEMINI_TURN),
        400,
        "Function call is missing a thought_signature in functionCall parts.",
        id="gemini-3-missing-signature",
    ),
    pytest.param(
        "gemini",
        _gemini(
            [
                GEMINI_TURN[0],
                {"role": "model", "parts": [{**GEMINI_CALL, "thoughtSignature": "AA=="}]},
            ]
        ),
        400,
        "Corrupted thought signature.",
        id="gemini-3-unknown-signature",
    ),
    pytest.param(
        "gemini",
        _gemini(
            GEMINI_TURN[:1],
            tools=[
                {
                    "functionDeclarations": [
                        {"name": "Bash", "parameters": {"type": "object", "$schema": "x"}}
                    ]
                }
            ],
        ),
        400,
        "Unknown name \"$schema\" at 'tools[0].function_declarations[0].parameters'",
        id="gemini-json-schema-keyword",
    ),
    pytest.param(
        "gemini",
        _gemini([{"role": "system", "parts": [{"text": "hi"}]}]),
        400,
        "Please use a valid role: user, model.",
        id="gemini-system-role",
    ),
    pytest.param(
        "gemini",
        _gemini(GEMINI_TURN[:1], thinking={"type": "adaptive"}),
        400,
        'Unknown name "thinking": Cannot find field.',
        id="gemini-anthropic-field",
    ),
]


@pytest.mark.parametrize(("kind", "body", "status", "message"), REJECTIONS)
def test_fakes_reject_what_the_real_apis_reject(
    kind: str, body: bytes, status: int, message: str
) -> None:
    fake: Callable[[Request], Reply]
    if kind == "openrouter":
        fake = FakeChatProvider(OPENROUTER_KEY, ["deepseek-chat"], "true")
        request = Request(
            "POST",
            FakeChatProvider.path,
            {"authorization": f"Bearer {OPENROUTER_KEY}"},
            body,
        )
    elif kind == "deepseek":
        fake = FakeDeepSeek(DEEPSEEK_KEY, DEEPSEEK_MODELS, "true")
        request = Request(
            "POST", FakeDeepSeek.path, {"authorization": f"Bearer {DEEPSEEK_KEY}"}, body
        )
    else:
        fake = FakeGemini(GEMINI_KEY, GEMINI_MODELS, "true")
        request = Request("POST", GEMINI_TARGET, {"x-goog-api-key": GEMINI_KEY}, body)
    reply = fake(request)
    assert reply.status == status
    error = json.loads(b"".join(reply.chunks))["error"]
    assert message in error["message"]
    if kind == "gemini":
        assert error["code"] == status and error["status"] == "INVALID_ARGUMENT"


def test_fake_gemini_accepts_its_own_signature_and_the_documented_skip_value() -> None:
    fake = FakeGemini(GEMINI_KEY, GEMINI_MODELS, "true")
    first = fake(
        Request(
            "POST",
            GEMINI_TARGET,
            {"x-goog-api-key": GEMINI_KEY},
            _gemini(GEMINI_TURN[:1], tools=[{"functionDeclarations": [{"name": "Bash"}]}]),
        )
    )
    assert first.status == 200
    events = [json.loads(c.removeprefix(b"data: ")) for c in first.chunks]
    (call,) = events[-1]["candidates"][0]["content"]["parts"]
    for signature in (call["thoughtSignature"], fake_gemini.SKIP_SIGNATURE):
        model = {"role": "model", "parts": [{**GEMINI_CALL, "thoughtSignature": signature}]}
        body = _gemini([GEMINI_TURN[0], model, GEMINI_TURN[2]])
        reply = fake(Request("POST", GEMINI_TARGET, {"x-goog-api-key": GEMINI_KEY}, body))
        assert reply.status == 200, reply.chunks

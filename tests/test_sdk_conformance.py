"""The official SDKs against the real router, on every provider format.

Python: the ``anthropic`` SDK's own ``tests/api_resources/test_messages.py`` (create, stream and
count_tokens, sync and async, strict response validation; 65 tests), from the sdist of the
installed version, which reads its server from ``TEST_API_BASE_URL``. It runs in its own pytest
process with the SDK's own config (its asyncio plugin never meets this session's pytest-trio),
against the router with its rules pointed at each fake provider in turn. The sdist is fetched
once with ``pip download`` into the user's cache directory.

TypeScript: ``examples/typescript/conformance.ts`` (a stream with ``finalMessage()``, then a tool
round trip) with the ``@anthropic-ai/sdk`` that ``npm ci --prefix examples/typescript`` installs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import platformdirs
import pytest
import trio

from tests import capture_server
from tests.conftest import RunningRouter, StartFake, StartRouter, provider_config
from tests.fake_deepseek import FakeDeepSeek
from tests.fake_gemini import FakeGemini
from tests.fake_openai import FakeChatProvider, final_text
from tests.test_examples import TYPESCRIPT, require_typescript_sdk, run, succeeded

PROVIDER_KEY = "sk-conformance-provider-key-0123456789"
COMMAND = "printf conformance"
# The SDK test file's plugins and imports beyond our own test dependencies.
SDK_TEST_MODULES = ("pytest_asyncio", "inline_snapshot", "http_snapshot", "aiohttp")
SDK_MESSAGE_TESTS = "tests/api_resources/test_messages.py"  # as tests/sdk_suite.py runs it


def sdk_sources() -> Path:
    """The installed anthropic version's sdist, unpacked (downloaded on first use)."""
    wanted = version("anthropic")
    cache = Path(
        os.environ.get("TRIO_ROUTER_TEST_CACHE") or platformdirs.user_cache_dir("trio-router")
    )
    folder = cache / f"anthropic-{wanted}"
    if (folder / SDK_MESSAGE_TESTS).is_file():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        download = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"),
                *("--disable-pip-version-check", "-d", scratch, f"anthropic=={wanted}"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if download.returncode != 0:
            pytest.fail(
                f"could not download the anthropic {wanted} sdist from PyPI (its test suite is "
                f"the conformance suite):\n{download.stdout[-2000:]}{download.stderr[-2000:]}",
                pytrace=False,
            )
        (archive,) = Path(scratch).glob("anthropic-*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
        unpacked = Path(scratch) / f"anthropic-{wanted}"
        if not (unpacked / SDK_MESSAGE_TESTS).is_file():
            pytest.fail(f"the anthropic {wanted} sdist has no {SDK_MESSAGE_TESTS}", pytrace=False)
        try:
            unpacked.rename(folder)
        except OSError:  # another run unpacked it first
            if not (folder / SDK_MESSAGE_TESTS).is_file():
                raise
    return folder


@dataclass
class Format:
    """A router whose every rule leads to one fake provider, and what its model answers."""

    router: RunningRouter
    # The text a tool round trip ends with, given the tool's result.
    final: Callable[[str], str]
    # How many requests the fake provider has had.
    served: Callable[[], int]


def chat_provider(fake_class: type[FakeChatProvider], transformer: str, models: list[str]) -> Any:
    async def start(start_fake: StartFake, start_router: StartRouter, tmp: Path) -> Format:
        provider = fake_class(PROVIDER_KEY, models, COMMAND)
        fake = await start_fake(provider)
        config = provider_config(
            fake,
            path=provider.path,
            api_key=PROVIDER_KEY,
            models=models,
            transformer={"use": [transformer]},
        )
        router = await start_router(
            {"Providers": [config], "Router": {"default": f"fake,{models[0]}"}}
        )
        return Format(router, final_text, lambda: len(fake.requests))

    return start


async def gemini(start_fake: StartFake, start_router: StartRouter, tmp: Path) -> Format:
    models = ["gemini-3-pro-preview"]
    fake = await start_fake(FakeGemini(PROVIDER_KEY, models, COMMAND))
    config = provider_config(
        fake,
        path="/v1beta/models/",
        api_key=PROVIDER_KEY,
        models=models,
        transformer={"use": ["gemini"]},
    )
    router = await start_router({"Providers": [config], "Router": {"default": f"fake,{models[0]}"}})
    return Format(router, final_text, lambda: len(fake.requests))


@asynccontextmanager
async def anthropic_upstream(tmp: Path) -> AsyncIterator[str]:
    """tests/capture_server.py, the fake Anthropic API, in tool_use mode; its URL."""
    log = tmp / "anthropic.jsonl"
    process = subprocess.Popen(
        [sys.executable, capture_server.__file__, "--mode", "tool_use", "--log", str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = (await trio.to_thread.run_sync(process.stdout.readline)).strip()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def anthropic(upstream: str) -> Any:
    async def start(start_fake: StartFake, start_router: StartRouter, tmp: Path) -> Format:
        config = {
            "name": "fake",
            "api_base_url": upstream + "/v1/messages",
            "api_key": PROVIDER_KEY,
            "models": ["claude-sonnet-4-5"],
            "transformer": {"use": ["anthropic"]},
        }
        router = await start_router(
            {"Providers": [config], "Router": {"default": "fake,claude-sonnet-4-5"}}
        )
        log = tmp / "anthropic.jsonl"

        def served() -> int:
            return len(log.read_text().splitlines()) if log.exists() else 0

        return Format(router, lambda _: "".join(capture_server.TEXT_DELTAS), served)

    return start


FORMATS = ["openrouter", "openai", "deepseek", "gemini", "anthropic"]


@asynccontextmanager
async def provider_format(
    name: str, start_fake: StartFake, start_router: StartRouter, tmp: Path
) -> AsyncIterator[Format]:
    tmp.mkdir(parents=True, exist_ok=True)
    if name == "anthropic":
        async with anthropic_upstream(tmp) as upstream:
            yield await anthropic(upstream)(start_fake, start_router, tmp)
        return
    starts = {
        "openrouter": chat_provider(FakeChatProvider, "openrouter", ["openai/gpt-5"]),
        "openai": chat_provider(FakeChatProvider, "openai", ["gpt-5"]),
        "deepseek": chat_provider(FakeDeepSeek, "deepseek", ["deepseek-chat"]),
        "gemini": gemini,
    }
    yield await starts[name](start_fake, start_router, tmp)


def sdk_test_environment() -> None:
    missing = [name for name in SDK_TEST_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(
            f"the anthropic SDK's tests need {', '.join(missing)}: install the test extra, "
            "`.venv/bin/pip install -e '.[test]' -c constraints.txt`",
            pytrace=False,
        )


async def test_the_python_sdks_own_message_tests_pass_on_every_format(
    start_fake: StartFake, start_router: StartRouter, tmp_path: Path
) -> None:
    """One process runs the SDK's tests once per format (tests/sdk_suite.py): loading the SDK
    and its plugins is most of a run's time, so it is done once."""
    sdk_test_environment()
    sources = await trio.to_thread.run_sync(sdk_sources)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "PYTEST_"))}
    env.pop("PYTHONPATH", None)
    async with AsyncExitStack() as stack:
        urls, served = {}, {}
        for name in FORMATS:
            fmt = await stack.enter_async_context(
                provider_format(name, start_fake, start_router, tmp_path / name)
            )
            urls[fmt.router.url] = name
            served[name] = fmt.served
        result = await run(
            [sys.executable, str(Path(__file__).with_name("sdk_suite.py")), *urls],
            env,
            cwd=sources,
            timeout=300,
        )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    runs = json.loads(lines[-1])
    # Each run went to its own router and provider: 50 Messages calls each (the 15
    # count_tokens calls are answered by the router).
    assert {name: count() >= 50 for name, count in served.items()} == dict.fromkeys(FORMATS, True)
    problems = []
    for url, outcome in runs.items():
        outcomes = list(outcome["outcomes"].values())
        # Every test ran and passed: none failed, skipped or expected to fail.
        if outcome["exit"] != 0 or len(outcomes) < 65 or set(outcomes) != {"passed"}:
            failures = "\n".join(f"{k}: {v}" for k, v in list(outcome["failures"].items())[:3])
            problems.append(
                f"{urls[url]}: exit {outcome['exit']}, {len(outcomes)} tests, "
                f"{outcomes.count('passed')} passed\n{failures}"
            )
    assert len(runs) == len(FORMATS) and not problems, "\n\n".join(problems)


@pytest.mark.parametrize("name", FORMATS)
async def test_the_typescript_sdk_streams_and_completes_a_tool_round_trip(
    name: str, start_fake: StartFake, start_router: StartRouter, tmp_path: Path
) -> None:
    require_typescript_sdk()
    tsx = TYPESCRIPT / "node_modules" / ".bin" / "tsx"
    async with provider_format(name, start_fake, start_router, tmp_path) as fmt:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "ANTHROPIC_BASE_URL": fmt.router.url,
            "ANTHROPIC_API_KEY": "client-key",
            "TOOL_RESULT": "conformance-result",
        }
        out = succeeded(await run([str(tsx), "conformance.ts"], env, cwd=TYPESCRIPT))
    report = json.loads(out.strip().splitlines()[-1])
    stream = report["stream"]
    assert stream["text"] == stream["final_text"] and stream["events"] > 0, report
    assert stream["stop_reason"] in ("end_turn", "tool_use"), report
    (call,) = report["tool_calls"]
    assert call["name"] == "Bash" and isinstance(call["input"].get("command"), str), report
    assert report["turns"][0]["stop_reason"] == "tool_use"
    final = report["turns"][1]
    assert final["stop_reason"] == "end_turn", report
    assert final["text"] == fmt.final("conformance-result"), report

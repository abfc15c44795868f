"""Transformer chains, built-in hooks and custom transformers, through the real server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request
from trio_router import cli
from trio_router.anthropic import MessagesRequest
from trio_router.config import Provider
from trio_router.hooks import CleanCache
from trio_router.providers.base import Route

EXAMPLE = Path(__file__).parent.parent / "examples" / "custom_transformer.py"
USER = [{"role": "user", "content": "hi"}]


def echo(request: Request) -> Reply:
    return Reply.json(wire.completion("ok"))


async def post(router: Any, model: str = "m", **body: Any) -> Any:
    async with router.client() as client:
        response = await client.post(
            "/v1/messages", json={"model": model, "messages": USER, "max_tokens": 64000, **body}
        )
    return response


async def test_maxtoken_caps_and_per_model_chains_override(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(echo)
    router = await start_router(
        {
            "Providers": [
                provider_config(
                    fake,
                    models=["small", "big"],
                    transformer={
                        "use": ["openrouter", ["maxtoken", {"max_tokens": 8192}]],
                        "big": {"use": [["maxtoken", {"max_tokens": 32000}]]},
                    },
                )
            ],
            "Router": {"default": "fake,small"},
        }
    )
    assert (await post(router)).status_code == 200
    assert (await post(router, "fake,big")).status_code == 200
    assert (await post(router, max_tokens=100)).status_code == 200
    sent = [r.json()["max_tokens"] for r in fake.requests]
    assert sent == [8192, 32000, 100]


def test_cleancache_removes_every_mark() -> None:
    mark = {"type": "ephemeral"}
    request = msgspec.convert(
        {
            "model": "m",
            "system": [{"type": "text", "text": "s", "cache_control": mark}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": mark}]},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t",
                            "content": [{"type": "text", "text": "r", "cache_control": mark}],
                            "cache_control": mark,
                        }
                    ],
                },
            ],
            "tools": [{"name": "x", "input_schema": {}, "cache_control": mark}],
        },
        MessagesRequest,
    )
    route = Route(provider=Provider(name="p", api_base_url="http://x.test"), model="m")
    cleaned = CleanCache({}).transform_request(request, route)
    assert "cache_control" not in msgspec.json.encode(cleaned).decode()
    assert "cache_control" in msgspec.json.encode(request).decode()


async def test_enhancetool_repairs_malformed_tool_arguments(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    broken = wire.completion(
        None,
        tool_calls=[
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "Bash", "arguments": '{"command": "ls -la",'},
            }
        ],
        finish="tool_calls",
    )
    fake = await start_fake(lambda request: Reply.json(broken))
    plain = await start_router(
        {
            "Providers": [provider_config(fake, transformer={"use": ["openrouter"]})],
            "Router": {"default": "fake,fake-model"},
        }
    )
    repaired = await start_router(
        {
            "Providers": [
                provider_config(fake, transformer={"use": ["enhancetool", "openrouter"]})
            ],
            "Router": {"default": "fake,fake-model"},
        }
    )
    failed = await post(plain)
    fixed = await post(repaired)
    assert failed.status_code == 502
    assert failed.json()["error"]["type"] == "api_error"
    assert fixed.status_code == 200
    block = fixed.json()["content"][0]
    assert block["type"] == "tool_use"
    assert block["input"] == {"command": "ls -la"}


async def test_sampling_and_reasoning_hooks(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    fake = await start_fake(echo)
    router = await start_router(
        {
            "Providers": [
                provider_config(
                    fake,
                    transformer={
                        "use": [
                            ["sampling", {"temperature": 0.2, "drop": ["top_p"]}],
                            ["reasoning", {"mode": "budget", "budget_tokens": 2048}],
                        ]
                    },
                )
            ],
            "Router": {"default": "fake,fake-model"},
        }
    )
    response = await post(
        router,
        temperature=1.0,
        top_p=0.9,
        thinking={"type": "enabled", "budget_tokens": 30000},
    )
    assert response.status_code == 200
    sent = fake.requests[0].json()
    assert sent["temperature"] == 0.2
    assert "top_p" not in sent
    assert sent["reasoning"] == {"max_tokens": 2048}


def custom_config(fake: Any, path: str, use: list[Any], options: dict[str, Any]) -> dict[str, Any]:
    return {
        "transformers": [{"path": path, "options": options}],
        "Providers": [provider_config(fake, transformer={"use": use})],
        "Router": {"default": "fake,fake-model"},
    }


async def test_custom_transformer_from_a_file_end_to_end(
    start_router: StartRouter, start_fake: StartFake, tmp_path: Path
) -> None:
    fake = await start_fake(echo)
    directory = tmp_path / "site"
    (directory / "transformers").mkdir(parents=True)
    shutil.copy(EXAMPLE, directory / "transformers" / "policy.py")
    router = await start_router(
        custom_config(
            fake,
            "transformers/policy.py",  # relative to the config file's folder
            [["team-policy", {"header": "team-a"}], "openrouter"],
            {"instructions": "Answer in French.", "header": "default-team"},
        ),
        directory=directory,
    )
    response = await post(router, system="Be brief.")
    assert response.status_code == 200
    sent = fake.requests[0]
    assert sent.headers["x-team"] == "team-a"
    assert sent.json()["messages"][0]["role"] == "system"
    assert "Answer in French." in json.dumps(sent.json()["messages"][0])
    async with router.client() as client:
        listed = (await client.get("/api/transformers")).json()["transformers"]
    by_name = {row["name"]: row for row in listed}
    assert by_name["team-policy"]["builtin"] is False
    assert by_name["team-policy"]["path"] == "transformers/policy.py"
    assert by_name["team-policy"]["usedBy"] == ["fake"]
    assert by_name["openrouter"]["usedBy"] == ["fake"]
    assert by_name["gemini"]["usedBy"] == []
    assert {"maxtoken", "cleancache", "enhancetool", "reasoning", "sampling"} <= set(by_name)


FAILING = """
from trio_router.hooks import Transformer


class Exploder(Transformer):
    name = "exploder"

    def transform_request(self, request, route):
        if request.max_tokens == 13:
            raise RuntimeError("unlucky number")
        return request
"""


async def test_custom_transformer_failure_is_a_500_and_the_server_serves_on(
    start_router: StartRouter, start_fake: StartFake, tmp_path: Path
) -> None:
    fake = await start_fake(echo)
    (tmp_path / "exploder.py").write_text(FAILING)
    router = await start_router(
        custom_config(fake, str(tmp_path / "exploder.py"), ["exploder", "openrouter"], {})
    )
    failed = await post(router, max_tokens=13)
    ok = await post(router, max_tokens=10)
    assert failed.status_code == 500
    assert failed.json()["error"]["type"] == "api_error"
    assert (
        "transformer 'exploder' failed: RuntimeError: unlucky number"
        in failed.json()["error"]["message"]
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        (None, "file not found"),
        ("import nonexistent_module_xyz\n", "import failed: ModuleNotFoundError"),
        (
            "class Nameless:\n    def transform_request(self, r, route):\n        return r\n",
            "expected one class with a non-empty `name`",
        ),
        ("class Idle:\n    name = 'idle'\n", "has none of the methods"),
        (
            "class Clash:\n    name = 'gemini'\n"
            "    def transform_request(self, r, route):\n        return r\n",
            "already a built-in",
        ),
    ],
)
def test_bad_custom_transformers_fail_at_startup_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str | None, needle: str
) -> None:
    path = tmp_path / "custom.py"
    if source is not None:
        path.write_text(source)
    config = {
        "transformers": [{"path": str(path)}],
        "Providers": [{"name": "p", "api_base_url": "https://example.test/v1", "models": ["m"]}],
        "Router": {"default": "p,m"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    code = cli.main(["check-config", "--config", str(tmp_path / "config.json")])
    output = capsys.readouterr().err
    assert code == 1
    assert "transformers[0].path" in output
    assert str(path) in output
    assert needle in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("use", "needle"),
    [
        ([["maxtoken", {"max_tokens": "lots"}]], "maxtoken options: Expected `int`"),
        ([["maxtoken", {}]], "missing required field `max_tokens`"),
        ([["openrouter", {"reasoning": "loud"}]], "openrouter options"),
        (["openrouter", "gemini"], "more than one format transformer"),
        ([5], "expected a name or [name, {options}]"),
    ],
)
def test_bad_chain_options_fail_at_startup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], use: list[Any], needle: str
) -> None:
    config = {
        "Providers": [
            {
                "name": "p",
                "api_base_url": "https://example.test/v1",
                "models": ["m"],
                "transformer": {"use": use},
            }
        ],
        "Router": {"default": "p,m"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    code = cli.main(["check-config", "--config", str(tmp_path / "config.json")])
    output = capsys.readouterr().err
    assert code == 1
    assert "Providers[0].transformer" in output
    assert needle in output


def test_enhancetool_is_harmless_on_formats_without_text_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "Providers": [
            {
                "name": "g",
                "api_base_url": "https://example.test/v1beta/models/",
                "models": ["gemini-2.5-flash"],
                "transformer": {"use": ["enhancetool", "gemini"]},
            }
        ],
        "Router": {"default": "g,gemini-2.5-flash"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert cli.main(["check-config", "--config", str(tmp_path / "config.json")]) == 0

"""Fallback chains (issue 17): a rule's list of targets, and claude-code-router's ``fallback``."""

from __future__ import annotations

from typing import Any

import trio

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request
from trio_router.config import ConfigError, parse

USER = [{"role": "user", "content": "hi"}]
DEAD = "http://127.0.0.1:9/v1/chat/completions"


def answer(request: Request) -> Reply:
    return Reply.json(wire.completion(f"from {request.json()['model']}"))


def down(request: Request) -> Reply:
    return wire.error_reply(503, "down for maintenance", "server_error")


async def log_line(router: Any, words: str) -> str:
    """The first log line with ``words``: written just after the response went out."""
    with trio.fail_after(10):
        while True:
            text = router.log_file.read_text() if router.log_file.exists() else ""
            for line in text.splitlines():
                if words in line:
                    return line
            await trio.sleep(0.05)


async def post(router: Any) -> Any:
    body = {"model": "claude-sonnet-4", "max_tokens": 20, "messages": USER}
    async with router.client() as client:
        return await client.post("/v1/messages", json=body)


async def test_a_dead_primary_falls_back(start_fake: StartFake, start_router: StartRouter) -> None:
    backup = await start_fake(answer)
    router = await start_router(
        {
            "Providers": [
                {
                    "name": "dead",
                    "api_base_url": DEAD,
                    "api_key": "k-1",
                    "models": ["big"],
                    "retries": 0,
                },
                provider_config(backup, name="backup", models=["small"]),
            ],
            "Router": {"default": ["dead,big", "backup,small"]},
        }
    )
    response = await post(router)
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "from small"
    line = await log_line(router, "POST /v1/messages 200")
    assert "provider=backup model=small fallback_from=dead,big" in line
    assert "falling back from dead,big to backup,small" in router.log_file.read_text()
    async with router.client() as client:
        usage = (await client.get("/api/usage/sessions/default")).json()
    assert list(usage["providers"]) == ["backup"]  # the provider that answered
    assert usage["providers"]["backup"]["requests"] == 1


async def test_ccr_fallback_key_and_the_first_error_when_all_fail(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    first = await start_fake(down)
    second = await start_fake(down)
    router = await start_router(
        {
            "Providers": [
                provider_config(first, name="a", models=["m"], retries=0),
                provider_config(second, name="b", models=["m"], retries=0),
            ],
            "Router": {"default": "a,m"},
            "fallback": {"default": ["b,m"]},
        }
    )
    response = await post(router)
    assert response.status_code == 503
    assert "provider 'a'" in response.json()["error"]["message"]
    assert len(first.requests) == 1 and len(second.requests) == 1


async def test_a_bad_request_does_not_fall_back(
    start_fake: StartFake, start_router: StartRouter
) -> None:
    refusing = await start_fake(lambda r: wire.error_reply(400, "bad tools", "invalid_request"))
    backup = await start_fake(answer)
    router = await start_router(
        {
            "Providers": [
                provider_config(refusing, name="a", models=["m"]),
                provider_config(backup, name="b", models=["m"]),
            ],
            "Router": {"default": ["a,m", "b,m"]},
        }
    )
    response = await post(router)
    assert response.status_code == 400
    assert not backup.requests


def test_fallback_config_is_checked() -> None:
    provider = {"name": "p", "api_base_url": "http://x", "models": ["m"]}
    raw = {
        "Providers": [provider],
        "Router": {"default": ["p,m", "p,other"], "think": []},
        "fallback": {"background": ["p,m"], "nonsense": ["p,m"]},
    }
    try:
        parse(raw, "config.json", {})
    except ConfigError as error:
        problems = error.problems
    else:
        raise AssertionError("accepted")
    assert "Router.default[1]: model 'other' is not in the models of provider 'p'" in problems
    assert "Router.think: an empty list; leave the rule out instead" in problems
    assert "fallback.background: Router.background is not set, so nothing falls back" in problems
    assert any(p.startswith("fallback.nonsense: not a Router rule") for p in problems)

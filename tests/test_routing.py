"""Routing rules, in their order, and the route each request reaches over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from tests import openai_wire as wire
from tests.conftest import StartFake, StartRouter, provider_config
from tests.fakeserver import Reply, Request
from trio_router.anthropic import MessagesRequest, TextBlock
from trio_router.config import Config
from trio_router.custom_router import CustomRouter
from trio_router.errors import InvalidRequestError
from trio_router.messages import session_id
from trio_router.routing import NoProviderError, Router

PROVIDERS = [
    {"name": name, "api_base_url": "https://example.test/v1", "models": ["a", "b"]}
    for name in ("main", "bg", "deep", "long", "web", "vision", "sub")
]
RULES = {
    "default": "main,a",
    "background": "bg,a",
    "think": "deep,b",
    "longContext": "long,a",
    "longContextThreshold": 1000,
    "webSearch": "web,b",
    "image": "vision,a",
}


def router(**rules: Any) -> Router:
    raw = {"Providers": PROVIDERS, "Router": {**RULES, **rules}}
    return Router(msgspec.convert(raw, Config))


def request(**fields: Any) -> MessagesRequest:
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}
    return msgspec.convert({**body, **fields}, MessagesRequest)


WEB = [{"type": "web_search_20250305", "name": "web_search"}]
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
IMAGE_TURN = [{"role": "user", "content": [IMAGE, {"type": "text", "text": "what is it?"}]}]
TAG = "<CCR-SUBAGENT-MODEL>sub,b</CCR-SUBAGENT-MODEL>"


@pytest.mark.parametrize(
    ("fields", "tokens", "expected"),
    [
        ({}, 10, ("main", "a", "default")),
        ({"model": "claude-3-5-haiku-20241022"}, 10, ("bg", "a", "background")),
        ({"model": "claude-haiku-4-5"}, 10, ("bg", "a", "background")),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, 10, ("deep", "b", "think")),
        # Claude Code's default on every request is not an explicit request to think.
        ({"thinking": {"type": "adaptive"}}, 10, ("main", "a", "default")),
        ({"thinking": {"type": "disabled"}}, 10, ("main", "a", "default")),
        ({"tools": WEB}, 10, ("web", "b", "webSearch")),
        ({}, 1001, ("long", "a", "longContext")),
        ({}, 1000, ("main", "a", "default")),
        # Long context wins over everything but an explicit choice.
        ({"model": "claude-haiku-4-5", "tools": WEB}, 5000, ("long", "a", "longContext")),
        ({"model": "deep,custom-model"}, 5000, ("deep", "custom-model", "explicit")),
        ({"model": " web , b "}, 10, ("web", "b", "explicit")),
        ({"model": "claude-haiku-4-5", "tools": WEB}, 10, ("bg", "a", "background")),
        (
            {"tools": WEB, "thinking": {"type": "enabled", "budget_tokens": 1}},
            10,
            ("web", "b", "webSearch"),
        ),
        # An image in the latest user turn wins over everything, an explicit choice too.
        ({"messages": IMAGE_TURN, "model": "deep,b"}, 5000, ("vision", "a", "image")),
        (
            {
                "messages": [
                    {"role": "user", "content": "read it"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "Read", "input": {}}],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t", "content": [IMAGE]}
                        ],
                    },
                ]
            },
            10,
            ("vision", "a", "image"),
        ),
        (
            {
                "messages": [
                    *IMAGE_TURN,
                    {"role": "assistant", "content": "a cat"},
                    {"role": "user", "content": "thanks"},
                ]
            },
            10,
            ("main", "a", "default"),
        ),
        # The subagent tag: after an explicit choice and long context, before the rest.
        ({"system": TAG, "model": "claude-haiku-4-5"}, 10, ("sub", "b", "subagent")),
        ({"system": TAG}, 5000, ("long", "a", "longContext")),
        ({"system": TAG, "model": "deep,b"}, 10, ("deep", "b", "explicit")),
        ({"messages": [{"role": "user", "content": TAG + "go"}]}, 10, ("sub", "b", "subagent")),
    ],
)
def test_rules_in_order(
    fields: dict[str, Any], tokens: int, expected: tuple[str, str, str]
) -> None:
    route, _ = router().choose(request(**fields), lambda: tokens)
    assert (route.provider.name, route.model, route.reason) == expected


def test_the_subagent_tag_is_removed_whichever_route_wins() -> None:
    tagged = request(
        system=[{"type": "text", "text": "You are Claude Code."}, {"type": "text", "text": TAG}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": f"{TAG}\nFind the bug."}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": f"{TAG} not the first user message: left alone"},
        ],
    )
    route, sent = router().choose(tagged, lambda: 5000)
    assert route.reason == "longContext"
    # A block that held only the tag is gone: upstreams refuse empty text blocks.
    assert sent.system == [TextBlock(text="You are Claude Code.")]
    assert sent.messages[0].content == [TextBlock(text="\nFind the bug.")]
    assert sent.messages[2] is tagged.messages[2]
    untouched = request(system="plain")
    assert router().choose(untouched, lambda: 0)[1] is untouched


def test_the_custom_router_comes_first(tmp_path: Path) -> None:
    def route(request: MessagesRequest, config: Config) -> str | None:
        return "deep,b" if request.max_tokens == 1 else None

    hooked = Router(router()._config, CustomRouter(tmp_path / "hook.py", route))
    chosen = hooked._choose(request(messages=IMAGE_TURN, max_tokens=1), lambda: 0)
    assert (chosen.provider.name, chosen.reason) == ("deep", "custom")
    assert hooked._choose(request(max_tokens=2), lambda: 0).reason == "default"


def test_token_count_is_only_taken_when_long_context_is_configured() -> None:
    calls = []

    def count() -> int:
        calls.append(1)
        return 10

    without = Router(
        msgspec.convert({"Providers": PROVIDERS, "Router": {"default": "main,a"}}, Config)
    )
    assert without._choose(request(), count).reason == "default"
    assert calls == []
    assert not without.needs_token_count
    assert router()._choose(request(), count).reason == "default"
    assert calls == [1]


def test_unset_rules_fall_back_to_default() -> None:
    only_default = Router(
        msgspec.convert({"Providers": PROVIDERS, "Router": {"default": "main,b"}}, Config)
    )
    for fields in (
        {"model": "claude-haiku-4-5"},
        {"tools": WEB},
        {"thinking": {"type": "enabled"}},
    ):
        assert only_default._choose(request(**fields), lambda: 10**6).reason == "default"


def test_explicit_unknown_provider_is_a_400() -> None:
    with pytest.raises(InvalidRequestError, match="provider 'nope', which is not configured"):
        router()._choose(request(model="nope,x"), lambda: 0)
    with pytest.raises(InvalidRequestError, match='expected "provider,model"'):
        router()._choose(request(model="main,"), lambda: 0)


def test_no_providers() -> None:
    with pytest.raises(NoProviderError, match="no provider is configured"):
        Router(Config())._choose(request(), lambda: 0)


async def test_each_route_reaches_its_provider(
    start_router: StartRouter, start_fake: StartFake
) -> None:
    def handler(request: Request) -> Reply:
        return Reply.json(wire.completion(f"from {request.json()['model']}"))

    fakes = {name: await start_fake(handler) for name in ("main", "bg", "long")}
    router_ = await start_router(
        {
            "Providers": [
                provider_config(fake, name=name, models=[f"{name}-model"])
                for name, fake in fakes.items()
            ],
            "Router": {
                "default": "main,main-model",
                "background": "bg,bg-model",
                "longContext": "long,long-model",
                "longContextThreshold": 2000,
            },
        }
    )
    long_text = "word " * 3000
    async with router_.client() as client:
        answers = {}
        for label, model, text in (
            ("default", "claude-sonnet-4-5", "hi"),
            ("background", "claude-haiku-4-5", "hi"),
            ("long", "claude-sonnet-4-5", long_text),
            ("explicit", "bg,any-model", "hi"),
        ):
            response = await client.post(
                "/v1/messages",
                json={
                    "model": model,
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": text}],
                },
            )
            assert response.status_code == 200, response.text
            answers[label] = response.json()["content"][0]["text"]
    assert answers == {
        "default": "from main-model",
        "background": "from bg-model",
        "long": "from long-model",
        "explicit": "from any-model",
    }
    # The request line is written once the response is out: give the last one a moment.
    with trio.fail_after(5):
        while (log := router_.log_file.read_text()).count("POST /v1/messages 200") < 4:
            await trio.sleep(0.01)
    assert "route=longContext provider=long model=long-model" in log
    assert "route=explicit provider=bg model=any-model" in log


def test_session_ids_are_cleaned_for_logs_and_usage() -> None:
    injected = request(metadata={"user_id": '{"session_id": "abc\\nPOST /v1/messages 200"}'})
    assert session_id([], injected) == "abc_POST_/v1/messages_200"
    assert session_id([(b"x-session-id", b"x" * 500)], None) == "x" * 128
    assert (
        session_id([(b"x-claude-code-session-id", b"u-1"), (b"x-session-id", b"s")], None) == "u-1"
    )
    assert session_id([(b"x-session-id", b"s")], request(metadata={"user_id": "plain"})) == "s"
    assert session_id([], request()) == "default"

"""The DeepSeek fake's own rules (tests/fake_deepseek.py): for each, a request DeepSeek rejects,
which the fake must reject with DeepSeek's error body, and its nearest valid twin, accepted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fake_deepseek import MODELS, FakeDeepSeek
from tests.fakeserver import Reply, Request

KEY = "sk-deepseek-fake-0123456789"
CALL_ID = "call_00_abcdefghijklmnopqrstuv"


def body(model: str = "deepseek-chat", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}


def send(data: Any, models: tuple[str, ...] = MODELS) -> Reply:
    fake = FakeDeepSeek(KEY, list(models), "true")
    raw = json.dumps(data).encode()
    return fake(Request("POST", fake.path, {"authorization": f"Bearer {KEY}"}, raw))


def error_of(reply: Reply) -> str:
    assert reply.status == 400, reply.chunks
    error = json.loads(reply.chunks[0])["error"]
    # DeepSeek's error body (tests/fixtures/deepseek/error_balance.json).
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "invalid_request_error"
    message: str = error["message"]
    return message


def tool_turn(**assistant: Any) -> list[Any]:
    call = {"id": CALL_ID, "type": "function", "function": {"name": "Bash", "arguments": "{}"}}
    return [
        {"role": "user", "content": "run it"},
        {"role": "assistant", "content": "", "tool_calls": [call], **assistant},
        {"role": "tool", "tool_call_id": CALL_ID, "content": "done"},
    ]


def image(url: str = "data:image/png;base64,iVBORw0KGgo=") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


RULES: dict[str, tuple[Any, Any, str]] = {
    "max_tokens is an integer": (
        body(max_tokens=1.5),
        body(max_tokens=2),
        "the valid range of max_tokens is [1, 8192]",
    ),
    "max_tokens of deepseek-chat": (body(max_tokens=8193), body(max_tokens=8192), "[1, 8192]"),
    "max_tokens of deepseek-chat thinking": (
        body(max_tokens=65537, thinking={"type": "enabled"}),
        body(max_tokens=65536, thinking={"type": "enabled"}),
        "[1, 65536]",
    ),
    "max_tokens of deepseek-reasoner": (
        body("deepseek-reasoner", max_tokens=65537),
        body("deepseek-reasoner", max_tokens=65536),
        "[1, 65536]",
    ),
    "max_tokens of deepseek-v4-pro": (
        body("deepseek-v4-pro", max_tokens=384 * 1024 + 1),
        body("deepseek-v4-pro", max_tokens=384 * 1024),
        "[1, 393216]",
    ),
    "max_tokens of deepseek-flash": (
        body("deepseek-flash", max_tokens=0),
        body("deepseek-flash", max_tokens=100_000),
        "[1, 393216]",
    ),
    "model names": (body("deepseek-v3"), body("deepseek-flash"), "Model Not Exist"),
    "text only: no image_url parts": (
        body(messages=[{"role": "user", "content": [image()]}]),
        body(messages=[{"role": "user", "content": [{"type": "text", "text": "a picture"}]}]),
        "unknown variant `image_url`, expected `text`",
    ),
    "thinking toggle values": (
        body(thinking={"type": "adaptive"}),
        body(thinking={"type": "disabled"}),
        "thinking.type must be one of: enabled, disabled",
    ),
    "reasoning_content back on thinking tool-call turns": (
        body("deepseek-reasoner", messages=tool_turn()),
        body("deepseek-reasoner", messages=tool_turn(reasoning_content="I ran it.")),
        "Missing `reasoning_content` field in the assistant message at message index 1",
    ),
    "DeepSeek's efforts": (
        body("deepseek-v4-pro", reasoning_effort="extreme", thinking={"type": "enabled"}),
        body("deepseek-v4-pro", reasoning_effort="max", thinking={"type": "enabled"}),
        "Invalid value: 'extreme'",
    ),
    "at most 16 stop strings": (
        body(stop=[str(i) for i in range(17)]),
        body(stop=[str(i) for i in range(16)]),
        "'stop': array too long",
    ),
    "OpenAI's field rules apply": (
        body(temperature=2.5),
        body(temperature=2),
        "decimal above maximum value",
    ),
    "OpenRouter's fields are not DeepSeek's": (
        body(reasoning={"effort": "high"}),
        body(thinking={"type": "enabled"}),
        "Unrecognized request argument supplied: reasoning",
    ),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_rule(rule: str) -> None:
    bad, good, words = RULES[rule]
    assert words in error_of(send(bad))
    assert send(good).status == 200, send(good).chunks


def test_a_model_the_account_does_not_serve_is_rejected() -> None:
    assert error_of(send(body("deepseek-v4-pro"), models=("deepseek-chat",))) == "Model Not Exist"


def test_wrong_key_is_deepseeks_401() -> None:
    fake = FakeDeepSeek(KEY, list(MODELS), "true")
    raw = json.dumps(body()).encode()
    reply = fake(Request("POST", fake.path, {"authorization": "Bearer sk-wrong"}, raw))
    assert reply.status == 401
    assert json.loads(reply.chunks[0])["error"]["type"] == "authentication_error"

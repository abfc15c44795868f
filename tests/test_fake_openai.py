"""The OpenAI fake's own rules (tests/fake_openai.py): for each, a request the real API rejects,
which the fake must reject with OpenAI's error body, and its nearest valid twin, which it must
accept. A fake that accepts more than the provider lets a router bug through to users."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fake_openai import FakeChatProvider
from tests.fakeserver import Reply, Request

KEY = "sk-or-fake-0123456789"
MODEL = "openai/gpt-5"
CALL_ID = "call_" + "a" * 35  # 40 characters, OpenAI's limit
BASH: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "Bash",
        "description": "Run a command",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
    },
}


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi"},
        ],
        "max_tokens": 100,
    }
    return {**base, **fields}


def turn(call: dict[str, Any] | None = None, **result: Any) -> list[Any]:
    """A tool round trip: the assistant's call, then the tool's answer."""
    call = call or {
        "id": CALL_ID,
        "type": "function",
        "function": {"name": "Bash", "arguments": '{"command": "ls"}'},
    }
    answer = {"role": "tool", "tool_call_id": CALL_ID, "content": "ok", **result}
    return [
        {"role": "user", "content": "run ls"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        answer,
    ]


def send(data: Any, raw: bytes | None = None) -> Reply:
    fake = FakeChatProvider(KEY, [MODEL], "true")
    request = Request(
        "POST",
        FakeChatProvider.path,
        {"authorization": f"Bearer {KEY}", "content-type": "application/json"},
        raw if raw is not None else json.dumps(data).encode(),
    )
    return fake(request)


def error_of(reply: Reply) -> dict[str, Any]:
    assert reply.status == 400, reply.chunks
    error: dict[str, Any] = json.loads(reply.chunks[0])["error"]
    # https://platform.openai.com/docs/guides/error-codes: every error body has these four.
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    return error


def call(**function: Any) -> dict[str, Any]:
    return {
        "id": CALL_ID,
        "type": "function",
        "function": {"name": "Bash", "arguments": "{}", **function},
    }


def _long_id_turn() -> list[Any]:
    """The 66-character id (a Gemini call id with its signature) the audit found accepted."""
    long_id = "toolu_" + "b" * 60
    messages = turn(call())
    messages[1]["tool_calls"][0]["id"] = long_id
    messages[2]["tool_call_id"] = long_id
    return messages


# rule -> (rejected body, accepted body, words of the error)
RULES: dict[str, tuple[Any, Any, str]] = {
    "unknown top-level field": (
        body(temprature=1),
        body(temperature=1),
        "Unrecognized request argument supplied: temprature",
    ),
    "model is required": (
        {"messages": body()["messages"]},
        body(),
        "Missing required parameter: 'model'",
    ),
    "temperature at most 2": (body(temperature=5), body(temperature=2), "decimal above maximum"),
    "temperature at least 0": (body(temperature=-0.1), body(temperature=0), "below minimum"),
    "temperature is a number": (body(temperature="1"), body(temperature=1.0), "expected a decimal"),
    "top_p at most 1": (body(top_p=1.5), body(top_p=1), "decimal above maximum"),
    "max_tokens at least 1": (body(max_tokens=0), body(max_tokens=1), "integer below minimum"),
    "max_tokens is an integer": (body(max_tokens=1.5), body(max_tokens=2), "expected an integer"),
    "max_tokens is not a boolean": (body(max_tokens=True), body(max_tokens=1), "an integer"),
    "max_completion_tokens at least 1": (
        body(max_completion_tokens=0),
        body(max_completion_tokens=64),
        "'max_completion_tokens': integer below minimum",
    ),
    "n in 1..128": (body(n=129), body(n=128), "'n': integer above maximum"),
    "penalties in -2..2": (
        body(presence_penalty=2.5),
        body(presence_penalty=-2),
        "'presence_penalty': decimal above maximum",
    ),
    "at most 4 stop sequences": (
        body(stop=["a", "b", "c", "d", "e"]),
        body(stop=["a", "b", "c", "d"]),
        "'stop': array too long",
    ),
    "user at most 64 characters": (body(user="u" * 65), body(user="u" * 64), "string too long"),
    "stream_options needs stream": (
        body(stream_options={"include_usage": True}),
        body(stream=True, stream_options={"include_usage": True}),
        "only allowed when 'stream' is enabled",
    ),
    "reasoning_effort values": (
        body(reasoning_effort="max"),
        body(reasoning_effort="xhigh"),
        "Invalid value: 'max'",
    ),
    "a message is an object": (
        body(messages=["hi"]),
        body(messages=[{"role": "user", "content": "hi"}]),
        "Invalid type for 'messages[0]': expected an object, but got string",
    ),
    "a null message is a 400": (
        body(messages=[None]),
        body(messages=[{"role": "user", "content": "hi"}]),
        "expected an object, but got null",
    ),
    "messages is not empty": (body(messages=[]), body(), "empty array"),
    "roles": (
        body(messages=[{"role": "human", "content": "hi"}]),
        body(messages=[{"role": "developer", "content": "hi"}]),
        "Invalid value: 'human'",
    ),
    "fields of each role": (
        body(messages=[{"role": "user", "content": "hi", "tool_call_id": "x"}]),
        body(messages=[{"role": "user", "content": "hi", "name": "ann"}]),
        "Unknown parameter: 'messages[0].tool_call_id'",
    ),
    "a user message has content": (
        body(messages=[{"role": "user"}]),
        body(messages=[{"role": "user", "content": ""}]),
        "Missing required parameter: 'messages[0].content'",
    ),
    "content part types": (
        body(messages=[{"role": "user", "content": [{"type": "image", "url": "x"}]}]),
        body(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:x"}}],
                }
            ]
        ),
        "Invalid value: 'image'",
    ),
    "content part fields": (
        body(messages=[{"role": "user", "content": [{"type": "text", "text": "a", "b": 1}]}]),
        body(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}]}]),
        "Unknown parameter: 'messages[0].content[0].b'",
    ),
    "an assistant turn has content or tool calls": (
        body(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": None}]),
        body(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]),
        "expected a string, got null",
    ),
    "tool_call id at most 40 characters": (
        body(messages=_long_id_turn()),
        body(messages=turn()),
        "string too long. Expected a string with maximum length 40, but got a string with "
        "length 66",
    ),
    "tool_call arguments are a string": (
        body(messages=turn(call(arguments={"command": "ls"}))),
        body(messages=turn(call(arguments='{"command": "ls"}'))),
        "'messages[1].tool_calls[0].function.arguments': expected a string, but got object",
    ),
    "tool_call function names": (
        body(messages=turn(call(name="mcp/run"))),
        body(messages=turn(call(name="mcp__server__run-it"))),
        "string does not match pattern",
    ),
    "a tool message has content": (
        body(messages=turn(content=None)),
        body(messages=turn(content=[{"type": "text", "text": "ok"}])),
        "Missing required parameter: 'messages[2].content'",
    ),
    "a tool message's content is a string or text parts": (
        body(messages=turn(content={"text": "ok"})),
        body(messages=turn(content="ok")),
        "expected a string or an array",
    ),
    "a tool message answers a preceding call": (
        body(messages=turn(tool_call_id="call_other")),
        body(messages=turn(tool_call_id=CALL_ID)),
        "must be a response to a preceeding message with 'tool_calls'",
    ),
    "each tool call is answered before the next turn": (
        body(messages=[*turn()[:2], {"role": "user", "content": "go on"}]),
        body(messages=[*turn(), {"role": "user", "content": "go on"}]),
        "did not have response messages: " + CALL_ID,
    ),
    "tool names": (
        body(tools=[{**BASH, "function": {**BASH["function"], "name": "run command"}}]),
        body(tools=[{**BASH, "function": {**BASH["function"], "name": "x" * 64}}]),
        "'tools[0].function.name': string does not match pattern",
    ),
    "tool names at most 64 characters": (
        body(tools=[{**BASH, "function": {**BASH["function"], "name": "x" * 65}}]),
        body(tools=[BASH]),
        "does not match pattern",
    ),
    "tool parameters are an object schema": (
        body(tools=[{**BASH, "function": {**BASH["function"], "parameters": {"type": "string"}}}]),
        body(tools=[{**BASH, "function": {**BASH["function"], "parameters": {"type": "object"}}}]),
        "schema must be a JSON Schema of 'type: \"object\"'",
    ),
    "tool fields": (
        body(tools=[{**BASH, "function": {**BASH["function"], "input_schema": {}}}]),
        body(tools=[{**BASH, "function": {**BASH["function"], "strict": False}}]),
        "Unknown parameter: 'tools[0].function.input_schema'",
    ),
    "tool_choice needs tools": (
        body(tool_choice="required"),
        body(tools=[BASH], tool_choice="required"),
        "'tool_choice' is only allowed when 'tools' are specified",
    ),
    "tool_choice names a declared tool": (
        body(tools=[BASH], tool_choice={"type": "function", "function": {"name": "Read"}}),
        body(tools=[BASH], tool_choice={"type": "function", "function": {"name": "Bash"}}),
        "function 'Read' is not one of the functions",
    ),
    "OpenRouter's reasoning object": (
        body(reasoning={"effort": "max"}),
        body(reasoning={"effort": "high"}),
        "Invalid value: 'max'",
    ),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_rule(rule: str) -> None:
    bad, good, words = RULES[rule]
    error = error_of(send(bad))
    assert words in error["message"], error
    assert send(good).status == 200, send(good).chunks


def test_errors_name_the_parameter_and_code_as_openai_does() -> None:
    error = error_of(send(body(temperature=5)))
    assert error == {
        "message": "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
        "but got 5 instead.",
        "type": "invalid_request_error",
        "param": "temperature",
        "code": "decimal_above_max_value",
    }


def test_a_body_that_is_not_json_or_not_an_object_is_a_400() -> None:
    assert "could not parse the JSON body" in error_of(send(None, raw=b"{"))["message"]
    assert "expected an object" in error_of(send([1, 2]))["message"]


def test_wrong_key_is_a_401_and_unknown_model_a_404() -> None:
    fake = FakeChatProvider(KEY, [MODEL], "true")
    raw = json.dumps(body()).encode()
    wrong = fake(Request("POST", fake.path, {"authorization": "Bearer nope"}, raw))
    assert wrong.status == 401
    assert json.loads(wrong.chunks[0])["error"]["code"] == "invalid_api_key"
    other = send(body(model="openai/gpt-4"))
    assert other.status == 404
    assert json.loads(other.chunks[0])["error"]["code"] == "model_not_found"

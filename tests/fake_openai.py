"""A fake OpenAI-compatible provider that plays a model doing one Bash tool round trip.

It speaks OpenRouter's ``POST /api/v1/chat/completions`` (OpenAI's request, response and stream
shapes, https://platform.openai.com/docs/api-reference/chat, plus OpenRouter's ``reasoning``
object, https://openrouter.ai/docs/use-cases/reasoning-tokens) and answers like a model would,
from the request alone: with no tool result in the conversation it calls ``Bash`` with the
configured command; once the tool's result comes back it answers with text quoting that result.

It rejects, with the status and error body OpenAI gives, what OpenAI rejects, so a router that
translates a Claude Code conversation wrongly fails here as it would in production. Each
rejection is kept in ``rejected`` for the test's failure message.

Subclasses (tests/fake_deepseek.py) change the path, the reasoning field and add their checks.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tests import openai_wire as wire
from tests.fakeserver import Reply, Request

JSON = dict[str, Any]

# https://platform.openai.com/docs/api-reference/chat/create#chat-create-tools: "a-z, A-Z, 0-9,
# or contain underscores and dashes, with a maximum length of 64".
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class Rejection(Exception):
    """A 4xx the real API would answer; ``kind`` is its error type, ``param`` and ``code`` the
    fields OpenAI's error body carries beside the message."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code


# --- OpenAI's validation errors, worded and coded as the API words them ------------------------
# (e.g. "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 5
# instead.", code "decimal_above_max_value"; "Invalid type for 'n': expected an integer, but got a
# string instead.", code "invalid_type"; "Missing required parameter: 'messages[0].content'.",
# code "missing_required_parameter").

Rule = Callable[[Any, str], None]
_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), "an unknown type").removeprefix("a ").removeprefix("an ")


def _type(where: str, expected: str, value: Any) -> Rejection:
    return Rejection(
        400,
        f"Invalid type for '{where}': expected {expected}, but got {_type_name(value)} instead.",
        param=where,
        code="invalid_type",
    )


def _missing(where: str) -> Rejection:
    return Rejection(
        400,
        f"Missing required parameter: '{where}'.",
        param=where,
        code="missing_required_parameter",
    )


def _unknown(where: str) -> Rejection:
    return Rejection(400, f"Unknown parameter: '{where}'.", param=where, code="unknown_parameter")


def _unanswered(pending: list[str], where: str) -> Rejection:
    return Rejection(
        400,
        "An assistant message with 'tool_calls' must be followed by tool messages responding to "
        "each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(pending),
        param=where,
    )


def _listed(values: Sequence[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def _object(value: Any, where: str, fields: Collection[str] | None) -> None:
    """An object (a message that is a string or null is a 400, never a crash) with only
    ``fields``, when given."""
    if not isinstance(value, dict):
        raise _type(where, "an object", value)
    unknown = [name for name in value if name not in fields] if fields is not None else []
    if unknown:
        raise _unknown(f"{where}.{unknown[0]}")


def _string(value: Any, where: str, *, max_length: int | None = None) -> None:
    if not isinstance(value, str):
        raise _type(where, "a string", value)
    if max_length is not None and len(value) > max_length:
        raise Rejection(
            400,
            f"Invalid '{where}': string too long. Expected a string with maximum length "
            f"{max_length}, but got a string with length {len(value)} instead.",
            param=where,
            code="string_above_max_length",
        )


def _boolean(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise _type(where, "a boolean", value)


def _array(value: Any, where: str, *, max_length: int | None = None) -> None:
    if not isinstance(value, list):
        raise _type(where, "an array", value)
    if max_length is not None and len(value) > max_length:
        raise Rejection(
            400,
            f"Invalid '{where}': array too long. Expected an array with maximum length "
            f"{max_length}, but got an array with length {len(value)} instead.",
            param=where,
            code="array_above_max_length",
        )


def _enum(value: Any, where: str, values: Sequence[str]) -> None:
    if value not in values:
        raise Rejection(
            400,
            f"Invalid value: '{value}'. Supported values are: {_listed(values)}.",
            param=where,
            code="invalid_value",
        )


def number_rule(low: float | None, high: float | None, *, integer: bool = False) -> Rule:
    """A decimal (or an integer) in [low, high]; a boolean is neither, as in JSON Schema."""
    kind = "integer" if integer else "decimal"

    def rule(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise _type(where, "an integer" if integer else "a decimal", value)
        number = float(value)
        if low is not None and number < low:
            raise Rejection(
                400,
                f"Invalid '{where}': {kind} below minimum value. Expected a value >= {low:g}, "
                f"but got {value} instead.",
                param=where,
                code=f"{kind}_below_min_value",
            )
        if high is not None and number > high:
            raise Rejection(
                400,
                f"Invalid '{where}': {kind} above maximum value. Expected a value <= {high:g}, "
                f"but got {value} instead.",
                param=where,
                code=f"{kind}_above_max_value",
            )

    return rule


def one_of(*values: str) -> Rule:
    return lambda value, where: _enum(value, where, values)


def _string_rule(max_length: int | None = None) -> Rule:
    return lambda value, where: _string(value, where, max_length=max_length)


def stop_rule(max_items: int) -> Rule:
    def rule(value: Any, where: str) -> None:
        if isinstance(value, str) or value is None:
            return
        _array(value, where, max_length=max_items)
        for i, item in enumerate(value):
            _string(item, f"{where}[{i}]")

    return rule


def _shape(fields: dict[str, Rule | None], required: Collection[str] = ()) -> Rule:
    """An object with only ``fields``, each checked by its rule."""

    def rule(value: Any, where: str) -> None:
        _object(value, where, fields)
        for name in required:
            if name not in value:
                raise _missing(f"{where}.{name}")
        for name, item in value.items():
            check = fields[name]
            if check is not None:
                check(item, f"{where}.{name}")

    return rule


def _function_name(value: Any, where: str) -> None:
    _string(value, where)
    if not _FUNCTION_NAME.match(value):
        raise Rejection(
            400,
            f"Invalid '{where}': string does not match pattern. Expected a string that matches "
            "the pattern '^[a-zA-Z0-9_-]+$'.",
            param=where,
            code="invalid_value",
        )


def _parameters(schema: Any, name: str) -> None:
    """https://platform.openai.com/docs/guides/function-calling#defining-functions: parameters
    are a JSON Schema object; OpenAI answers 400 ``invalid_function_parameters`` otherwise."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind != "object":
        raise Rejection(
            400,
            f"Invalid schema for function '{name}': schema must be a JSON Schema of "
            f"'type: \"object\"', got 'type: \"{kind}\"'.",
            param="tools",
            code="invalid_function_parameters",
        )


_BOOL: Rule = _boolean
_ANY_OBJECT: Rule = lambda value, where: _object(value, where, None)  # noqa: E731
_PENALTY = number_rule(-2, 2)

# The request body's fields, from https://platform.openai.com/docs/api-reference/chat/create;
# None: accepted, not checked further (objects the router never sends).
OPENAI_FIELDS: dict[str, Rule | None] = {
    "model": _string_rule(),
    "messages": lambda value, where: _array(value, where),
    "audio": None,
    "frequency_penalty": _PENALTY,
    "function_call": None,
    "functions": None,
    "logit_bias": _ANY_OBJECT,
    "logprobs": _BOOL,
    "max_completion_tokens": number_rule(1, None, integer=True),
    "max_tokens": number_rule(1, None, integer=True),
    "metadata": _ANY_OBJECT,
    "modalities": None,
    "n": number_rule(1, 128, integer=True),
    "parallel_tool_calls": _BOOL,
    "prediction": None,
    "presence_penalty": _PENALTY,
    "prompt_cache_key": _string_rule(),
    "prompt_cache_retention": None,
    "reasoning_effort": one_of("none", "minimal", "low", "medium", "high", "xhigh"),
    "response_format": _shape(
        {
            "type": one_of("text", "json_object", "json_schema"),
            "json_schema": _shape(
                {
                    "name": _string_rule(64),
                    "description": _string_rule(),
                    "schema": _ANY_OBJECT,
                    "strict": None,
                },
                required=("name",),
            ),
        },
        required=("type",),
    ),
    "safety_identifier": _string_rule(64),
    "seed": number_rule(None, None, integer=True),
    "service_tier": one_of("auto", "default", "flex", "scale", "priority"),
    # "Up to 4 sequences where the API will stop generating further tokens."
    "stop": stop_rule(4),
    "store": _BOOL,
    "stream": _BOOL,
    "stream_options": _shape({"include_usage": _BOOL, "include_obfuscation": _BOOL}),
    "temperature": number_rule(0, 2),
    "tool_choice": lambda value, where: (
        _enum(value, where, ("none", "auto", "required"))
        if isinstance(value, str)
        else _shape(
            {
                "type": one_of("function"),
                "function": _shape({"name": _string_rule()}, required=("name",)),
            },
            required=("type", "function"),
        )(value, where)
    ),
    "tools": None,  # check_tools
    "top_logprobs": number_rule(0, 20, integer=True),
    "top_p": number_rule(0, 1),
    # "Invalid 'user': string too long. Expected a string with maximum length 64" (OpenAI).
    "user": _string_rule(64),
    "verbosity": one_of("low", "medium", "high"),
    "web_search_options": None,
}
# OpenRouter's additions (https://openrouter.ai/docs/api-reference/parameters and
# https://openrouter.ai/docs/use-cases/reasoning-tokens).
OPENROUTER_FIELDS: dict[str, Rule | None] = {
    **OPENAI_FIELDS,
    "reasoning": _shape(
        {
            "effort": one_of("xhigh", "high", "medium", "low", "minimal", "none"),
            "max_tokens": number_rule(1, None, integer=True),
            "exclude": _BOOL,
            "enabled": _BOOL,
        }
    ),
    "provider": _ANY_OBJECT,
    "transforms": None,
    "models": None,
    "route": None,
    "usage": _ANY_OBJECT,
    "plugins": None,
    "top_k": number_rule(0, None, integer=True),
    "repetition_penalty": number_rule(0, 2),
    "min_p": number_rule(0, 1),
    "top_a": number_rule(0, 1),
}

# Every message field of any role; then each role's own
# (https://platform.openai.com/docs/api-reference/chat/create#chat-create-messages).
_MESSAGE_FIELDS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset(
        {"role", "content", "name", "refusal", "audio", "tool_calls", "function_call"}
    ),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}

TEXT_PARTS: dict[str, JSON] = {"text": {"type": None, "text": _string_rule()}}
_ASSISTANT_PARTS: dict[str, JSON] = {
    **TEXT_PARTS,
    "refusal": {"type": None, "refusal": _string_rule()},
}
USER_PARTS: dict[str, JSON] = {
    **TEXT_PARTS,
    "image_url": {
        "type": None,
        "image_url": _shape(
            {"url": _string_rule(), "detail": one_of("auto", "low", "high")},
            required=("url",),
        ),
    },
    "input_audio": {
        "type": None,
        "input_audio": _shape(
            {"data": _string_rule(), "format": one_of("wav", "mp3")},
            required=("data", "format"),
        ),
    },
    "file": {
        "type": None,
        "file": _shape(
            {"file_data": _string_rule(), "file_id": _string_rule(), "filename": _string_rule()}
        ),
    },
}


@dataclass(frozen=True)
class Usage:
    """Token counts one answer reports; ``cached`` is part of ``prompt`` as OpenAI counts it."""

    prompt: int
    completion: int
    cached: int = 0


@dataclass
class Answer:
    """What the fake answered to one accepted request."""

    request: Request
    kind: str  # "tool_call" or "text"
    text: str
    usage: Usage
    call_id: str = ""
    reasoning: str = ""
    cut: bool = False  # the stream was cut after its first chunk


@dataclass
class FakeChatProvider:
    api_key: str
    models: Sequence[str]
    command: str
    # One per answer, in order; the last repeats.
    usages: Sequence[Usage] = (Usage(2048, 41, 1536), Usage(2301, 17, 2048))
    # Reasoning text streamed before each answer, or "" for none.
    reasoning: str = ""
    # Cut the first streaming response right after its first chunk (a broken connection).
    cut_first_stream: bool = False
    answers: list[Answer] = field(default_factory=list)
    rejected: list[tuple[Request, Rejection]] = field(default_factory=list)

    path: ClassVar[str] = "/api/v1/chat/completions"
    # The delta and message field that carries reasoning text.
    reasoning_field: ClassVar[str] = "reasoning"
    # Sent before the first event while the upstream model starts; clients must skip comments
    # (https://openrouter.ai/docs/api-reference/streaming#additional-information).
    keep_alive: ClassVar[bytes] = b": OPENROUTER PROCESSING\n\n"
    # The request fields this API takes, and each role's fields beyond OpenAI's: OpenRouter
    # keeps an assistant turn's reasoning
    # (https://openrouter.ai/docs/use-cases/reasoning-tokens#preserving-reasoning-blocks).
    fields: ClassVar[dict[str, Rule | None]] = OPENROUTER_FIELDS
    message_fields: ClassVar[dict[str, frozenset[str]]] = {
        "assistant": frozenset({"reasoning", "reasoning_details"})
    }
    user_parts: ClassVar[dict[str, JSON]] = USER_PARTS

    def __call__(self, request: Request) -> Reply:
        try:
            body = self.check(request)
        except Rejection as rejection:
            self.rejected.append((request, rejection))
            return self.error_reply(rejection)
        return self.answer(request, body)

    # --- what the real API enforces ---------------------------------------------------------

    def check(self, request: Request) -> JSON:
        if request.method != "POST" or request.path != self.path:
            raise Rejection(404, f"Unknown request URL: {request.method} {request.path}")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            # https://platform.openai.com/docs/guides/error-codes#api-errors
            raise Rejection(401, "Incorrect API key provided.", code="invalid_api_key")
        try:
            body = request.json()
        except ValueError:
            raise Rejection(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise Rejection(400, "Invalid type for request body: expected an object.")
        for name in body:
            if name not in self.fields:
                # OpenAI's answer to a top-level field it does not know (param and code null).
                raise Rejection(400, f"Unrecognized request argument supplied: {name}")
        for name in ("model", "messages"):
            if name not in body:
                raise _missing(name)
        for name, value in body.items():
            rule = self.fields[name]
            if rule is not None:
                rule(value, name)
        self.check_model(body["model"])
        self.check_messages(body["messages"])
        self.check_tools(body)
        if "stream_options" in body and not body.get("stream"):
            raise Rejection(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        return body

    def check_model(self, model: Any) -> None:
        if model not in self.models:
            raise Rejection(404, f"The model `{model}` does not exist.", code="model_not_found")

    def check_messages(self, messages: list[Any]) -> None:
        """Each message's fields for its role, then the order rules of tool calls."""
        if not messages:
            raise Rejection(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but "
                "got an empty array instead.",
                param="messages",
                code="empty_array",
            )
        pending: list[str] = []  # tool_call ids still waiting for their tool message
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            _object(message, where, None)  # the role decides its fields, below
            role = message.get("role")
            if role not in _ROLES:
                raise Rejection(
                    400,
                    f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                    f"'user', 'function', 'tool', and 'developer'.",
                    param=f"{where}.role",
                    code="invalid_value",
                )
            allowed = _MESSAGE_FIELDS[role] | self.message_fields.get(role, frozenset())
            for name in message:
                if name not in allowed:
                    raise _unknown(f"{where}.{name}")
            content = message.get("content")
            if role == "tool":
                call_id = message.get("tool_call_id")
                if call_id is None:
                    raise _missing(f"{where}.tool_call_id")
                _string(call_id, f"{where}.tool_call_id")
                if call_id not in pending:
                    # OpenAI's wording (sic), 400 invalid_request_error.
                    raise Rejection(
                        400,
                        "Invalid parameter: messages with role 'tool' must be a response to a "
                        "preceeding message with 'tool_calls'.",
                        param=f"{where}.role",
                    )
                pending.remove(call_id)
                self.check_content(content, where, TEXT_PARTS, required=True)
                continue
            if pending:
                raise _unanswered(pending, f"{where}.role")
            if role == "assistant":
                calls = message.get("tool_calls")
                pending = self.check_tool_calls(calls, where) if calls is not None else []
                if content is None and not calls:
                    raise Rejection(
                        400,
                        f"Invalid value for 'content': expected a string, got null. "
                        f"({where}.content)",
                        param=f"{where}.content",
                    )
                if content is not None:
                    self.check_content(content, where, _ASSISTANT_PARTS, required=False)
            else:
                parts = TEXT_PARTS if role in ("system", "developer") else self.user_parts
                self.check_content(content, where, parts, required=True)
            if "name" in message:
                _string(message["name"], f"{where}.name")
        if pending:
            raise _unanswered(pending, "messages")

    def check_content(
        self, content: Any, where: str, parts: dict[str, JSON], *, required: bool
    ) -> None:
        """A string, or an array of the part types the role may send."""
        at = f"{where}.content"
        if content is None:
            if required:
                raise _missing(at)
            return
        if isinstance(content, str):
            return
        if not isinstance(content, list):
            raise _type(at, "a string or an array", content)
        for j, part in enumerate(content):
            part_at = f"{at}[{j}]"
            _object(part, part_at, None)
            kind = part.get("type")
            if kind not in parts:
                raise self.unknown_part(kind, f"{part_at}.type", list(parts))
            self.check_part(part, part_at, parts[kind])

    def unknown_part(self, kind: Any, where: str, kinds: list[str]) -> Rejection:
        return Rejection(
            400,
            f"Invalid value: '{kind}'. Supported values are: {_listed(kinds)}.",
            param=where,
            code="invalid_value",
        )

    def check_part(self, part: JSON, where: str, fields: JSON) -> None:
        for name in part:
            if name not in fields:
                raise _unknown(f"{where}.{name}")
        for name, rule in fields.items():
            if name in part and rule is not None:
                rule(part[name], f"{where}.{name}")

    def check_tool_calls(self, calls: Any, where: str) -> list[str]:
        """An assistant turn's ``tool_calls``; returns their ids, each needing an answer."""
        at = f"{where}.tool_calls"
        if not isinstance(calls, list):
            raise _type(at, "an array", calls)
        ids = []
        for j, call in enumerate(calls):
            call_at = f"{at}[{j}]"
            _object(call, call_at, {"id", "type", "function"})
            for name in ("id", "type", "function"):
                if name not in call:
                    raise _missing(f"{call_at}.{name}")
            # "Invalid 'messages[1].tool_calls[0].id': string too long. Expected a string with
            # maximum length 40, but got a string with length 66 instead." (OpenAI, 400)
            _string(call["id"], f"{call_at}.id", max_length=40)
            _enum(call["type"], f"{call_at}.type", ("function",))
            function = call["function"]
            _object(function, f"{call_at}.function", {"name", "arguments"})
            for name in ("name", "arguments"):
                if name not in function:
                    raise _missing(f"{call_at}.function.{name}")
            _function_name(function["name"], f"{call_at}.function.name")
            # The arguments are a JSON string, not an object
            # (https://platform.openai.com/docs/api-reference/chat/create#chat-create-messages).
            _string(function["arguments"], f"{call_at}.function.arguments")
            ids.append(call["id"])
        return ids

    def check_tools(self, body: JSON) -> None:
        tools = body.get("tools")
        if tools is None:
            if "tool_choice" in body and body["tool_choice"] != "none":
                raise Rejection(
                    400,
                    "Invalid value for 'tool_choice': 'tool_choice' is only allowed when "
                    "'tools' are specified.",
                    param="tool_choice",
                )
            return
        _array(tools, "tools", max_length=128)
        names = []
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            _object(tool, where, {"type", "function"})
            _enum(tool.get("type"), f"{where}.type", ("function",))
            if "function" not in tool:
                raise _missing(f"{where}.function")
            function = tool["function"]
            _object(function, f"{where}.function", {"name", "description", "parameters", "strict"})
            if "name" not in function:
                raise _missing(f"{where}.function.name")
            _function_name(function["name"], f"{where}.function.name")
            names.append(function["name"])
            if "description" in function:
                _string(function["description"], f"{where}.function.description")
            if "strict" in function and function["strict"] is not None:
                _boolean(function["strict"], f"{where}.function.strict")
            if "parameters" in function:
                _parameters(function["parameters"], function["name"])
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            named = (choice.get("function") or {}).get("name")
            if named not in names:
                raise Rejection(
                    400,
                    f"Invalid value for 'tool_choice': function '{named}' is not one of the "
                    "functions in 'tools'.",
                    param="tool_choice",
                )

    def thinking(self, body: JSON) -> bool:
        """Whether this request asks the model to reason (OpenRouter's ``reasoning``)."""
        return bool(body.get("reasoning"))

    def error_reply(self, rejection: Rejection) -> Reply:
        return wire.error_reply(
            rejection.status,
            rejection.message,
            rejection.kind,
            param=rejection.param,
            code=rejection.code,
        )

    # --- the model --------------------------------------------------------------------------

    def answer(self, request: Request, body: JSON) -> Reply:
        usage = self.usages[min(len(self.answers), len(self.usages) - 1)]
        result = tool_result(body["messages"])
        reasoning = self.reasoning if self.thinking(body) else ""
        if result is None and any(
            (t.get("function") or {}).get("name") == "Bash" for t in body.get("tools") or ()
        ):
            answer = Answer(
                request,
                "tool_call",
                "Writing the marker file.",
                usage,
                call_id="call_" + secrets.token_hex(12),
                reasoning=reasoning,
            )
        else:
            answer = Answer(request, "text", final_text(result or ""), usage, reasoning=reasoning)
        stream = bool(body.get("stream"))
        answer.cut = stream and self.cut_first_stream and not any(a.cut for a in self.answers)
        self.answers.append(answer)
        if not stream:
            return Reply.json(self.completion(body, answer), headers=wire.HEADERS)
        events = self.events(body, answer)
        frames = [self.keep_alive, *wire.sse(events)]
        if answer.cut:
            return wire.stream_reply(frames[:2], then="cut")
        return wire.stream_reply(frames)

    def events(self, body: JSON, answer: Answer) -> list[JSON]:
        model = body["model"]
        events = [wire.chunk({"role": "assistant", "content": ""})]
        if answer.reasoning:
            half = len(answer.reasoning) // 2
            events += [
                wire.chunk({self.reasoning_field: part})
                for part in (answer.reasoning[:half], answer.reasoning[half:])
            ]
        half = len(answer.text) // 2
        events += [
            wire.chunk({"content": answer.text[:half]}),
            wire.chunk({"content": answer.text[half:]}),
        ]
        if answer.kind == "tool_call":
            arguments = json.dumps(self.tool_input())
            events += [
                wire.tool_call_delta(0, "", answer.call_id, "Bash"),
                wire.tool_call_delta(0, arguments[:10]),
                wire.tool_call_delta(0, arguments[10:]),
                wire.chunk({}, "tool_calls"),
            ]
        else:
            events.append(wire.chunk({}, "stop"))
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            events.append(self.usage_chunk(answer.usage))
        for event in events:
            event["model"] = model
        return events

    def usage_chunk(self, usage: Usage) -> JSON:
        return wire.usage_chunk(usage.prompt, usage.completion, usage.cached)

    def completion(self, body: JSON, answer: Answer) -> JSON:
        calls = None
        if answer.kind == "tool_call":
            calls = [
                {
                    "id": answer.call_id,
                    "type": "function",
                    "function": {"name": "Bash", "arguments": json.dumps(self.tool_input())},
                }
            ]
        usage = answer.usage
        response = wire.completion(
            answer.text,
            tool_calls=calls,
            finish="tool_calls" if calls else "stop",
            prompt=usage.prompt,
            completion_tokens=usage.completion,
        )
        response["model"] = body["model"]
        response["usage"] = self.usage_chunk(usage)["usage"]
        if answer.reasoning:
            response["choices"][0]["message"][self.reasoning_field] = answer.reasoning
        return response

    def tool_input(self) -> JSON:
        return {"command": self.command, "description": "Write the marker file"}


def tool_result(messages: list[JSON]) -> str | None:
    """The text of the tool messages answering the last assistant turn, if any."""
    results: list[str] = []
    for message in reversed(messages):
        if message.get("role") == "tool":
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content)
            results.insert(0, str(content))
        elif message.get("role") == "assistant":
            break
    return "\n".join(results) if results else None


_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)


def final_text(result: str) -> str:
    """The answer quoting a tool's output. Claude Code appends ``<system-reminder>`` blocks to
    some tool results (token budgets); they are context for the model, not the command's output."""
    return f"The command printed: {_REMINDER.sub('', result).strip()}"

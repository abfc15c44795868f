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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tests import openai_wire as wire
from tests.fakeserver import Reply, Request

JSON = dict[str, Any]

# https://platform.openai.com/docs/api-reference/chat/create#chat-create-tools: "a-z, A-Z, 0-9,
# or contain underscores and dashes, with a maximum length of 64".
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


class Rejection(Exception):
    """A 4xx the real API would answer; ``kind`` is its error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


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
            raise Rejection(401, "Incorrect API key provided.")
        try:
            body = request.json()
        except ValueError:
            raise Rejection(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise Rejection(400, "Invalid type for request body: expected an object.")
        self.check_model(body.get("model"))
        self.check_messages(body.get("messages"))
        self.check_tools(body.get("tools"))
        return body

    def check_model(self, model: Any) -> None:
        if model not in self.models:
            raise Rejection(404, f"The model `{model}` does not exist.")

    def check_messages(self, messages: Any) -> None:
        if not isinstance(messages, list) or not messages:
            raise Rejection(400, "Invalid 'messages': empty array.")
        pending: list[str] = []  # tool_call ids still waiting for their tool message
        for i, message in enumerate(messages):
            role = message.get("role")
            if role not in _ROLES:
                raise Rejection(
                    400,
                    f"Invalid value: '{role}'. Supported values are: "
                    "'system', 'assistant', 'user', 'function', 'tool', and "
                    f"'developer'. (messages[{i}].role)",
                )
            if role == "tool":
                if message.get("tool_call_id") not in pending:
                    # OpenAI's wording (sic), 400 invalid_request_error.
                    raise Rejection(
                        400,
                        "Invalid parameter: messages with role 'tool' must be a response to a "
                        "preceeding message with 'tool_calls'.",
                    )
                pending.remove(message["tool_call_id"])
                continue
            if pending:
                raise Rejection(
                    400,
                    "An assistant message with 'tool_calls' must be followed by tool messages "
                    "responding to each 'tool_call_id'. The following tool_call_ids did not "
                    f"have response messages: {', '.join(pending)}",
                )
            if role == "assistant":
                calls = message.get("tool_calls") or []
                pending = [call["id"] for call in calls]
                if message.get("content") is None and not calls:
                    raise Rejection(
                        400,
                        f"Invalid value for 'content': expected a string, got null. "
                        f"(messages[{i}].content)",
                    )
            elif message.get("content") is None:
                raise Rejection(400, f"Missing required parameter: 'messages[{i}].content'.")
        if pending:
            raise Rejection(
                400,
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending)}",
            )

    def check_tools(self, tools: Any) -> None:
        for i, tool in enumerate(tools or ()):
            function = tool.get("function") or {}
            if tool.get("type") != "function" or not _FUNCTION_NAME.match(
                str(function.get("name", ""))
            ):
                raise Rejection(
                    400,
                    f"Invalid 'tools[{i}].function.name': string does not match pattern. "
                    "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                )
            if not isinstance(function.get("parameters", {}), dict):
                raise Rejection(400, f"Invalid 'tools[{i}].function.parameters': not an object.")

    def thinking(self, body: JSON) -> bool:
        """Whether this request asks the model to reason (OpenRouter's ``reasoning``)."""
        return bool(body.get("reasoning"))

    def error_reply(self, rejection: Rejection) -> Reply:
        return wire.error_reply(rejection.status, rejection.message, rejection.kind)

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

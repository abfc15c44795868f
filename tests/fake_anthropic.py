"""A strict fake of an Anthropic-compatible Messages API, playing a model that calls Bash.

It rejects, with Anthropic's error body (https://docs.anthropic.com/en/api/errors), what the
real API rejects of the requests a gateway forwards: a missing or wrong ``x-api-key`` or
``anthropic-version``, an unknown model, a missing required field, an unknown top-level field,
a beta-only field sent without its ``anthropic-beta`` header, and tool results that do not
answer the preceding assistant turn's tool calls. The first turn of a conversation that offers
Bash is answered with a Bash ``tool_use``; the turn that carries its ``tool_result`` is answered
with text quoting the result (:func:`tests.fake_openai.final_text`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tests.capture_server import _stream_events
from tests.fake_openai import final_text
from tests.fakeserver import Reply, Request

# https://docs.anthropic.com/en/api/messages: the request's fields.
FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "output_config",
        "context_management",
    }
)
# Fields served only under a beta named in ``anthropic-beta``
# (https://docs.anthropic.com/en/api/beta-headers); context editing is
# context-management-2025-06-27 (https://docs.anthropic.com/en/docs/build-with-claude/context-editing).
BETA_FIELDS = {"context_management": "context-management-2025-06-27"}
REQUIRED = ("model", "messages", "max_tokens")


class Rejection(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


@dataclass
class Answer:
    kind: str  # "tool_use" or "text"
    text: str
    call_id: str = ""


@dataclass
class FakeAnthropic:
    api_key: str
    models: Sequence[str]
    command: str
    answers: list[Answer] = field(default_factory=list)
    rejected: list[tuple[Request, Rejection]] = field(default_factory=list)

    path: ClassVar[str] = "/v1/messages"

    def __call__(self, request: Request) -> Reply:
        try:
            body = self.check(request)
        except Rejection as rejection:
            self.rejected.append((request, rejection))
            error = {"type": rejection.kind, "message": rejection.message}
            return Reply.json({"type": "error", "error": error}, status=rejection.status)
        return self.answer(body)

    def check(self, request: Request) -> dict[str, Any]:
        if request.method != "POST" or request.path != self.path:
            raise Rejection(404, "not_found_error", "Not Found")
        if request.headers.get("x-api-key") != self.api_key:
            raise Rejection(401, "authentication_error", "invalid x-api-key")
        if request.headers.get("anthropic-version") != "2023-06-01":
            raise Rejection(400, "invalid_request_error", "anthropic-version: header is required")
        try:
            body = request.json()
        except ValueError:
            raise Rejection(400, "invalid_request_error", "invalid JSON body") from None
        if not isinstance(body, dict):
            raise Rejection(400, "invalid_request_error", "body: Input should be an object")
        for name in REQUIRED:
            if name not in body:
                raise Rejection(400, "invalid_request_error", f"{name}: Field required")
        betas = {b.strip() for b in request.headers.get("anthropic-beta", "").split(",")}
        for name in body:
            beta = BETA_FIELDS.get(name)
            if name not in FIELDS or (beta is not None and beta not in betas):
                # The API's answer to a field it does not serve (pydantic's wording).
                raise Rejection(
                    400, "invalid_request_error", f"{name}: Extra inputs are not permitted"
                )
        if body["model"] not in self.models:
            raise Rejection(404, "not_found_error", f"model: {body['model']}")
        self._check_tool_results(body["messages"])
        return body

    @staticmethod
    def _check_tool_results(messages: list[dict[str, Any]]) -> None:
        """Each assistant turn's tool_use ids are answered by tool_result blocks in the next
        message, and a tool_result answers a call of the turn before it (the API's two 400s,
        quoted from its answers)."""
        for index, message in enumerate(messages):
            content = message.get("content")
            blocks = content if isinstance(content, list) else []
            results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
            before = messages[index - 1] if index else {}
            said = before.get("content") if before.get("role") == "assistant" else None
            calls = {
                b.get("id")
                for b in (said if isinstance(said, list) else [])
                if b.get("type") == "tool_use"
            }
            if results - calls:
                raise Rejection(
                    400,
                    "invalid_request_error",
                    f"messages.{index}.content.0: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {sorted(results - calls)[0]}. Each `tool_result` "
                    "block must have a corresponding `tool_use` block in the previous message.",
                )
            if calls - results:
                raise Rejection(
                    400,
                    "invalid_request_error",
                    f"messages.{index - 1}: `tool_use` ids were found without `tool_result` "
                    f"blocks immediately after: {sorted(calls - results)[0]}.",
                )

    def answer(self, body: dict[str, Any]) -> Reply:
        offers_bash = any(t.get("name") == "Bash" for t in body.get("tools") or ())
        last = body["messages"][-1].get("content")
        results = [
            b for b in (last if isinstance(last, list) else []) if b.get("type") == "tool_result"
        ]
        mine = {a.call_id for a in self.answers if a.kind == "tool_use"}
        content: list[dict[str, Any]]
        if results and results[0].get("tool_use_id") in mine:
            result = results[0].get("content")
            if isinstance(result, list):
                result = "".join(b.get("text", "") for b in result if b.get("type") == "text")
            text = final_text(str(result))
            self.answers.append(Answer("text", text))
            content = [{"type": "text", "text": text}]
        elif offers_bash and not results:
            call_id = "toolu_" + secrets.token_hex(12)
            self.answers.append(Answer("tool_use", self.command, call_id))
            call = {"command": self.command, "description": "Write the marker file"}
            content = [{"type": "tool_use", "id": call_id, "name": "Bash", "input": call}]
        else:  # a side request (a title, a summary): plain text
            content = [{"type": "text", "text": "Marker file"}]
        n = len(self.answers)
        if body.get("stream"):
            return Reply.sse(_stream_events(body["model"], content, n))
        stop = "tool_use" if content[0]["type"] == "tool_use" else "end_turn"
        return Reply.json(
            {
                "id": f"msg_fake{n:04d}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": 12, "output_tokens": 9},
            }
        )


def rejection_of(reply: Reply) -> dict[str, Any]:
    """The ``error`` object of a rejection's body."""
    error: dict[str, Any] = json.loads(b"".join(reply.chunks))["error"]
    return error

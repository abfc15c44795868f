"""A fake Gemini API (``generativelanguage.googleapis.com/v1beta``) playing a Gemini 3 model on a
Bash task, and enforcing what the real API enforces.

The model's part, decided from the request alone as a real model would: with no
``functionResponse`` in the last user turn it calls ``Bash`` with the configured command; once a
``functionResponse`` comes back, it answers with text quoting the response's ``result``.

Wire format (https://ai.google.dev/api/generate-content):

- ``POST /v1beta/models/{model}:generateContent`` answers one ``GenerateContentResponse``;
  ``:streamGenerateContent?alt=sse`` answers ``data: <GenerateContentResponse>`` events separated
  by CRLF pairs (recorded in tests/fixtures/gemini/stream_text.sse); without ``alt=sse`` the
  stream is one JSON array. No ``[DONE]``: the chunk with ``finishReason`` ends the answer.
- The key comes in ``x-goog-api-key`` (https://ai.google.dev/gemini-api/docs/api-key).
- Errors are ``{"error": {"code", "message", "status"}}`` with the HTTP status in ``code``
  (https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes).
- Gemini 3 thinks always; thought summaries come as ``{"text", "thought": true}`` parts only with
  ``thinkingConfig.includeThoughts``. Each model step's first ``functionCall`` part carries a
  ``thoughtSignature``, and a request whose current turn sends a ``functionCall`` back without it
  is a 400 (https://ai.google.dev/gemini-api/docs/thought-signatures); the message below is the
  one the real API gave (tests/fixtures/gemini/error_signature.json).
- ``usageMetadata``: ``promptTokenCount`` includes ``cachedContentTokenCount``;
  ``thoughtsTokenCount`` is apart from ``candidatesTokenCount``
  (https://ai.google.dev/api/generate-content#UsageMetadata).

Requests are checked field by field as Google's JSON parser does: an unknown field is a 400
``Invalid JSON payload received. Unknown name ...`` (both lowerCamelCase and snake_case names are
accepted, https://protobuf.dev/programming-guides/json/).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.fake_openai import final_text
from tests.fakeserver import Reply, Request

JSON = dict[str, Any]

_PATH = re.compile(r"^/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)$")
# https://ai.google.dev/gemini-api/docs/thought-signatures#faqs: accepted in place of a
# signature for calls that did not come from Gemini.
SKIP_SIGNATURE = "skip_thought_signature_validator"
_HEADERS = [("server", "scaffolding on HTTPServer2"), ("vary", "Origin, X-Origin, Referer")]

# The message types of the request, each field -> the type of its value (None: a scalar, a map
# or a free-form Struct). From https://ai.google.dev/api/generate-content#request-body,
# https://ai.google.dev/api/caching#Content and #Tool.
_FIELDS: dict[str, dict[str, str | None]] = {
    "GenerateContentRequest": {
        "model": None,
        "contents": "Content",
        "systemInstruction": "Content",
        "tools": "Tool",
        "toolConfig": "ToolConfig",
        "generationConfig": "GenerationConfig",
        "safetySettings": "SafetySetting",
        "cachedContent": None,
    },
    "Content": {"parts": "Part", "role": None},
    "Part": {
        "text": None,
        "inlineData": "Blob",
        "fileData": "FileData",
        "functionCall": "FunctionCall",
        "functionResponse": "FunctionResponse",
        "executableCode": None,
        "codeExecutionResult": None,
        "videoMetadata": None,
        "thought": None,
        "thoughtSignature": None,
        "partMetadata": None,
    },
    "Blob": {"mimeType": None, "data": None},
    "FileData": {"mimeType": None, "fileUri": None},
    "FunctionCall": {"id": None, "name": None, "args": None},
    "FunctionResponse": {
        "id": None,
        "name": None,
        "response": None,
        "parts": None,
        "willContinue": None,
        "scheduling": None,
    },
    "Tool": {
        "functionDeclarations": "FunctionDeclaration",
        "googleSearch": None,
        "googleSearchRetrieval": None,
        "codeExecution": None,
        "urlContext": None,
    },
    "FunctionDeclaration": {
        "name": None,
        "description": None,
        "behavior": None,
        "parameters": "Schema",
        "parametersJsonSchema": None,
        "response": "Schema",
        "responseJsonSchema": None,
    },
    # https://ai.google.dev/api/caching#Schema
    "Schema": {
        "type": None,
        "format": None,
        "title": None,
        "description": None,
        "nullable": None,
        "enum": None,
        "maxItems": None,
        "minItems": None,
        "properties": "Schema{}",
        "required": None,
        "minProperties": None,
        "maxProperties": None,
        "minLength": None,
        "maxLength": None,
        "pattern": None,
        "example": None,
        "anyOf": "Schema",
        "propertyOrdering": None,
        "default": None,
        "items": "Schema",
        "minimum": None,
        "maximum": None,
    },
    "ToolConfig": {"functionCallingConfig": "FunctionCallingConfig", "retrievalConfig": None},
    "FunctionCallingConfig": {"mode": None, "allowedFunctionNames": None},
    "SafetySetting": {"category": None, "threshold": None},
    # https://ai.google.dev/api/generate-content#generationconfig
    "GenerationConfig": {
        "stopSequences": None,
        "responseMimeType": None,
        "responseSchema": "Schema",
        "responseJsonSchema": None,
        "responseModalities": None,
        "candidateCount": None,
        "maxOutputTokens": None,
        "temperature": None,
        "topP": None,
        "topK": None,
        "seed": None,
        "presencePenalty": None,
        "frequencyPenalty": None,
        "responseLogprobs": None,
        "logprobs": None,
        "enableEnhancedCivicAnswers": None,
        "speechConfig": None,
        "thinkingConfig": "ThinkingConfig",
        "mediaResolution": None,
    },
    "ThinkingConfig": {"includeThoughts": None, "thinkingBudget": None, "thinkingLevel": None},
}


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


class Rejection(Exception):
    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}


def error_reply(rejection: Rejection) -> Reply:
    error: JSON = {
        "code": rejection.status,
        "message": rejection.message,
        "status": _STATUS[rejection.status],
    }
    if rejection.reason:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": rejection.reason,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ]
    return Reply.json({"error": error}, status=rejection.status, headers=_HEADERS)


def _check_fields(value: Any, kind: str, where: str) -> None:
    """Unknown fields are rejected as Google's proto JSON parser does (hence the snake_case
    path in the message)."""
    if kind.endswith("{}"):  # a map of name -> message
        for key, item in (value or {}).items():
            _check_fields(item, kind[:-2], f"{where}[{key}]" if where else key)
        return
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        at = f"{where}[{i}]" if isinstance(value, list) else where
        if not isinstance(item, dict):
            continue
        fields = _FIELDS[kind]
        for key, child in item.items():
            name = key if key in fields else _camel(key)
            if name not in fields:
                place = f" at '{at}'" if at else ""
                raise Rejection(
                    400,
                    f'Invalid JSON payload received. Unknown name "{key}"{place}: '
                    "Cannot find field.",
                )
            target = fields[name]
            if target is not None:
                path = f"{at}.{_snake(name)}" if at else _snake(name)
                _check_fields(child, target, path)


def _check_schema(schema: JSON, where: str) -> None:
    # Gemini's own checks on an OpenAPI Schema object.
    properties = schema.get("properties")
    if properties is not None and not properties and schema.get("type", "").upper() == "OBJECT":
        raise Rejection(
            400, f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type"
        )
    for i, name in enumerate(schema.get("required") or ()):
        if name not in (properties or {}):
            raise Rejection(
                400, f"* GenerateContentRequest.{where}.required[{i}]: property is not defined"
            )
    for name, child in (properties or {}).items():
        _check_schema(child, f"{where}.properties[{name}]")
    if isinstance(schema.get("items"), dict):
        _check_schema(schema["items"], f"{where}.items")
    for i, branch in enumerate(schema.get("anyOf") or ()):
        _check_schema(branch, f"{where}.any_of[{i}]")


def _part(part: JSON, name: str) -> Any:
    return part.get(name, part.get(_snake(name)))


@dataclass(frozen=True)
class Usage:
    prompt: int
    candidates: int
    thoughts: int = 0
    cached: int = 0


@dataclass
class Answer:
    request: Request
    kind: str  # "tool_call" or "text"
    text: str
    usage: Usage
    signature: str = ""
    thought: str = ""


@dataclass
class FakeGemini:
    api_key: str
    models: Sequence[str]
    command: str
    usages: Sequence[Usage] = (Usage(4096, 25, 180, 2048), Usage(4350, 14, 96, 4096))
    thought: str = "**Writing the marker**\n\nA Bash call writes the file and prints it."
    answers: list[Answer] = field(default_factory=list)
    rejected: list[tuple[Request, Rejection]] = field(default_factory=list)

    def __call__(self, request: Request) -> Reply:
        try:
            model, method, body = self.check(request)
        except Rejection as rejection:
            self.rejected.append((request, rejection))
            return error_reply(rejection)
        return self.answer(request, model, method, body)

    @property
    def signatures(self) -> set[str]:
        return {a.signature for a in self.answers if a.signature}

    # --- what the real API enforces ---------------------------------------------------------

    def check(self, request: Request) -> tuple[str, str, JSON]:
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None:
            raise Rejection(404, f"Requested entity was not found: {request.path}")
        model, method = match.groups()
        key = request.headers.get("x-goog-api-key")
        if key is None:
            raise Rejection(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        if key != self.api_key:
            # tests/fixtures/gemini/error_api_key.json
            raise Rejection(
                400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"
            )
        if model not in self.models:
            raise Rejection(
                404,
                f"models/{model} is not found for API version v1beta, or is not supported for "
                f"{method}. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        try:
            body = request.json()
        except ValueError:
            raise Rejection(400, "Invalid JSON payload received.") from None
        _check_fields(body, "GenerateContentRequest", "")
        contents = body.get("contents") or []
        if not contents:
            raise Rejection(400, "* GenerateContentRequest.contents: contents is not specified")
        for i, content in enumerate(contents):
            if content.get("role", "user") not in ("user", "model"):
                raise Rejection(400, "Please use a valid role: user, model.")
            if not content.get("parts"):
                raise Rejection(
                    400,
                    f"* GenerateContentRequest.contents[{i}].parts: contents.parts must "
                    "not be empty.",
                )
        for t, tool in enumerate(body.get("tools") or ()):
            for d, declaration in enumerate(_part(tool, "functionDeclarations") or ()):
                if declaration.get("parameters"):
                    _check_schema(
                        declaration["parameters"],
                        f"tools[{t}].function_declarations[{d}].parameters",
                    )
        self.check_function_turns(contents)
        if model.startswith("gemini-3"):
            self.check_signatures(contents)
        return model, method, body

    def check_function_turns(self, contents: list[JSON]) -> None:
        """https://ai.google.dev/gemini-api/docs/function-calling: a function call turn is
        answered by the next turn, with one functionResponse per functionCall."""
        for before, after in zip(contents, [*contents[1:], None], strict=True):
            calls = [p for p in before["parts"] if _part(p, "functionCall")]
            if before.get("role") != "model" or not calls or after is None:
                continue
            responses = [p for p in after["parts"] if _part(p, "functionResponse")]
            if len(responses) != len(calls):
                raise Rejection(
                    400,
                    "Please ensure that the number of function response parts is equal to the "
                    "number of function call parts of the function call turn.",
                )

    def check_signatures(self, contents: list[JSON]) -> None:
        """The current turn, from the last user message that is not function responses, must
        carry the signature on the first functionCall of each model step."""
        start = 0
        for i, content in enumerate(contents):
            if content.get("role", "user") == "user" and not any(
                _part(p, "functionResponse") for p in content["parts"]
            ):
                start = i
        for i, content in enumerate(contents[start:], start):
            if content.get("role") != "model":
                continue
            calls = [p for p in content["parts"] if _part(p, "functionCall")]
            if not calls:
                continue
            signature = _part(calls[0], "thoughtSignature")
            name = _part(calls[0], "functionCall")["name"]
            if signature is None:
                raise Rejection(
                    400,
                    "Function call is missing a thought_signature in functionCall parts. This is "
                    "required for tools to work correctly, and missing thought_signature may "
                    "lead to degraded model performance. Additional data, function call "
                    f"`default_api:{name}` , position {i}. Please refer to "
                    "https://ai.google.dev/gemini-api/docs/thought-signatures for more details.",
                )
            if signature != SKIP_SIGNATURE and signature not in self.signatures:
                raise Rejection(400, "Corrupted thought signature.")

    # --- the model --------------------------------------------------------------------------

    def answer(self, request: Request, model: str, method: str, body: JSON) -> Reply:
        usage = self.usages[min(len(self.answers), len(self.usages) - 1)]
        config = body.get("generationConfig") or body.get("generation_config") or {}
        thinking = config.get("thinkingConfig") or config.get("thinking_config") or {}
        include = bool(_part(thinking, "includeThoughts"))
        result = _function_result(body["contents"])
        declared = {
            d["name"]
            for tool in body.get("tools") or ()
            for d in _part(tool, "functionDeclarations") or ()
        }
        # A real signature is opaque base64 of about a kilobyte of encrypted bytes.
        signature = base64.b64encode(secrets.token_bytes(720)).decode()
        if result is None and "Bash" in declared:
            answer = Answer(request, "tool_call", "", usage, signature)
        else:
            answer = Answer(request, "text", final_text(result or ""), usage, signature)
        answer.thought = self.thought if include else ""
        self.answers.append(answer)
        chunks = self.chunks(model, answer)
        if method == "generateContent":
            return Reply.json(_merge(chunks), headers=_HEADERS)
        if "alt=sse" not in request.target.split("?", 1)[-1].split("&"):
            return Reply.json(chunks, headers=_HEADERS)
        frames = [b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks]
        return Reply(200, [("content-type", "text/event-stream"), *_HEADERS], frames)

    def chunks(self, model: str, answer: Answer) -> list[JSON]:
        usage = answer.usage
        response_id = secrets.token_urlsafe(16)
        parts: list[list[JSON]] = []
        if answer.thought:
            parts.append([{"text": answer.thought, "thought": True}])
        if answer.kind == "tool_call":
            call = {
                "name": "Bash",
                "args": {"command": self.command, "description": "Write the marker file"},
            }
            parts.append([{"functionCall": call, "thoughtSignature": answer.signature}])
        else:
            half = len(answer.text) // 2
            parts.append([{"text": answer.text[:half]}])
            # Without a function call, the signature rides on the last part.
            parts.append([{"text": answer.text[half:], "thoughtSignature": answer.signature}])
        chunks = []
        for n, chunk_parts in enumerate(parts, 1):
            last = n == len(parts)
            candidates = usage.candidates * n // len(parts)
            meta: JSON = {
                "promptTokenCount": usage.prompt,
                "candidatesTokenCount": candidates,
                "totalTokenCount": usage.prompt + candidates + usage.thoughts,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": usage.prompt}],
                "thoughtsTokenCount": usage.thoughts,
            }
            if usage.cached:
                meta["cachedContentTokenCount"] = usage.cached
                meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.cached}]
            candidate: JSON = {"content": {"parts": chunk_parts, "role": "model"}, "index": 0}
            if last:
                candidate["finishReason"] = "STOP"
            chunks.append(
                {
                    "candidates": [candidate],
                    "usageMetadata": meta,
                    "modelVersion": model,
                    "responseId": response_id,
                }
            )
        return chunks


def _merge(chunks: list[JSON]) -> JSON:
    """The one response ``generateContent`` gives for what the stream sends in pieces."""
    merged: JSON = json.loads(json.dumps(chunks[-1]))
    merged["candidates"][0]["content"]["parts"] = [
        part for chunk in chunks for part in chunk["candidates"][0]["content"]["parts"]
    ]
    return merged


def _function_result(contents: list[JSON]) -> str | None:
    """The ``result`` of the functionResponse parts in the last user turn, if any."""
    last = contents[-1]
    results = []
    for part in last["parts"]:
        response = _part(part, "functionResponse")
        if response is not None:
            value = response.get("response", {})
            results.append(value["result"] if "result" in value else json.dumps(value))
    return "\n".join(results) if results else None

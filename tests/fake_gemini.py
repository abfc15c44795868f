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
accepted, https://protobuf.dev/programming-guides/json/). Schemas follow Gemini's rules: the
OpenAPI subset in ``parameters``/``response``/``responseSchema`` (:func:`check_schema`), full JSON
Schema in ``parametersJsonSchema``/``responseJsonSchema`` (:func:`check_json_schema`), each pair
mutually exclusive; function names, and ``generationConfig`` (:func:`check_generation_config`).
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
            # A message field given a string, number or null: the proto parser's 400.
            raise Rejection(
                400,
                f"Invalid value at '{at or 'request'}' "
                f"(type.googleapis.com/google.ai.generativelanguage.v1beta.{kind}), "
                f"{json.dumps(item)}",
            )
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


# https://ai.google.dev/api/caching#Type; the parser takes the names in any case (the REST
# examples of https://ai.google.dev/gemini-api/docs/function-calling write "object").
SCHEMA_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
# https://ai.google.dev/api/caching#Schema: "Supported formats: for NUMBER type: float, double;
# for INTEGER type: int32, int64; for STRING type: enum, date-time".
SCHEMA_FORMATS = frozenset({"enum", "date-time", "float", "double", "int32", "int64"})
_TYPE_PROTO = "type.googleapis.com/google.ai.generativelanguage.v1beta.Type"


def check_schema(schema: Any, where: str) -> None:
    """Gemini's checks on an OpenAPI-subset Schema object (``parameters``, ``response``,
    ``responseSchema``); unknown fields were rejected before, by :func:`_check_fields`.

    The rules of tests/test_gemini_format.py's ``check_gemini_schema``, answered as the API does.
    """
    at = f"* GenerateContentRequest.{where}"
    if not isinstance(schema, dict):
        raise Rejection(400, f"Invalid JSON payload received. Expected an object at '{where}'.")
    kind = schema.get("type")
    if isinstance(kind, list):
        raise Rejection(
            400,
            f"Invalid JSON payload received. Unknown name \"type\" at '{where}': Proto field is "
            "not repeating, cannot start list.",
        )
    if kind is not None:
        if not isinstance(kind, str) or kind.upper() not in SCHEMA_TYPES:
            raise Rejection(400, f"Invalid value at '{where}.type' ({_TYPE_PROTO}), {kind!r}")
        kind = kind.upper()
    properties = schema.get("properties")
    if properties is not None and kind != "OBJECT":
        raise Rejection(400, f"{at}.properties: only allowed for OBJECT type")
    if kind == "OBJECT" and not properties:
        # Disputed: an OBJECT without properties (a record, a free-form object) is a 400 for
        # users (pydantic/pydantic-ai#1203, browser-use/browser-use#3786), while vercel/ai#11319
        # reports it accepted. The stricter reading wins here: a request the real API may refuse
        # must not pass the tests. The message is the one those reports quote.
        raise Rejection(400, f"{at}.properties: should be non-empty for OBJECT type")
    for i, name in enumerate(schema.get("required") or ()):
        if name not in (properties or {}):
            raise Rejection(400, f"{at}.required[{i}]: property is not defined")
    if kind == "ARRAY" and "items" not in schema:
        raise Rejection(400, f"{at}.items: missing field.")
    if "enum" in schema and (
        kind != "STRING" or not all(isinstance(v, str) for v in schema["enum"] or ())
    ):
        # "enum: Possible values of the element of Type.STRING with enum format" (Schema).
        raise Rejection(400, f"{at}.enum: only allowed for STRING type")
    if "format" in schema and schema["format"] not in SCHEMA_FORMATS:
        raise Rejection(400, f"{at}.format: unsupported format {schema['format']!r}")
    for name, child in (properties or {}).items():
        check_schema(child, f"{where}.properties[{name}]")
    if "items" in schema:
        check_schema(schema["items"], f"{where}.items")
    for i, branch in enumerate(schema.get("anyOf") or ()):
        check_schema(branch, f"{where}.any_of[{i}]")


def validate_schema(schema: Any, where: str = "parameters") -> None:
    """Everything the API checks on one Schema object, its field names included: raises
    :class:`Rejection` with the API's message (for tests that check a schema on its own)."""
    _check_fields(schema, "Schema", where)
    check_schema(schema, where)


# https://json-schema.org/draft/2020-12/json-schema-core and -validation: the keywords whose
# values are schemas, maps of schemas and lists of schemas.
_JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})
_SUBSCHEMA = (
    "items",
    "additionalProperties",
    "propertyNames",
    "not",
    "contains",
    "if",
    "then",
    "else",
    "unevaluatedProperties",
    "unevaluatedItems",
    "additionalItems",
)
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")


def check_json_schema(schema: Any, where: str, *, root: Any = None, top: bool = False) -> None:
    """A field that takes full JSON Schema (``parametersJsonSchema``, ``responseJsonSchema``,
    https://ai.google.dev/api/caching#FunctionDeclaration and
    https://ai.google.dev/api/generate-content#GenerationConfig): any valid schema, records
    (``additionalProperties``, ``propertyNames``), ``$defs``/``$ref``, ``const``, ``anyOf``...
    A ``$ref`` must resolve in the document. With ``top``, it must describe an object ("The
    schema must describe an object where the properties are the parameters to the function").
    """
    root = schema if root is None else root
    at = f"* GenerateContentRequest.{where}"
    if isinstance(schema, bool) and not top:
        return
    if not isinstance(schema, dict):
        raise Rejection(400, f"{at}: a JSON Schema must be an object or a boolean")
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    if not all(isinstance(k, str) and k in _JSON_TYPES for k in kinds) or (
        isinstance(kind, list) and not kind
    ):
        raise Rejection(400, f"{at}.type: invalid JSON Schema type {kind!r}")
    if top and kinds != ["object"]:
        raise Rejection(400, f'{at}: the schema must describe an object ("type": "object")')
    for key in _SUBSCHEMA:
        if key in schema:
            value = schema[key]
            if key == "items" and isinstance(value, list):  # draft 4-2019 tuple form
                for i, item in enumerate(value):
                    check_json_schema(item, f"{where}.items[{i}]", root=root)
            else:
                check_json_schema(value, f"{where}.{key}", root=root)
    for key in _SUBSCHEMA_MAPS:
        if key in schema:
            if not isinstance(schema[key], dict):
                raise Rejection(400, f"{at}.{key}: must be an object")
            for name, value in schema[key].items():
                check_json_schema(value, f"{where}.{key}[{name}]", root=root)
    for key in _SUBSCHEMA_LISTS:
        if key in schema:
            if not isinstance(schema[key], list) or not schema[key]:
                raise Rejection(400, f"{at}.{key}: must be a non-empty array")
            for i, value in enumerate(schema[key]):
                check_json_schema(value, f"{where}.{key}[{i}]", root=root)
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(n, str) for n in required):
        raise Rejection(400, f"{at}.required: must be an array of strings")
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise Rejection(400, f"{at}.enum: must be an array")
    for key in _COUNTS:
        value = schema.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise Rejection(400, f"{at}.{key}: must be a non-negative integer")
    if "$ref" in schema:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not _resolves(root, ref):
            raise Rejection(400, f"{at}.$ref: cannot resolve {ref!r}")


def _resolves(root: Any, ref: str) -> bool:
    """Whether a local reference (``#``, ``#/$defs/x``) points into the document."""
    if not ref.startswith("#"):
        return False  # the API fetches nothing
    node = root
    for token in filter(None, ref[1:].split("/")):
        token = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or token not in node:
            return False
        node = node[token]
    return True


# https://ai.google.dev/api/caching#FunctionDeclaration: "Must be a-z, A-Z, 0-9, or contain
# underscores, colons, dots, and dashes, with a maximum length of 64"; earlier versions of the
# same page added "must start with a letter or an underscore", kept here as the stricter reading.
FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")


def check_declaration(declaration: JSON, where: str) -> None:
    at = f"* GenerateContentRequest.{where}"
    name = declaration.get("name")
    if not isinstance(name, str) or not FUNCTION_NAME.match(name):
        raise Rejection(
            400,
            f"{at}.name: Invalid function name. Must start with a letter or an underscore. Must "
            "be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:) or dashes (-), "
            "with a maximum length of 64.",
        )
    for schema_field, json_field in (
        ("parameters", "parametersJsonSchema"),
        ("response", "responseJsonSchema"),
    ):
        schema = _part(declaration, schema_field)
        json_schema = _part(declaration, json_field)
        if schema is not None and json_schema is not None:
            # "This field is mutually exclusive with parameters" (FunctionDeclaration).
            raise Rejection(
                400,
                f"{at}: {_snake(schema_field)} and {_snake(json_field)} are mutually exclusive; "
                "set one of them",
            )
        if schema is not None:
            check_schema(schema, f"{where}.{schema_field}")
        if json_schema is not None:
            check_json_schema(
                json_schema, f"{where}.{_snake(json_field)}", top=schema_field == "parameters"
            )


def check_generation_config(config: JSON) -> None:
    """https://ai.google.dev/api/generate-content#GenerationConfig and
    https://ai.google.dev/gemini-api/docs/thinking."""
    where = "generation_config"
    at = f"* GenerateContentRequest.{where}"
    mime = _part(config, "responseMimeType")
    schema = _part(config, "responseSchema")
    json_schema = _part(config, "responseJsonSchema")
    if schema is not None and json_schema is not None:
        raise Rejection(
            400, f"{at}: response_schema and response_json_schema are mutually exclusive"
        )
    if schema is not None:
        # "If set, a compatible responseMimeType must also be set. Compatible MIME types:
        # application/json: Schema for JSON response." (text/x.enum for an enum schema)
        if mime not in ("application/json", "text/x.enum"):
            raise Rejection(
                400, f"{at}.response_mime_type: must be application/json with response_schema"
            )
        check_schema(schema, f"{where}.response_schema")
    if json_schema is not None:
        # "If set, responseSchema must be omitted, but responseMimeType is required."
        if mime != "application/json":
            raise Rejection(
                400,
                f"{at}.response_mime_type: must be application/json with response_json_schema",
            )
        check_json_schema(json_schema, f"{where}.response_json_schema")
    thinking = _part(config, "thinkingConfig") or {}
    level = _part(thinking, "thinkingLevel")
    if level is not None and _part(thinking, "thinkingBudget") is not None:
        # "You cannot use both thinking_level and the legacy thinking_budget parameter in the
        # same request. Doing so will return a 400 error." (docs/thinking, Gemini 3)
        raise Rejection(
            400,
            f"{at}.thinking_config: thinking_budget and thinking_level cannot both be set.",
        )
    if level is not None and str(level).upper() not in _THINKING_LEVELS:
        raise Rejection(
            400,
            f"Invalid value at '{where}.thinking_config.thinking_level' (type.googleapis.com/"
            f"google.ai.generativelanguage.v1beta.ThinkingConfig.ThinkingLevel), {level!r}",
        )


_THINKING_LEVELS = frozenset({"THINKING_LEVEL_UNSPECIFIED", "MINIMAL", "LOW", "MEDIUM", "HIGH"})


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
                check_declaration(declaration, f"tools[{t}].function_declarations[{d}]")
        config = _part(body, "generationConfig")
        if config is not None:
            check_generation_config(config)
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

"""Google Gemini API (``generateContent`` / ``streamGenerateContent``) as an Anthropic provider.

Wire format: https://ai.google.dev/api/generate-content (request, ``GenerateContentResponse``),
https://ai.google.dev/api/caching#Content (``Content``/``Part``),
https://ai.google.dev/gemini-api/docs/function-calling, .../thinking, .../thought-signatures.

Mapping choices:

- ``systemInstruction`` holds the ``system`` prompt, then the ``{"role": "system"}`` entries that
  Claude Code puts mid-``messages``, in the order they appear. Gemini has no system role inside
  ``contents``; turning them into user text would put words in the user's mouth and could split a
  ``functionCall`` turn from its ``functionResponse`` turn, which Gemini requires to be adjacent.
- Consecutive messages of one role are merged into one ``Content`` (Gemini wants alternating
  turns); inside a user turn, ``functionResponse`` parts come first.
- Thinking blocks sent back by the client are dropped: Gemini cannot take them as input.
- ``url`` images and documents become ``fileData`` parts (``fileUri``); Gemini fetches what it
  can reach and answers 400 otherwise, which the client sees as the upstream's own error.
- Anthropic server tools are dropped, except ``web_search`` alone, which becomes Gemini's
  ``googleSearch`` grounding (2.x models cannot mix it with function declarations).
- Thinking: an ``enabled`` budget becomes ``thinkingBudget`` clamped to the model's range (2.5)
  or a ``thinkingLevel`` (3+); ``adaptive`` leaves the amount to the model unless
  ``output_config.effort`` names one; ``disabled`` is budget 0 or the lowest level, where the
  model allows it. Thoughts are asked for (``includeThoughts``) whenever thinking is on.
- Gemini 3 thought signatures travel inside the ``tool_use`` id (see :func:`encode_tool_id`), so
  they survive worker processes and restarts without a server-side store.
- Tool and output schemas go as JSON Schema (``parametersJsonSchema``/``responseJsonSchema``) or
  as the OpenAPI-subset Schema (``parameters``/``responseSchema``), by option ``schema_format``;
  see :mod:`.schema` for both, and :class:`GeminiOptions` for the default.
"""

from __future__ import annotations

import base64
import hashlib
import math
import mimetypes
import re
import secrets
import zlib
from collections import OrderedDict
from typing import Any, ClassVar, Final, Literal

import msgspec
from msgspec import Struct

from ..anthropic import (
    Base64Source,
    ContentBlock,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    ContentSource,
    DeltaUsage,
    DocumentBlock,
    ErrorBody,
    ErrorEvent,
    ImageBlock,
    InputJSONDelta,
    MessageDelta,
    MessageDeltaBody,
    MessageResponse,
    MessagesRequest,
    MessageStart,
    MessageStop,
    Ping,
    ResponseBlock,
    TextBlock,
    TextDelta,
    TextSource,
    ThinkingBlock,
    ThinkingDelta,
    ToolResultBlock,
    ToolUseBlock,
    URLSource,
    Usage,
    document_text,
    system_text,
)
from ..config import Provider
from ..errors import InvalidRequestError, UpstreamError, upstream_error
from ..sse import SSEParser
from .base import Route, StreamOutput, UpstreamRequest, extract_error_message
from .schema import (
    Marks,
    convert_schema,
    json_response_schema,
    json_schema_parameters,
    parameters_schema,
    restore_json_text,
)

# --- request wire types (https://ai.google.dev/api/generate-content#request-body) ------------


class Blob(Struct, rename="camel"):
    mime_type: str
    data: str


class FileData(Struct, rename="camel", omit_defaults=True):
    file_uri: str
    mime_type: str | None = None


class FunctionCall(Struct, omit_defaults=True):
    name: str
    args: dict[str, Any] | None = None


class FunctionResponse(Struct):
    name: str
    response: dict[str, Any]


class Part(Struct, rename="camel", omit_defaults=True):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    # A sibling of functionCall, not a field inside it (ai.google.dev/api/caching#Part).
    thought_signature: str | None = None


class Content(Struct, omit_defaults=True):
    parts: list[Part]
    role: str | None = None


class FunctionDeclaration(Struct, rename="camel", omit_defaults=True, frozen=True):
    name: str
    description: str | None = None
    # One or the other: "This field is mutually exclusive with parameters"
    # (ai.google.dev/api/caching#FunctionDeclaration).
    parameters: dict[str, Any] | None = None
    parameters_json_schema: dict[str, Any] | None = None


class Tool(Struct, rename="camel", omit_defaults=True):
    function_declarations: list[FunctionDeclaration] | None = None
    google_search: dict[str, Any] | None = None


class FunctionCallingConfig(Struct, rename="camel", omit_defaults=True):
    mode: str  # AUTO | ANY | NONE (ai.google.dev/api/caching#FunctionCallingConfig)
    allowed_function_names: list[str] | None = None


class ToolConfig(Struct, rename="camel"):
    function_calling_config: FunctionCallingConfig


class ThinkingConfig(Struct, rename="camel", omit_defaults=True):
    # ai.google.dev/gemini-api/docs/thinking: a level for Gemini 3, a budget for 2.5, never both.
    include_thoughts: bool | None = None
    thinking_budget: int | None = None
    thinking_level: str | None = None


class GenerationConfig(Struct, rename="camel", omit_defaults=True):
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    response_mime_type: str | None = None
    # One or the other; responseJsonSchema "requires responseMimeType application/json"
    # (ai.google.dev/api/generate-content#generationconfig).
    response_schema: dict[str, Any] | None = None
    response_json_schema: dict[str, Any] | None = None
    thinking_config: ThinkingConfig | None = None


class GenerateContentRequest(Struct, rename="camel", omit_defaults=True):
    contents: list[Content]
    system_instruction: Content | None = None
    tools: list[Tool] | None = None
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None
    safety_settings: list[dict[str, Any]] | None = None


# --- response wire types (https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse)


_NO_ARGS = msgspec.Raw(b"{}")


class _FunctionCallOut(Struct):
    name: str
    # Kept raw: it becomes the input_json_delta text without a decode/encode round trip.
    args: msgspec.Raw = _NO_ARGS


class _PartOut(Struct, rename="camel"):
    text: str | None = None
    thought: bool = False
    thought_signature: str | None = None
    function_call: _FunctionCallOut | None = None


class _ContentOut(Struct):
    parts: list[_PartOut] = []


class _Candidate(Struct, rename="camel"):
    content: _ContentOut | None = None
    finish_reason: str | None = None
    finish_message: str | None = None


class _UsageMetadata(Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    cached_content_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0


class _PromptFeedback(Struct, rename="camel"):
    block_reason: str | None = None


class _ErrorInfo(Struct, rename="camel"):
    reason: str | None = None
    # google.rpc.RetryInfo, on 429s: "38s" (https://ai.google.dev/gemini-api/docs/rate-limits)
    retry_delay: str | None = None


class _ErrorDetail(Struct):
    # https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes
    code: int | None = None
    message: str = ""
    status: str = ""
    details: list[_ErrorInfo] = []


class _Chunk(Struct, rename="camel"):
    candidates: list[_Candidate] = []
    usage_metadata: _UsageMetadata | None = None
    prompt_feedback: _PromptFeedback | None = None
    model_version: str | None = None
    response_id: str | None = None
    # An error can arrive in place of a chunk, inside a 200 stream.
    error: _ErrorDetail | None = None


class _ErrorEnvelope(Struct):
    error: _ErrorDetail


_encode = msgspec.json.Encoder().encode
_chunk_decoder = msgspec.json.Decoder(_Chunk)
# Errors come as an object, or from the streaming endpoint as a JSON array of them.
_error_decoder = msgspec.json.Decoder(_ErrorEnvelope | list[_ErrorEnvelope])

# --- thought signatures in tool_use ids -----------------------------------------------------

_ID_PREFIX: Final = "toolu_"
_ID_BODY: Final = 24  # hex digits, so "_" never occurs before the signature marker
_MARK_RAW: Final = "_s"  # urlsafe base64 of the signature bytes
_MARK_ZLIB: Final = "_z"  # the same bytes, deflated when that is shorter
_MARK_TEXT: Final = "_t"  # a signature that was not canonical base64, as UTF-8
_MAX_SIGNATURE: Final = 1 << 20
# Gemini's documented value for a function call that has no signature of its own (a trace that
# started on another model): https://ai.google.dev/gemini-api/docs/thought-signatures#faqs
SKIP_SIGNATURE: Final = "skip_thought_signature_validator"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_tool_id(base: str, signature: str | None) -> str:
    """``base`` with ``signature`` appended in the alphabet Anthropic allows for ids.

    Anthropic ids must match ``^[a-zA-Z0-9_-]+$`` (no maximum length is documented), while a
    signature is standard base64 of opaque bytes (hundreds to a few thousand characters). The
    bytes are re-encoded as urlsafe base64 without padding, deflated first when that helps
    (Gemini's signatures are encrypted, so mostly it does not).
    """
    if not signature:
        return base
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:  # binascii.Error, or not ASCII at all
        raw = b""
    if not raw or base64.b64encode(raw).decode("ascii") != signature:
        return base + _MARK_TEXT + _b64url(signature.encode())
    packed = zlib.compress(raw, 9)
    if len(packed) < len(raw):
        return base + _MARK_ZLIB + _b64url(packed)
    return base + _MARK_RAW + _b64url(raw)


def decode_signature(tool_id: str) -> str | None:
    """The thought signature inside a ``tool_use`` id we generated, or None."""
    start = len(_ID_PREFIX) + _ID_BODY
    if len(tool_id) <= start + 2 or not tool_id.startswith(_ID_PREFIX):
        return None
    mark, payload = tool_id[start : start + 2], tool_id[start + 2 :]
    if mark not in (_MARK_RAW, _MARK_ZLIB, _MARK_TEXT):
        return None
    try:
        data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        if mark == _MARK_TEXT:
            return data.decode()
        if mark == _MARK_ZLIB:
            # Bounded: the id comes from the client, and must not inflate without limit.
            inflater = zlib.decompressobj()
            data = inflater.decompress(data, _MAX_SIGNATURE)
            if inflater.unconsumed_tail or not inflater.eof:
                return None
    except (ValueError, zlib.error):  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    return base64.b64encode(data).decode("ascii")


def _tool_id(seed: str, index: int, signature: str | None) -> str:
    """Deterministic per (response, block): the same response always yields the same ids."""
    body = hashlib.blake2b(f"{seed}/{index}".encode(), digest_size=_ID_BODY // 2).hexdigest()
    return encode_tool_id(_ID_PREFIX + body, signature)


# --- model families -------------------------------------------------------------------------

_VERSION = re.compile(r"gemini-(\d+)(?:\.(\d+))?")
# ai.google.dev/gemini-api/docs/thinking#set-budget: (min, max) budget; 0 disables where allowed.
_BUDGETS = {"pro": (128, 32768), "flash-lite": (512, 24576), "flash": (1, 24576)}
# Effort -> 2.5 budget; -1 is Gemini's dynamic thinking, its own default.
_EFFORT_BUDGET = {"low": 1024, "medium": 8192, "high": -1}
# "Output token limit" (ai.google.dev/gemini-api/docs/models): 65,536 from 2.5 on, 8,192 before.
# Above it Gemini answers 400 ("the supported range is from 1 (inclusive) to 65537 (exclusive)"),
# and Claude Code asks for 32000-128000.
_MAX_OUTPUT_CURRENT = 65536
_MAX_OUTPUT_OLD = 8192


class _Model:
    """What a model name tells about its thinking controls."""

    __slots__ = ("family", "levels", "major", "minor")

    def __init__(self, name: str) -> None:
        match = _VERSION.search(name)
        self.major = int(match.group(1)) if match else 0
        self.minor = int(match.group(2) or 0) if match else 0
        self.family = (
            "flash-lite" if "flash-lite" in name else "flash" if "flash" in name else "pro"
        )
        # Gemini 3+ takes thinkingLevel; unknown names get budgets, which Gemini 3 also accepts
        # "for backwards compatibility" (ai.google.dev/gemini-api/docs/gemini-3#thinking_level).
        self.levels = self.major >= 3

    @property
    def needs_signatures(self) -> bool:
        # ai.google.dev/gemini-api/docs/thought-signatures: validated from Gemini 3 on.
        return self.major >= 3

    @property
    def thinks(self) -> bool:
        return self.major == 0 or self.major >= 3 or (self.major, self.minor) >= (2, 5)

    def level(self, effort: str) -> str:
        # Gemini 3 Pro takes low/high; Flash and 3.1+ Pro also minimal (Flash) and medium.
        if effort == "minimal":
            return "minimal" if self.family != "pro" else "low"
        if effort == "medium" and self.family == "pro" and (self.major, self.minor) == (3, 0):
            return "high"
        return effort if effort in ("low", "medium") else "high"

    @property
    def takes_json_schema(self) -> bool:
        # JSON Schema is taken by "all actively supported Gemini models"
        # (blog.google/technology/developers/gemini-api-structured-outputs, Nov 2025), which
        # are 2.0 and later (1.5 was retired, ai.google.dev/gemini-api/docs/changelog), and
        # parameters_json_schema works on gemini-2.0-flash-001 (googleapis/python-genai#1147).
        return self.major >= 2

    @property
    def max_output(self) -> int | None:
        if self.major == 0:
            return None  # an alias or a proxy's name: nothing known
        return _MAX_OUTPUT_CURRENT if self.thinks else _MAX_OUTPUT_OLD

    def budget(self, tokens: int) -> int:
        low, high = _BUDGETS[self.family]
        return tokens if tokens == -1 else max(low, min(high, tokens))


def _thinking_config(request: MessagesRequest, model: _Model) -> ThinkingConfig | None:
    thinking = request.thinking
    if thinking is None or not model.thinks:
        return None
    effort = request.output_config.effort if request.output_config else None
    if thinking.type == "disabled":
        if model.levels:
            return ThinkingConfig(thinking_level=model.level("minimal"))
        # 2.5 Pro cannot turn thinking off; Flash and Flash-Lite take 0.
        return None if model.family == "pro" else ThinkingConfig(thinking_budget=0)
    if thinking.type == "enabled" and thinking.budget_tokens:
        budget = thinking.budget_tokens
        if model.levels:
            effort = "low" if budget <= 2048 else "medium" if budget <= 16384 else "high"
            return ThinkingConfig(include_thoughts=True, thinking_level=model.level(effort))
        return ThinkingConfig(include_thoughts=True, thinking_budget=model.budget(budget))
    # adaptive (or enabled without a budget): the model decides, steered by effort if given.
    if effort is None:
        return ThinkingConfig(include_thoughts=True)
    if model.levels:
        return ThinkingConfig(include_thoughts=True, thinking_level=model.level(effort))
    tokens = _EFFORT_BUDGET.get(effort, _BUDGETS[model.family][1])
    return ThinkingConfig(include_thoughts=True, thinking_budget=model.budget(tokens))


# --- request --------------------------------------------------------------------------------


def _document_parts(block: DocumentBlock) -> list[Part]:
    # https://docs.anthropic.com/en/docs/build-with-claude/pdf-support: base64, url, text, content.
    source = block.source
    if isinstance(source, Base64Source):
        return [Part(inline_data=Blob(source.media_type, source.data))]
    if isinstance(source, TextSource):
        return [Part(text=source.data)] if source.data else []
    if isinstance(source, URLSource):
        return [Part(file_data=FileData(source.url, "application/pdf"))]
    if isinstance(source, ContentSource):
        text = document_text(source)
        return [Part(text=text)] if text else []
    raise InvalidRequestError("document source type 'file' is not supported by this provider")


def _plain_parts(block: ContentBlock) -> list[Part]:
    """Text, images and documents: the blocks that may appear in any turn or tool result."""
    if isinstance(block, TextBlock):
        return [Part(text=block.text)] if block.text else []
    if isinstance(block, ImageBlock):
        source = block.source
        if isinstance(source, Base64Source):
            return [Part(inline_data=Blob(source.media_type, source.data))]
        mime_type = mimetypes.guess_type(source.url)[0]
        return [Part(file_data=FileData(source.url, mime_type))]
    if isinstance(block, DocumentBlock):
        return _document_parts(block)
    return []


def _function_response(block: ToolResultBlock, names: dict[str, str]) -> list[Part]:
    texts: list[str] = []
    extra: list[Part] = []
    if isinstance(block.content, str):
        texts.append(block.content)
    elif block.content:
        for item in block.content:
            if isinstance(item, TextBlock):
                texts.append(item.text)
            else:
                # Images and documents follow as parts of the same user turn.
                extra.extend(_plain_parts(item))
    # Gemini matches a response to its call by name; Claude Code always sends the tool_use
    # earlier in the same request, so the fallback only covers hand-written histories.
    name = names.get(block.tool_use_id, "unknown_function")
    key = "error" if block.is_error else "result"
    response = FunctionResponse(name=name, response={key: "\n".join(texts)})
    return [Part(function_response=response), *extra]


def _contents(
    request: MessagesRequest, model: _Model, fallback_signature: bool
) -> tuple[list[Content], list[str]]:
    """``contents`` and the system texts found among the messages."""
    names: dict[str, str] = {}
    contents: list[Content] = []
    system: list[str] = []
    for message in request.messages:
        blocks = message.content
        if message.role == "system":
            if isinstance(blocks, str):
                system.append(blocks)
            else:
                system.extend(b.text for b in blocks if isinstance(b, TextBlock))
            continue
        role = "model" if message.role == "assistant" else "user"
        parts: list[Part] = []
        if isinstance(blocks, str):
            if blocks:
                parts.append(Part(text=blocks))
        else:
            for block in blocks:
                if isinstance(block, ToolUseBlock):
                    names[block.id] = block.name
                    call = FunctionCall(name=block.name, args=block.input)
                    parts.append(
                        Part(function_call=call, thought_signature=decode_signature(block.id))
                    )
                elif isinstance(block, ToolResultBlock):
                    parts.extend(_function_response(block, names))
                else:
                    parts.extend(_plain_parts(block))
        if not parts:
            continue
        if contents and contents[-1].role == role:
            contents[-1].parts.extend(parts)
        else:
            contents.append(Content(parts=parts, role=role))
    for content in contents:
        if content.role == "user":
            responses = [p for p in content.parts if p.function_response is not None]
            if responses and len(responses) < len(content.parts):
                others = [p for p in content.parts if p.function_response is None]
                content.parts = responses + others
        elif fallback_signature and model.needs_signatures:
            # Gemini 3 validates the first functionCall of each model turn
            # (ai.google.dev/gemini-api/docs/thought-signatures#signatures-in-function-calling).
            first = next((p for p in content.parts if p.function_call is not None), None)
            if first is not None and first.thought_signature is None:
                first.thought_signature = SKIP_SIGNATURE
    return contents, system


class _ToolSet(Struct, frozen=True):
    """One request's ``tools`` as Gemini takes them; shared by every request of that shape."""

    tools: list[Tool] | None = None
    declared: bool = False  # whether it declares functions
    # Per function: where its arguments hold JSON text (see schema.restore_json_text).
    marks: dict[str, Marks] = {}


_NO_TOOLS: Final = _ToolSet()
_TOOL_CACHE_SIZE: Final = 64
_tool_cache: OrderedDict[bytes, _ToolSet] = OrderedDict()


def _tools(request: MessagesRequest, json_schema: bool) -> _ToolSet:
    """The converted ``tools``, from a bounded LRU keyed by a hash of their JSON.

    Claude Code sends the same tools (24, some 60 KB) on every turn: converting them takes
    0.6-1 ms, encoding and hashing them 0.12 ms. The cache is module-level, which is safe
    because the conversion is a pure function of its key (the tools' bytes and the schema
    field): no option, provider or request outside the key can change the result. Entries are
    shared read-only.
    """
    if not request.tools:
        return _NO_TOOLS
    # SHA-256 runs in hardware (SHA-NI/ARMv8): some 0.05 ms for 60 KB, under half of BLAKE2b.
    key = hashlib.sha256(_encode(request.tools)).digest() + (b"j" if json_schema else b"o")
    found = _tool_cache.get(key)
    if found is not None:
        _tool_cache.move_to_end(key)
        return found
    converted = _convert_tools(request, json_schema)
    _tool_cache[key] = converted
    if len(_tool_cache) > _TOOL_CACHE_SIZE:
        _tool_cache.popitem(last=False)
    return converted


def _convert_tools(request: MessagesRequest, json_schema: bool) -> _ToolSet:
    declarations: list[FunctionDeclaration] = []
    marks: dict[str, Marks] = {}
    search = False
    for tool in request.tools or ():
        if tool.type is None or tool.type == "custom":
            sent = json_schema_parameters(tool.input_schema) if json_schema else None
            if sent is not None:
                declaration = FunctionDeclaration(
                    tool.name, tool.description, parameters_json_schema=sent
                )
            else:
                params, found = parameters_schema(tool.input_schema)
                declaration = FunctionDeclaration(tool.name, tool.description, params)
                if found:
                    marks[tool.name] = found
            declarations.append(declaration)
        elif tool.type.startswith("web_search"):
            search = True
    if declarations:
        return _ToolSet([Tool(function_declarations=declarations)], True, marks)
    # https://ai.google.dev/gemini-api/docs/google-search
    return _ToolSet([Tool(google_search={})] if search else None)


def _tool_marks(
    request: MessagesRequest | None, model: str, options: GeminiOptions
) -> dict[str, Marks]:
    if request is None or not request.tools:
        return {}
    return _tools(request, _json_schema(_Model(model.removeprefix("models/")), options)).marks


def _json_schema(model: _Model, options: GeminiOptions) -> bool:
    if options.schema_format == "auto":
        return model.takes_json_schema
    return options.schema_format == "json_schema"


def _tool_config(request: MessagesRequest) -> ToolConfig | None:
    choice = request.tool_choice
    if choice is None:
        return None
    # ai.google.dev/gemini-api/docs/function-calling#function_calling_modes
    # disable_parallel_tool_use has no Gemini equivalent.
    if choice.type == "tool" and choice.name:
        config = FunctionCallingConfig("ANY", [choice.name])
    else:
        config = FunctionCallingConfig({"any": "ANY", "none": "NONE"}.get(choice.type, "AUTO"))
    return ToolConfig(config)


def _generation_config(
    request: MessagesRequest, model: _Model, cap: int | None, json_schema: bool
) -> GenerationConfig | None:
    max_tokens = request.max_tokens
    if max_tokens is not None and cap is not None:
        max_tokens = min(max_tokens, cap)
    config = GenerationConfig(
        max_output_tokens=max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        # "A maximum of 5 character sequences" (ai.google.dev/api/generate-content#generationconfig)
        stop_sequences=request.stop_sequences[:5] if request.stop_sequences else None,
        thinking_config=_thinking_config(request, model),
    )
    output = request.output_config.format if request.output_config else None
    if output and output.get("type") == "json_schema" and isinstance(output.get("schema"), dict):
        # ai.google.dev/gemini-api/docs/structured-output
        config.response_mime_type = "application/json"
        schema = output["schema"]
        sent = json_response_schema(schema) if json_schema else None
        if sent is not None:
            config.response_json_schema = sent
        else:
            converted, marks = convert_schema(schema)
            # A root that became JSON text (a record, any value): JSON mode without a schema
            # says the same, where a STRING schema would make the answer a quoted string.
            if () not in marks:
                config.response_schema = converted
    return None if config == GenerationConfig() else config


# --- responses ------------------------------------------------------------------------------

_REFUSALS = frozenset(
    # ai.google.dev/api/generate-content#FinishReason: the model stopped over content policy.
    {"SAFETY", "RECITATION", "LANGUAGE", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
)
# The model produced a function call Gemini could not parse or did not allow: a retry may work,
# so the client sees an api_error rather than an empty turn.
_BROKEN_CALLS = frozenset(
    {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"}
)


def _stop_reason(finish: str, saw_tool: bool) -> str:
    if finish == "MAX_TOKENS":
        return "max_tokens"
    if finish in _REFUSALS:
        return "refusal"
    return "tool_use" if saw_tool else "end_turn"


def _usage(meta: _UsageMetadata, usage: Usage) -> None:
    """Gemini counts cached tokens inside promptTokenCount, Anthropic beside input_tokens."""
    cached = meta.cached_content_token_count
    usage.input_tokens = meta.prompt_token_count + meta.tool_use_prompt_token_count - cached
    usage.output_tokens = meta.candidates_token_count + meta.thoughts_token_count
    usage.cache_read_input_tokens = cached


def _status(error: _ErrorDetail, fallback: int) -> int:
    """``fallback``: the HTTP status the error came with, or 502 for one inside a 200 answer."""
    # An invalid key is a 400 INVALID_ARGUMENT with reason API_KEY_INVALID; Anthropic says 401.
    if error.status == "UNAUTHENTICATED" or any(
        d.reason == "API_KEY_INVALID" for d in error.details
    ):
        return 401
    code = error.code
    return code if code is not None and 400 <= code < 600 else fallback


def _decode_error(body: bytes) -> _ErrorDetail | None:
    try:
        parsed: _ErrorEnvelope | list[_ErrorEnvelope] = _error_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if isinstance(parsed, list):
        return parsed[0].error if parsed else None
    return parsed.error


def _message_id(response_id: str | None) -> str:
    return "msg_" + (response_id or secrets.token_hex(12))


# --- the format -----------------------------------------------------------------------------


class GeminiOptions(Struct, frozen=True, forbid_unknown_fields=True):
    """What a provider's ``["gemini", {...}]`` entry may set."""

    # Send Gemini's documented placeholder for a function call whose id carries no signature
    # (history from another provider) on Gemini 3+ models, instead of letting the request 400.
    thought_signature_fallback: bool = True
    # Passed through as safetySettings (ai.google.dev/gemini-api/docs/safety-settings).
    safety_settings: list[dict[str, Any]] | None = None
    # Per-model maxOutputTokens caps, over the documented limits of each Gemini generation.
    max_output_tokens: dict[str, int] = {}
    # Tool and output schemas as JSON Schema (parametersJsonSchema, responseJsonSchema) or as
    # the OpenAPI-subset Schema (parameters, responseSchema, cleaned by providers/schema.py).
    # "auto": JSON Schema for Gemini 2.0 and later, which take it (the Gemini API since
    # Nov 2025, blog.google/technology/developers/gemini-api-structured-outputs; Vertex AI's
    # FunctionDeclaration has the same field, cloud.google.com/vertex-ai/docs/reference/rest),
    # the cleaned Schema for other model names (1.x, aliases, proxies' names), which every
    # version of the API takes.
    schema_format: Literal["auto", "json_schema", "openapi"] = "auto"


class GeminiFormat:
    name: ClassVar[str] = "gemini"

    def __init__(self, options: dict[str, Any]) -> None:
        try:
            self.options = msgspec.convert(options, GeminiOptions)
        except msgspec.ValidationError as error:
            raise ValueError(f"gemini options: {error}") from None

    def build_request(self, request: MessagesRequest, route: Route) -> UpstreamRequest:
        model_name = route.model.removeprefix("models/")
        model = _Model(model_name)
        options = self.options
        contents, extra_system = _contents(request, model, options.thought_signature_fallback)
        system = system_text(request.system) + extra_system
        json_schema = _json_schema(model, options)
        tools = _tools(request, json_schema)
        body = GenerateContentRequest(
            contents=contents,
            system_instruction=Content([Part(text=t) for t in system]) if system else None,
            tools=tools.tools,
            tool_config=_tool_config(request) if tools.declared else None,
            generation_config=_generation_config(
                request,
                model,
                options.max_output_tokens.get(model_name, model.max_output),
                json_schema,
            ),
            safety_settings=options.safety_settings,
        )
        base = route.provider.api_base_url.rstrip("/")
        if re.search(r"/v1(alpha|beta)?\d*$", base):
            base += "/models"
        # ai.google.dev/api/generate-content#method:-models.streamgeneratecontent: alt=sse gives
        # "data: <GenerateContentResponse>" events instead of one JSON array.
        action = ":streamGenerateContent?alt=sse" if request.stream else ":generateContent"
        headers = {"content-type": "application/json"}
        if route.provider.api_key:
            headers["x-goog-api-key"] = route.provider.api_key
        headers.update(route.provider.headers)
        return UpstreamRequest(
            url=f"{base}/{model_name}{action}", headers=headers, body=_encode(body)
        )

    def parse_response(
        self, body: bytes, route: Route, request: MessagesRequest | None = None
    ) -> MessageResponse:
        """``request``, when given, lets arguments that Gemini wrote as JSON text (see
        :mod:`.schema`) reach the client as the objects its tools declared."""
        try:
            chunk = _chunk_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise UpstreamError(
                f"Gemini returned an unreadable response: {error}", status=502
            ) from None
        if chunk.error is not None:
            raise UpstreamError(
                chunk.error.message or chunk.error.status, status=_status(chunk.error, 502)
            )
        seed = chunk.response_id or secrets.token_hex(8)
        marks = _tool_marks(request, route.model, self.options)
        blocks: list[ResponseBlock] = []
        finish = ""
        message = None
        if chunk.candidates:
            candidate = chunk.candidates[0]
            finish = candidate.finish_reason or ""
            message = candidate.finish_message
            for part in candidate.content.parts if candidate.content else []:
                _add_block(blocks, part, seed, marks)
        elif chunk.prompt_feedback and chunk.prompt_feedback.block_reason:
            finish = "SAFETY"
        if finish in _BROKEN_CALLS:
            raise UpstreamError(f"Gemini {finish}: {message or 'no usable answer'}", status=502)
        usage = Usage()
        if chunk.usage_metadata is not None:
            _usage(chunk.usage_metadata, usage)
        saw_tool = any(isinstance(b, ToolUseBlock) for b in blocks)
        return MessageResponse(
            id=_message_id(chunk.response_id),
            model=chunk.model_version or route.model,
            content=blocks,
            stop_reason=_stop_reason(finish, saw_tool),
            usage=usage,
        )

    def stream_translator(self, request: MessagesRequest, route: Route) -> GeminiStreamTranslator:
        marks = _tool_marks(request, route.model, self.options)
        return GeminiStreamTranslator(route.model, route.provider, marks)

    def error_info(self, status: int, body: bytes) -> tuple[int, dict[str, str]]:
        """What the status line does not say: Gemini answers 400 for a bad key, where an
        Anthropic client expects 401, and gives its retry delay in the body, not a header."""
        error = _decode_error(body)
        if error is None:
            return status, {}
        headers = {}
        for detail in error.details:
            delay = detail.retry_delay
            if delay and delay.endswith("s"):
                try:
                    seconds = float(delay[:-1])
                except ValueError:
                    continue
                headers["retry-after"] = str(max(1, math.ceil(seconds)))
        return _status(error, status), headers

    def error_message(self, status: int, body: bytes) -> str:
        error = _decode_error(body)
        if error is not None and error.message:
            return error.message
        return extract_error_message(body)


def _add_block(
    blocks: list[ResponseBlock], part: _PartOut, seed: str, marks: dict[str, Marks]
) -> None:
    """Append one response part, merging text into the previous block of the same kind."""
    call = part.function_call
    if call is not None:
        args = msgspec.json.decode(call.args)
        if call.name in marks:
            args = restore_json_text(args, marks[call.name])
        tool_id = _tool_id(seed, len(blocks), part.thought_signature)
        blocks.append(
            ToolUseBlock(id=tool_id, name=call.name, input=args if isinstance(args, dict) else {})
        )
        return
    if not part.text:
        return
    last = blocks[-1] if blocks else None
    if part.thought:
        if isinstance(last, ThinkingBlock):
            last.thinking += part.text
        else:
            blocks.append(ThinkingBlock(thinking=part.text))
    elif isinstance(last, TextBlock):
        last.text += part.text
    else:
        blocks.append(TextBlock(text=part.text))


_NONE, _TEXT, _THINKING = 0, 1, 2
_HEAD_LIMIT = 1 << 16


class GeminiStreamTranslator:
    """``data: <GenerateContentResponse>`` events to Anthropic stream events.

    Gemini sends no ``[DONE]``: the chunk that carries a ``finishReason`` (with the final
    ``usageMetadata``, as recorded streams show) ends the message.
    """

    __slots__ = (
        "_blocks",
        "_done",
        "_finish",
        "_finish_message",
        "_head",
        "_index",
        "_marks",
        "_model",
        "_open",
        "_parser",
        "_provider",
        "_saw_tool",
        "_seed",
        "_started",
        "error",
        "usage",
    )

    def __init__(
        self, model: str, provider: Provider | None = None, marks: dict[str, Marks] | None = None
    ) -> None:
        self.usage = Usage(cache_read_input_tokens=0)
        self._marks = marks or {}  # per function: where its arguments hold JSON text
        # The error event the stream ended with, for the request log (status, message).
        self.error: UpstreamError | None = None
        self._model = model
        self._provider = provider  # whose secrets are redacted from upstream error text
        self._parser = SSEParser()
        self._seed = secrets.token_hex(8)
        self._started = False
        self._done = False
        self._open = _NONE
        self._index = -1
        self._blocks = 0
        self._saw_tool = False
        self._finish: str | None = None
        self._finish_message: str | None = None
        # The body as received until the first SSE event: a plain JSON error body has none.
        self._head: bytes | None = b""

    def feed(self, data: bytes) -> list[StreamOutput]:
        if self._done:
            return []
        if self._head is not None and len(self._head) < _HEAD_LIMIT:
            self._head += data
        out: list[StreamOutput] = []
        for event in self._parser.feed(data):
            self._event(event.data, out)
            if self._done:
                break
        return out

    def close(self) -> list[StreamOutput]:
        out: list[StreamOutput] = []
        if not self._done:
            for event in self._parser.close():
                self._event(event.data, out)
                if self._done:
                    return out
        if self._done:
            return out
        if self._finish is not None:
            self._end(out)
            return out
        error = _decode_error(self._head.strip()) if self._head else None
        if error is not None:
            self._gemini_error(error, out)
        else:
            self._fail("Gemini stream ended before a finishReason", 502, out)
        return out

    def _event(self, data: bytes, out: list[StreamOutput]) -> None:
        self._head = None
        try:
            chunk = _chunk_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            self._fail(f"unreadable Gemini chunk: {error}", 502, out)
            return
        if chunk.error is not None:
            # Like Anthropic's own mid-stream errors: an error event, nothing closed after it.
            self._gemini_error(chunk.error, out)
            return
        if chunk.usage_metadata is not None:
            _usage(chunk.usage_metadata, self.usage)
        if not self._started:
            self._start(chunk, out)
        if chunk.candidates:
            candidate = chunk.candidates[0]
            if candidate.content is not None:
                for part in candidate.content.parts:
                    self._part(part, out)
            if candidate.finish_reason:
                self._finish = candidate.finish_reason
                self._finish_message = candidate.finish_message
        elif chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason:
            self._finish = "SAFETY"
        # Usage normally rides on the finishing chunk; without it, wait for a later one or close.
        if self._finish is not None and chunk.usage_metadata is not None:
            self._end(out)

    def _start(self, chunk: _Chunk, out: list[StreamOutput]) -> None:
        self._started = True
        if chunk.response_id:
            self._seed = chunk.response_id
        usage = Usage(self.usage.input_tokens, 0, None, self.usage.cache_read_input_tokens)
        model = chunk.model_version or self._model
        message = MessageResponse(
            id=_message_id(chunk.response_id), model=model, content=[], usage=usage
        )
        out.append(MessageStart(message))
        out.append(Ping())

    def _part(self, part: _PartOut, out: list[StreamOutput]) -> None:
        call = part.function_call
        if call is not None:
            # A functionCall arrives whole in one part: start, the whole input, stop.
            self._close_block(out)
            index = self._blocks
            self._blocks += 1
            tool_id = _tool_id(self._seed, index, part.thought_signature)
            if call.name in self._marks:
                restored = restore_json_text(msgspec.json.decode(call.args), self._marks[call.name])
                args = _encode(restored).decode()
            else:
                args = bytes(call.args).decode()
            out.append(ContentBlockStart(index, ToolUseBlock(id=tool_id, name=call.name, input={})))
            out.append(ContentBlockDelta(index, InputJSONDelta(args)))
            out.append(ContentBlockStop(index))
            self._saw_tool = True
            return
        text = part.text
        if not text:
            return  # e.g. an empty text part that only carries a thoughtSignature
        kind = _THINKING if part.thought else _TEXT
        if self._open != kind:
            self._close_block(out)
            self._open = kind
            self._index = self._blocks
            self._blocks += 1
            block: ResponseBlock = (
                ThinkingBlock(thinking="") if kind == _THINKING else TextBlock(text="")
            )
            out.append(ContentBlockStart(self._index, block))
        delta = ThinkingDelta(text) if kind == _THINKING else TextDelta(text)
        out.append(ContentBlockDelta(self._index, delta))

    def _close_block(self, out: list[StreamOutput]) -> None:
        if self._open != _NONE:
            out.append(ContentBlockStop(self._index))
            self._open = _NONE

    def _gemini_error(self, error: _ErrorDetail, out: list[StreamOutput]) -> None:
        self._fail(error.message or error.status, _status(error, 502), out)

    def _fail(self, message: str, status: int, out: list[StreamOutput]) -> None:
        self._done = True
        error = self.error = upstream_error(self._provider, message, status=status)
        out.append(ErrorEvent(ErrorBody(error.error_type, error.message)))

    def _end(self, out: list[StreamOutput]) -> None:
        self._done = True
        finish = self._finish or ""
        if finish in _BROKEN_CALLS:
            self._fail(f"Gemini {finish}: {self._finish_message or 'no usable answer'}", 502, out)
            return
        self._close_block(out)
        usage = self.usage
        out.append(
            MessageDelta(
                MessageDeltaBody(stop_reason=_stop_reason(finish, self._saw_tool)),
                DeltaUsage(
                    output_tokens=usage.output_tokens,
                    input_tokens=usage.input_tokens,
                    cache_read_input_tokens=usage.cache_read_input_tokens,
                ),
            )
        )
        out.append(MessageStop())

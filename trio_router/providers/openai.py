"""The OpenAI chat-completions wire format (OpenRouter, OpenAI and every compatible server).

Reference: https://platform.openai.com/docs/api-reference/chat/create and
https://platform.openai.com/docs/api-reference/chat-streaming; OpenRouter's additions from
https://openrouter.ai/docs/api-reference/overview. Two formats share this module and differ only
in defaults: ``openrouter`` (OpenRouter's ``reasoning`` object, ``max_tokens``) and ``openai``
(``reasoning_effort``, ``max_completion_tokens``, which o-series and GPT-5 models require).

Choices worth knowing:

* ``input_tokens`` is ``prompt_tokens`` minus cache reads and writes, because OpenAI counts cached
  tokens inside ``prompt_tokens`` while Anthropic counts them apart; ``cache_read_input_tokens``
  comes from ``prompt_tokens_details.cached_tokens`` (OpenAI, OpenRouter) or
  ``prompt_cache_hit_tokens`` (DeepSeek).
* Malformed tool-call arguments in a complete response are a 502 ``api_error``: the upstream broke
  its contract, the client did nothing wrong. With ``repair_tool_json`` (what an ``enhancetool``
  transformer sets) they are repaired instead, and streamed tool input arrives in one piece.
* Tool-call ids get a ``toolu_`` prefix (kept if already there) and are sent back unchanged, so
  the ids of a conversation stay paired across turns; an id longer than OpenAI's 40 characters
  (another provider's, such as Gemini's with its thought signature) is sent as a hash of itself,
  the same in the call and in its result.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, ClassVar, Literal

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
    Tool,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
    URLSource,
    Usage,
    document_text,
    system_text,
)
from ..config import Provider
from ..errors import (
    InvalidRequestError,
    UpstreamError,
    error_type_for_status,
    status_for_error_type,
    upstream_error,
)
from ..sse import SSEParser
from .base import Route, StreamOutput, UpstreamRequest, extract_error_message

JSONObject = dict[str, Any]

# --- request wire types -------------------------------------------------------------------


class TextPart(Struct, tag="text", tag_field="type"):
    text: str


class ImageURL(Struct):
    url: str


class ImagePart(Struct, tag="image_url", tag_field="type"):
    image_url: ImageURL


class FileData(Struct, omit_defaults=True):
    file_data: str
    filename: str | None = None


class FilePart(Struct, tag="file", tag_field="type"):
    # PDF input: https://platform.openai.com/docs/guides/pdf-files (chat completions "file" part);
    # OpenRouter also takes a URL in file_data: https://openrouter.ai/docs/features/multimodal/pdfs
    file: FileData


ContentPart = TextPart | ImagePart | FilePart


class FunctionCall(Struct):
    name: str
    arguments: str


class ToolCall(Struct, tag="function", tag_field="type"):
    id: str
    function: FunctionCall


class ChatMessage(Struct, omit_defaults=True):
    role: str
    # Absent on an assistant turn made only of tool calls, as the API allows.
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # DeepSeek thinking mode wants earlier reasoning back on tool-call turns:
    # https://api-docs.deepseek.com/guides/thinking_mode
    reasoning_content: str | None = None


class FunctionSpec(Struct, omit_defaults=True):
    name: str
    parameters: JSONObject
    description: str | None = None


class ChatTool(Struct, tag="function", tag_field="type"):
    function: FunctionSpec


class FunctionName(Struct):
    name: str


class NamedToolChoice(Struct, tag="function", tag_field="type"):
    function: FunctionName


class StreamOptions(Struct):
    include_usage: bool


class Reasoning(Struct, omit_defaults=True):
    # https://openrouter.ai/docs/use-cases/reasoning-tokens: one of effort / max_tokens.
    effort: str | None = None
    max_tokens: int | None = None


class JSONSchemaSpec(Struct):
    name: str
    schema: JSONObject


class JSONSchemaFormat(Struct, tag="json_schema", tag_field="type"):
    # https://platform.openai.com/docs/guides/structured-outputs; "strict" stays off because
    # strict mode rejects schemas (optional properties) that Anthropic accepts.
    json_schema: JSONSchemaSpec


class ChatRequest(Struct, omit_defaults=True):
    model: str
    messages: list[ChatMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[ChatTool] | None = None
    tool_choice: str | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    reasoning: Reasoning | None = None
    reasoning_effort: str | None = None
    response_format: JSONSchemaFormat | None = None


# --- response and stream wire types ----------------------------------------------------------


class _FunctionDelta(Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCallDelta(Struct):
    # Providers that send each call whole sometimes leave index out (or repeat 0): see _tool().
    index: int = 0
    id: str | None = None
    function: _FunctionDelta | None = None


class _Delta(Struct):
    content: str | None = None
    # OpenRouter, Ollama and newer vLLM say "reasoning"; DeepSeek, Qwen and older vLLM
    # "reasoning_content". OpenRouter also sends reasoning_details with the same text (ignored).
    reasoning: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _PromptDetails(Struct):
    cached_tokens: int | None = None
    # https://openrouter.ai/docs/use-cases/usage-accounting
    cache_write_tokens: int | None = None


class ChatUsage(Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    # https://api-docs.deepseek.com/api/create-chat-completion
    prompt_cache_hit_tokens: int | None = None


class _ErrorDetail(Struct):
    message: str | None = None
    type: str | None = None
    code: Any = None  # OpenRouter sends the HTTP status as a number, OpenAI a string


class _ChunkChoice(Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None
    # vLLM: the stop string that matched (or a stop token id); null at EOS.
    # https://github.com/vllm-project/vllm/pull/2976
    stop_reason: str | int | None = None


class ChatChunk(Struct):
    choices: list[_ChunkChoice] | None = None
    model: str | None = None
    usage: ChatUsage | None = None
    # OpenAI: data: {"error": {...}}; OpenRouter adds it to a normal chunk with
    # finish_reason "error" (https://openrouter.ai/docs/api-reference/streaming).
    error: _ErrorDetail | None = None
    # vLLM's error shape: {"object": "error", "message": ..., "code": 400}
    object: str | None = None
    message: str | None = None
    code: Any = None


class _ResponseToolCall(Struct):
    function: _FunctionDelta
    id: str | None = None


class _ResponseMessage(Struct):
    content: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    tool_calls: list[_ResponseToolCall] | None = None


class _ResponseChoice(Struct):
    message: _ResponseMessage
    finish_reason: str | None = None
    stop_reason: str | int | None = None


class ChatResponse(Struct):
    choices: list[_ResponseChoice] | None = None
    model: str | None = None
    usage: ChatUsage | None = None
    error: _ErrorDetail | None = None


_encode = msgspec.json.Encoder().encode
_chunk_decoder = msgspec.json.Decoder(ChatChunk)
_response_decoder = msgspec.json.Decoder(ChatResponse)
_any_decoder = msgspec.json.Decoder()


# --- options --------------------------------------------------------------------------------


class OpenAIOptions(Struct, frozen=True, forbid_unknown_fields=True):
    """What a provider's ``["openrouter", {...}]`` entry may set."""

    # How thinking is asked for: OpenRouter's reasoning object, OpenAI's reasoning_effort, or not.
    reasoning: Literal["openrouter", "openai", "none"] = "openrouter"
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # What becomes of earlier thinking blocks: dropped, or sent back as reasoning_content.
    reasoning_history: Literal["drop", "reasoning_content"] = "drop"
    repair_tool_json: bool = False


def _options(options: dict[str, Any], defaults: dict[str, Any], name: str) -> OpenAIOptions:
    try:
        return msgspec.convert({**defaults, **options}, OpenAIOptions)
    except msgspec.ValidationError as error:
        raise ValueError(f"{name} options: {error}") from None


# --- request mapping ------------------------------------------------------------------------

# Anthropic efforts (https://docs.claude.com/en/docs/build-with-claude/effort) -> OpenAI's
# (https://platform.openai.com/docs/api-reference/chat/create#reasoning_effort); OpenRouter takes
# the same names. "max" has no counterpart above xhigh.
_EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}
# Anthropic's default effort is high: https://docs.claude.com/en/docs/build-with-claude/effort
_DEFAULT_EFFORT = "high"
# OpenAI caps "user" at 64 characters ("Invalid 'user': string too long. Expected a string with
# maximum length 64"), OpenRouter at 128; Claude Code sends a ~150-character JSON string.
_USER_MAX = 64
_TOOL_RESULT_ERROR_PREFIX = "Error: "


def _budget_effort(budget: int | None) -> str:
    """Claude Code's think / megathink / ultrathink budgets (4000 / 10000 / 31999) -> efforts."""
    if budget is None or budget < 8192:
        return "low"
    return "medium" if budget < 24576 else "high"


def _data_uri(source: Base64Source) -> str:
    return f"data:{source.media_type};base64,{source.data}"


def _image_part(block: ImageBlock) -> ImagePart:
    source = block.source
    url = _data_uri(source) if isinstance(source, Base64Source) else source.url
    return ImagePart(ImageURL(url))


def _document_part(block: DocumentBlock) -> ContentPart:
    source = block.source
    if isinstance(source, TextSource):
        return TextPart(source.data)
    if isinstance(source, ContentSource):
        return TextPart(document_text(source))
    if isinstance(source, Base64Source):
        return FilePart(FileData(_data_uri(source), block.title or "document.pdf"))
    if isinstance(source, URLSource):
        return FilePart(FileData(source.url, block.title or "document.pdf"))
    raise InvalidRequestError("document source type 'file' is not supported by this provider")


def _text_of(content: str | list[ContentBlock]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(block.text for block in content if isinstance(block, TextBlock))


def _user_content(parts: list[ContentPart]) -> str | list[ContentPart]:
    """Text-only content as one string: several compatible servers reject part arrays."""
    texts = [part.text for part in parts if isinstance(part, TextPart)]
    return "\n".join(texts) if len(texts) == len(parts) else parts


def _tool_message(block: ToolResultBlock, images: list[ContentPart]) -> ChatMessage:
    """A tool message carries text only, so images of the result go to ``images``, which join
    the user message that follows (tool message content is a string or text parts:
    https://platform.openai.com/docs/api-reference/chat/create#chat-create-messages)."""
    content = block.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts: list[str] = []
        for item in content:
            if isinstance(item, TextBlock):
                texts.append(item.text)
            elif isinstance(item, ImageBlock):
                images.append(_image_part(item))
            else:
                part = _document_part(item)
                if isinstance(part, TextPart):
                    texts.append(part.text)
                else:
                    images.append(part)
        text = "\n".join(texts)
    if block.is_error:
        # Anthropic's is_error has no field here; say it in the text the model reads.
        text = _TOOL_RESULT_ERROR_PREFIX + text
    return ChatMessage(role="tool", content=text, tool_call_id=upstream_call_id(block.tool_use_id))


def _user_messages(content: str | list[ContentBlock], out: list[ChatMessage]) -> None:
    if isinstance(content, str):
        out.append(ChatMessage(role="user", content=content))
        return
    parts: list[ContentPart] = []
    for block in content:
        if isinstance(block, TextBlock):
            parts.append(TextPart(block.text))
        elif isinstance(block, ToolResultBlock):
            # Tool results answer the previous assistant turn, so they come first, in order.
            out.append(_tool_message(block, parts))
        elif isinstance(block, ImageBlock):
            parts.append(_image_part(block))
        elif isinstance(block, DocumentBlock):
            parts.append(_document_part(block))
    if parts:
        out.append(ChatMessage(role="user", content=_user_content(parts)))


def _assistant_message(
    content: str | list[ContentBlock], options: OpenAIOptions
) -> ChatMessage | None:
    if isinstance(content, str):
        return ChatMessage(role="assistant", content=content) if content else None
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = _encode(block.input).decode()
            calls.append(ToolCall(upstream_call_id(block.id), FunctionCall(block.name, arguments)))
        elif isinstance(block, ThinkingBlock):
            thinking.append(block.thinking)
        # redacted thinking and server-tool blocks have no chat-completions form.
    text = "\n".join(texts)
    if not text and not calls:
        return None
    reasoning = None
    if options.reasoning_history == "reasoning_content" and thinking:
        reasoning = "\n".join(thinking)
    return ChatMessage(
        role="assistant",
        content=text or None,
        tool_calls=calls or None,
        reasoning_content=reasoning,
    )


def chat_messages(request: MessagesRequest, options: OpenAIOptions) -> list[ChatMessage]:
    messages: list[ChatMessage] = []
    system = system_text(request.system)
    if system:
        messages.append(ChatMessage(role="system", content="\n\n".join(system)))
    for message in request.messages:
        role = message.role
        if role == "user":
            _user_messages(message.content, messages)
        elif role == "assistant":
            assistant = _assistant_message(message.content, options)
            if assistant is not None:
                messages.append(assistant)
        elif role == "system":
            # Claude Code 2.1 puts system entries mid-conversation; keep them where they are.
            messages.append(ChatMessage(role="system", content=_text_of(message.content)))
        else:
            raise InvalidRequestError(f"messages: unknown role {role!r}")
    return messages


def _tools(tools: list[Tool] | None) -> list[ChatTool] | None:
    # Server tools (web_search_20250305, ...) have a type and no schema: nothing to call here.
    mapped = [
        ChatTool(FunctionSpec(tool.name, _object_schema(tool.input_schema), tool.description))
        for tool in tools or ()
        if tool.input_schema is not None
    ]
    return mapped or None


def _object_schema(schema: JSONObject) -> JSONObject:
    """OpenAI takes only an object schema as ``parameters`` (a 400 "Invalid schema for function
    'x': schema must be a JSON Schema of 'type: "object"'" otherwise); a tool's input is always
    an object (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use),
    so a missing, null or other ``type`` is sent as ``object``."""
    return schema if schema.get("type") == "object" else {**schema, "type": "object"}


_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}


def _tool_choice(choice: ToolChoice) -> str | NamedToolChoice:
    """Decoding has checked the type, and that ``tool`` comes with a name."""
    if choice.type == "tool":
        return NamedToolChoice(FunctionName(choice.name or ""))
    return _TOOL_CHOICE[choice.type]


def _schema_name(schema: JSONObject) -> str:
    """The json_schema name the API requires (^[a-zA-Z0-9_-]{1,64}$): the schema's title if it
    fits, else a fixed one."""
    title = schema.get("title")
    if isinstance(title, str) and 0 < len(title) <= 64 and re.fullmatch(r"[\w-]+", title, re.A):
        return title
    return "response"


def _response_format(fmt: JSONObject) -> JSONSchemaFormat:
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise InvalidRequestError(
            "output_config.format: only json_schema with a schema is supported"
        )
    schema: JSONObject = fmt["schema"]
    return JSONSchemaFormat(JSONSchemaSpec(_schema_name(schema), schema))


def chat_request(request: MessagesRequest, model: str, options: OpenAIOptions) -> ChatRequest:
    """The chat-completions request for an Anthropic one (pure)."""
    chat = ChatRequest(
        model=model,
        messages=chat_messages(request, options),
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop_sequences or None,
        tools=_tools(request.tools),
    )
    if request.max_tokens is not None:
        if options.max_tokens_field == "max_tokens":
            chat.max_tokens = request.max_tokens
        else:
            chat.max_completion_tokens = request.max_tokens
    if request.stream:
        chat.stream = True
        chat.stream_options = StreamOptions(include_usage=True)
    if chat.tools is not None and request.tool_choice is not None:
        # The API rejects tool_choice and parallel_tool_calls without tools.
        chat.tool_choice = _tool_choice(request.tool_choice)
        if request.tool_choice.disable_parallel_tool_use:
            chat.parallel_tool_calls = False
    if request.metadata is not None and request.metadata.user_id:
        user = request.metadata.user_id
        chat.user = user if len(user) <= _USER_MAX else hashlib.sha256(user.encode()).hexdigest()
    _apply_reasoning(chat, request, options)
    if request.output_config is not None and request.output_config.format is not None:
        chat.response_format = _response_format(request.output_config.format)
    return chat


def _apply_reasoning(chat: ChatRequest, request: MessagesRequest, options: OpenAIOptions) -> None:
    """Thinking ``enabled`` (a budget) or ``adaptive`` (an effort) asks for reasoning.

    ``disabled`` sends nothing: OpenRouter rejects turning reasoning off on models where it is
    mandatory ("Reasoning is mandatory for this endpoint and cannot be disabled"), and OpenAI's
    effort "none" exists on few models.
    """
    thinking = request.thinking
    style = options.reasoning
    if thinking is None or style == "none" or thinking.type not in ("enabled", "adaptive"):
        return
    effort_config = request.output_config.effort if request.output_config is not None else None
    if thinking.type == "enabled":
        if style == "openrouter" and thinking.budget_tokens is not None:
            chat.reasoning = Reasoning(max_tokens=thinking.budget_tokens)
            return
        effort = _budget_effort(thinking.budget_tokens)
    else:
        requested = effort_config or _DEFAULT_EFFORT
        effort = _EFFORT.get(requested, requested)
    if style == "openrouter":
        chat.reasoning = Reasoning(effort=effort)
    else:
        chat.reasoning_effort = effort


# --- response mapping ------------------------------------------------------------------------

_TOOL_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _message_id() -> str:
    return "msg_" + os.urandom(12).hex()


# OpenAI rejects tool call ids over 40-64 characters; ids another provider made (Gemini's carry
# a thought signature) can be far longer. Both the call and its result map to the same hash.
_MAX_CALL_ID = 40


def upstream_call_id(tool_use_id: str) -> str:
    if len(tool_use_id) <= _MAX_CALL_ID:
        return tool_use_id
    return "toolu_" + hashlib.sha256(tool_use_id.encode()).hexdigest()[:32]


def tool_use_id(upstream_id: str | None, fallback: str) -> str:
    """An Anthropic-valid (``^[a-zA-Z0-9_-]+$``) tool_use id derived from the upstream's."""
    if not upstream_id:
        return fallback
    if _TOOL_ID_UNSAFE.search(upstream_id):
        upstream_id = _TOOL_ID_UNSAFE.sub("_", upstream_id)
    return upstream_id if upstream_id.startswith("toolu_") else "toolu_" + upstream_id


def usage_from(usage: ChatUsage) -> Usage:
    prompt = usage.prompt_tokens or 0
    details = usage.prompt_tokens_details
    cached = details.cached_tokens if details is not None else None
    if cached is None:
        cached = usage.prompt_cache_hit_tokens
    written = details.cache_write_tokens if details is not None else None
    return Usage(
        input_tokens=max(prompt - (cached or 0) - (written or 0), 0),
        output_tokens=usage.completion_tokens or 0,
        cache_creation_input_tokens=written,
        cache_read_input_tokens=cached,
    )


def stop_reason(
    finish_reason: str | None, matched: str | int | None, has_tools: bool, refused: bool
) -> tuple[str, str | None]:
    """Anthropic's stop_reason and stop_sequence for a chat-completions finish_reason."""
    if finish_reason == "length":
        return "max_tokens", None
    if finish_reason == "content_filter" or refused:
        return "refusal", None
    # Some servers say "stop" after tool calls; what the client must do next is call them.
    if finish_reason in ("tool_calls", "function_call") or has_tools:
        return "tool_use", None
    if finish_reason == "stop" and isinstance(matched, str):
        return "stop_sequence", matched
    return "end_turn", None


_ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "overloaded_error",
        "api_error",
        "timeout_error",
    }
)


def _error_type(code: Any, kind: str | None) -> str:
    if isinstance(code, int) and 400 <= code < 600:
        return error_type_for_status(code)
    for name in (kind, code):
        if isinstance(name, str):
            if name in _ERROR_TYPES:
                return name
            if name.startswith("rate_limit"):
                return "rate_limit_error"
    return "api_error"


def repair_tool_json(text: str) -> JSONObject | None:
    """Best-effort repair of tool arguments a model left malformed: code fences around them,
    a trailing comma, or a cut-off end (open strings and brackets are closed)."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    if not text:
        return {}
    closers: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            closers.append("}" if char == "{" else "]")
        elif char in "}]" and closers:
            closers.pop()
    if escaped:
        text = text[:-1]
    if in_string:
        text += '"'
    text = text.rstrip().rstrip(",")
    if text.endswith(":"):
        text += "null"
    candidate = text + "".join(reversed(closers))
    candidate = re.sub(r",\s*([}\]])", r"\1", candidate)
    try:
        value = _any_decoder.decode(candidate)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def _tool_input(arguments: str | None, name: str, repair: bool) -> JSONObject:
    text = arguments or ""
    if not text.strip():
        return {}  # some servers send "" for a call without arguments
    try:
        value = _any_decoder.decode(text)
    except msgspec.DecodeError:
        value = None
    if isinstance(value, dict):
        return value
    repaired = repair_tool_json(text) if repair else None
    if repaired is None:
        raise UpstreamError(
            f"upstream returned malformed JSON arguments for tool {name!r}: {text[:200]}",
            status=502,
        )
    return repaired


def message_response(chat: ChatResponse, model: str, repair: bool = False) -> MessageResponse:
    """The Anthropic message for a complete chat-completions response (pure)."""
    if chat.error is not None:
        code = chat.error.code
        status = code if isinstance(code, int) and 400 <= code < 600 else 502
        raise UpstreamError(chat.error.message or "upstream error", status=status)
    if not chat.choices:
        raise UpstreamError("upstream returned no choices", status=502)
    choice = chat.choices[0]
    message = choice.message
    message_id = _message_id()
    content: list[ResponseBlock] = []
    reasoning = message.reasoning or message.reasoning_content
    if reasoning:
        content.append(ThinkingBlock(reasoning))
    text = message.content or message.refusal
    if text:
        content.append(TextBlock(text))
    for i, call in enumerate(message.tool_calls or ()):
        name = call.function.name or ""
        content.append(
            ToolUseBlock(
                tool_use_id(call.id, f"toolu_{message_id[4:]}_{i}"),
                name,
                _tool_input(call.function.arguments, name, repair),
            )
        )
    reason, sequence = stop_reason(
        choice.finish_reason,
        choice.stop_reason,
        bool(message.tool_calls),
        bool(message.refusal) and not message.content,
    )
    return MessageResponse(
        id=message_id,
        model=chat.model or model,
        content=content,
        stop_reason=reason,
        stop_sequence=sequence,
        usage=usage_from(chat.usage) if chat.usage is not None else Usage(),
    )


# --- streaming -------------------------------------------------------------------------------

_THINKING, _TEXT, _TOOL = 0, 1, 2


class _Block:
    """One Anthropic content block being built. ``parts`` holds what waits for the block to
    start; a tool call keeps all of its arguments there, to tell when they are complete JSON."""

    __slots__ = ("checked", "closed", "id", "index", "kind", "name", "parts")

    def __init__(self, kind: int, id: str = "", name: str = "") -> None:
        self.kind = kind
        self.index = -1
        self.parts: list[str] = []
        self.checked = -1
        self.closed = False
        self.id = id
        self.name = name


class ChatStreamTranslator:
    """Chat-completions SSE -> Anthropic stream events, sans-IO.

    Anthropic blocks never interleave, while OpenAI tool calls may (by ``index``). The block
    being streamed is "open"; anything for another block waits, buffered, in ``_queue``. A tool
    call stays open until its arguments form complete JSON (nothing valid can follow that) or
    the choice finishes; then the queued blocks start in the order they appeared upstream. A
    text or thinking block can always be closed when something else is waiting.
    """

    def __init__(
        self, model: str, repair_tool_json: bool = False, provider: Provider | None = None
    ) -> None:
        self.usage = Usage()
        # The error event the stream ended with, for the request log (status, message).
        self.error: UpstreamError | None = None
        self._model = model
        self._provider = provider  # whose secrets are redacted from upstream error text
        self._repair = repair_tool_json
        self._parser = SSEParser()
        self._message_id = _message_id()
        self._started = False
        self._done = False
        self._finished = False
        self._finish_reason: str | None = None
        self._matched: str | int | None = None
        self._refused = False
        self._has_tools = False
        self._usage_seen = False
        self._next_index = 0
        self._open: _Block | None = None
        # A list, not a deque: it holds a few blocks at most, and an empty deque costs 760 bytes
        # per stream against a list's 56.
        self._queue: list[_Block] = []
        self._text: _Block | None = None
        self._thinking: _Block | None = None
        self._tools: dict[int, _Block] = {}

    def feed(self, data: bytes) -> list[StreamOutput]:
        out: list[StreamOutput] = []
        if self._done:
            return out
        try:
            for event in self._parser.feed(data):
                self._on_data(event.data, out)
                if self._done:
                    break
        except UpstreamError as error:  # tool arguments that could not be repaired
            self._fail(out, error.message, error.status, error.error_type)
        return out

    def close(self) -> list[StreamOutput]:
        out: list[StreamOutput] = []
        if self._done:
            return out
        try:
            for event in self._parser.close():
                self._on_data(event.data, out, final=True)
                if self._done:
                    return out
            if self._finished:
                self._finish(out)
            else:
                self._fail(out, "upstream stream ended before completion", 502)
        except UpstreamError as error:
            self._fail(out, error.message, error.status, error.error_type)
        return out

    # -- one SSE data payload

    def _on_data(self, data: bytes, out: list[StreamOutput], final: bool = False) -> None:
        """``final``: the event was cut off by the end of the body, so bad JSON means truncation."""
        if data == b"[DONE]":
            self._finish(out)
            return
        if not data:
            return
        try:
            chunk = _chunk_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            if not final:
                self._fail(out, f"upstream sent an invalid stream chunk: {data[:200]!r}", 502)
            return
        if chunk.error is not None:
            error = chunk.error
            self._upstream_failed(out, error.code, error.type, error.message)
            return
        if chunk.object == "error":
            self._upstream_failed(out, chunk.code, None, chunk.message)
            return
        if not self._started:
            self._start_message(chunk.model, out)
        if chunk.usage is not None:
            self.usage = usage_from(chunk.usage)
            self._usage_seen = True
        if not chunk.choices:
            return
        choice = chunk.choices[0]
        delta = choice.delta
        if delta is not None:
            reasoning = delta.reasoning or delta.reasoning_content
            if reasoning:
                block = self._thinking
                if block is None:
                    block = self._thinking = self._new(_Block(_THINKING))
                self._append(block, reasoning, out)
            text = delta.content
            if delta.refusal:
                self._refused = True
                text = (text or "") + delta.refusal
            if text:
                block = self._text
                if block is None:
                    block = self._text = self._new(_Block(_TEXT))
                self._append(block, text, out)
            if delta.tool_calls:
                for call in delta.tool_calls:
                    self._tool(call, out)
        if choice.finish_reason is not None:
            self._finished = True
            self._finish_reason = choice.finish_reason
            self._matched = choice.stop_reason
            self._flush(out)

    def _tool(self, call: _ToolCallDelta, out: list[StreamOutput]) -> None:
        block = self._tools.get(call.index)
        function = call.function
        if block is None or (call.id and block.id and call.id != block.id):
            # A new call; a different id at a known index is a server that reuses index 0.
            fallback = f"toolu_{self._message_id[4:]}_{len(self._tools)}"
            name = function.name if function is not None and function.name else ""
            block = self._tools[call.index] = self._new(
                _Block(_TOOL, tool_use_id(call.id, fallback), name)
            )
            self._has_tools = True
            self._advance(out)  # start it now if nothing holds it back
        elif function is not None and function.name and not block.name:
            block.name = function.name
        if function is not None and function.arguments:
            if block.closed:
                return  # its JSON was complete: nothing more can belong to it
            self._append(block, function.arguments, out)

    # -- block machinery

    def _new(self, block: _Block) -> _Block:
        self._queue.append(block)
        return block

    def _append(self, block: _Block, part: str, out: list[StreamOutput]) -> None:
        if block is self._open:
            if block.kind == _TEXT:
                out.append(ContentBlockDelta(block.index, TextDelta(part)))
            elif block.kind == _THINKING:
                out.append(ContentBlockDelta(block.index, ThinkingDelta(part)))
            else:
                block.parts.append(part)
                if not self._repair:
                    out.append(ContentBlockDelta(block.index, InputJSONDelta(part)))
                if self._queue:
                    self._advance(out)  # this part may have completed it: let the next start
            return
        block.parts.append(part)
        self._advance(out)

    def _advance(self, out: list[StreamOutput]) -> None:
        """Start queued blocks while the open one can be closed."""
        queue = self._queue
        while queue:
            current = self._open
            if current is not None:
                if current.kind == _TOOL and not self._complete(current):
                    return
                self._close(current, out)
            self._start(queue.pop(0), out)

    def _complete(self, block: _Block) -> bool:
        count = len(block.parts)
        if count == block.checked:
            return False  # unchanged since it was last found incomplete
        try:
            _any_decoder.decode("".join(block.parts))
        except msgspec.DecodeError:
            block.checked = count
            return False
        return True

    def _start(self, block: _Block, out: list[StreamOutput]) -> None:
        block.index = self._next_index
        self._next_index += 1
        self._open = block
        kind = block.kind
        parts = block.parts
        if kind == _TOOL:
            out.append(ContentBlockStart(block.index, ToolUseBlock(block.id, block.name, {})))
            if parts and not self._repair:
                out.append(ContentBlockDelta(block.index, InputJSONDelta("".join(parts))))
            return
        if kind == _TEXT:
            out.append(ContentBlockStart(block.index, TextBlock("")))
            if parts:
                out.append(ContentBlockDelta(block.index, TextDelta("".join(parts))))
        else:
            out.append(ContentBlockStart(block.index, ThinkingBlock("")))
            if parts:
                out.append(ContentBlockDelta(block.index, ThinkingDelta("".join(parts))))
        parts.clear()

    def _close(self, block: _Block, out: list[StreamOutput]) -> None:
        if block.kind == _TOOL:
            if self._repair:
                arguments = "".join(block.parts)
                value = _tool_input(arguments, block.name, True)
                out.append(ContentBlockDelta(block.index, InputJSONDelta(_encode(value).decode())))
        elif block is self._text:
            self._text = None
        elif block is self._thinking:
            self._thinking = None
        block.closed = True
        self._open = None
        out.append(ContentBlockStop(block.index))

    def _flush(self, out: list[StreamOutput]) -> None:
        """Close every block: the choice is finished."""
        if self._open is not None:
            self._close(self._open, out)
        while self._queue:
            block = self._queue.pop(0)
            self._start(block, out)
            self._close(block, out)

    # -- message framing

    def _start_message(self, model: str | None, out: list[StreamOutput]) -> None:
        self._started = True
        message = MessageResponse(id=self._message_id, model=model or self._model, content=[])
        out.append(MessageStart(message))
        out.append(Ping())

    def _finish(self, out: list[StreamOutput]) -> None:
        if not self._started:
            self._start_message(None, out)
        self._flush(out)
        self._done = True
        reason, sequence = stop_reason(
            self._finish_reason, self._matched, self._has_tools, self._refused
        )
        usage = self.usage
        if self._usage_seen:
            counts = DeltaUsage(
                output_tokens=usage.output_tokens,
                input_tokens=usage.input_tokens,
                cache_creation_input_tokens=usage.cache_creation_input_tokens,
                cache_read_input_tokens=usage.cache_read_input_tokens,
            )
        else:
            counts = DeltaUsage(output_tokens=0)  # the upstream never said
        out.append(MessageDelta(MessageDeltaBody(reason, sequence), counts))
        out.append(MessageStop())

    def _upstream_failed(
        self, out: list[StreamOutput], code: Any, kind: str | None, message: str | None
    ) -> None:
        """An error object inside the stream; its code is the status when it is an HTTP one."""
        error_type = _error_type(code, kind)
        status = (
            code
            if isinstance(code, int) and 400 <= code < 600
            else status_for_error_type(error_type)
        )
        self._fail(out, message or "upstream error", status, error_type)

    def _fail(
        self, out: list[StreamOutput], message: str, status: int, error_type: str | None = None
    ) -> None:
        self._done = True
        error = self.error = upstream_error(
            self._provider, message, status=status, error_type=error_type
        )
        out.append(ErrorEvent(ErrorBody(error.error_type, error.message)))


# --- the formats -----------------------------------------------------------------------------


class OpenAIFormat:
    """``openrouter``: any chat-completions upstream, OpenRouter's conventions by default."""

    name: ClassVar[str] = "openrouter"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = _options(options, self.defaults, self.name)

    def build_request(self, request: MessagesRequest, route: Route) -> UpstreamRequest:
        body = _encode(chat_request(request, route.model, self.options))
        return UpstreamRequest(route.provider.api_base_url, self.headers(route), body)

    def headers(self, route: Route) -> dict[str, str]:
        """Bearer auth with the provider's key (never the client's) and its extra headers."""
        provider = route.provider
        headers = {"Content-Type": "application/json"}
        if provider.api_key:
            headers["Authorization"] = f"Bearer {provider.api_key}"
        headers.update(provider.headers)
        return headers

    def parse_response(
        self, body: bytes, route: Route, request: MessagesRequest | None = None
    ) -> MessageResponse:
        try:
            chat = _response_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise UpstreamError(
                f"upstream returned an invalid chat completion: {error}", status=502
            ) from None
        return message_response(chat, route.model, self.options.repair_tool_json)

    def stream_translator(self, request: MessagesRequest, route: Route) -> ChatStreamTranslator:
        return ChatStreamTranslator(route.model, self.options.repair_tool_json, route.provider)

    def error_message(self, status: int, body: bytes) -> str:
        return extract_error_message(body)


class OpenAIPlatformFormat(OpenAIFormat):
    """``openai``: OpenAI's own conventions (``reasoning_effort``, ``max_completion_tokens``)."""

    name: ClassVar[str] = "openai"
    defaults: ClassVar[dict[str, Any]] = {
        "reasoning": "openai",
        "max_tokens_field": "max_completion_tokens",
    }


# The names the transformer registry looks up (trio_router.transformers.BUILTIN_FORMATS).
openrouter = OpenAIFormat
openai = OpenAIPlatformFormat

"""Anthropic Messages API wire types.

Field names and shapes follow https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/docs/build-with-claude/streaming. Unknown request fields are
ignored (msgspec's default), because Claude Code sends beta fields (``context_management``, ...)
that no upstream provider understands.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

JSONObject = dict[str, Any]

# Request ranges from https://docs.anthropic.com/en/api/messages, checked while decoding so that
# they cost nothing extra. max_tokens may be 0 ("Set to `0` to populate the prompt cache without
# generating a response", anthropic-sdk-python 2.14 MessageCreateParams); counts stop at 2^31 - 1
# because providers read them as 32-bit integers (Gemini's maxOutputTokens is an int32).
_INT32_MAX = 2**31 - 1
MaxTokens = Annotated[int, Meta(ge=0, le=_INT32_MAX)]
UnitInterval = Annotated[float, Meta(ge=0, le=1)]  # temperature, top_p: "0.0 to 1.0"
TopK = Annotated[int, Meta(ge=0, le=_INT32_MAX)]
# Anthropic wants budget_tokens >= 1024; the other formats clamp a smaller budget to their
# model's range (providers/gemini.py), so only a budget below 1 is refused.
BudgetTokens = Annotated[int, Meta(ge=1, le=_INT32_MAX)]


# --- content blocks -------------------------------------------------------------------------


class Base64Source(Struct, tag="base64", tag_field="type"):
    media_type: str
    data: str


class URLSource(Struct, tag="url", tag_field="type"):
    url: str


class TextSource(Struct, tag="text", tag_field="type"):
    data: str
    media_type: str = "text/plain"


class ContentSource(Struct, tag="content", tag_field="type"):
    content: str | list[TextBlock | ImageBlock]


class FileSource(Struct, tag="file", tag_field="type"):
    file_id: str


ImageSource = Base64Source | URLSource
# https://docs.anthropic.com/en/docs/build-with-claude/pdf-support and
# https://docs.anthropic.com/en/docs/build-with-claude/citations: a PDF (base64 or URL), plain
# text, custom content blocks, or a Files API id. Typed, so a malformed source is a 400 at decode.
DocumentSource = Base64Source | URLSource | TextSource | ContentSource | FileSource


class TextBlock(Struct, tag="text", tag_field="type", omit_defaults=True):
    text: str
    cache_control: JSONObject | None = None
    citations: list[JSONObject] | None = None


class ImageBlock(Struct, tag="image", tag_field="type", omit_defaults=True):
    source: ImageSource
    cache_control: JSONObject | None = None


class DocumentBlock(Struct, tag="document", tag_field="type", omit_defaults=True):
    source: DocumentSource
    title: str | None = None
    context: str | None = None
    cache_control: JSONObject | None = None


class ToolUseBlock(Struct, tag="tool_use", tag_field="type", omit_defaults=True):
    id: str
    name: str
    input: JSONObject
    cache_control: JSONObject | None = None


class ToolResultBlock(Struct, tag="tool_result", tag_field="type", omit_defaults=True):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock | DocumentBlock] | None = None
    is_error: bool | None = None
    cache_control: JSONObject | None = None


class ThinkingBlock(Struct, tag="thinking", tag_field="type"):
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(Struct, tag="redacted_thinking", tag_field="type"):
    data: str


class ServerToolUseBlock(Struct, tag="server_tool_use", tag_field="type", omit_defaults=True):
    id: str
    name: str
    input: JSONObject
    cache_control: JSONObject | None = None


class WebSearchToolResultBlock(
    Struct, tag="web_search_tool_result", tag_field="type", omit_defaults=True
):
    tool_use_id: str
    content: Any = None
    cache_control: JSONObject | None = None


ContentBlock = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | ServerToolUseBlock
    | WebSearchToolResultBlock
)
ResponseBlock = TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock


# --- request --------------------------------------------------------------------------------


class Message(Struct):
    # Claude Code 2.1 puts {"role": "system", "content": "..."} entries mid-conversation.
    role: str
    content: str | list[ContentBlock]


class Tool(Struct, omit_defaults=True):
    name: str
    description: str | None = None
    input_schema: JSONObject | None = None
    # Server tools (e.g. "web_search_20250305") carry a type and no input_schema.
    type: str | None = None
    cache_control: JSONObject | None = None


class ToolChoice(Struct, omit_defaults=True):
    # https://docs.anthropic.com/en/api/messages#body-tool-choice
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    def __post_init__(self) -> None:
        # msgspec reports this as a ValidationError "... - at `$.tool_choice`".
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type 'tool' needs a `name`")


class Thinking(Struct, omit_defaults=True):
    type: str  # enabled | disabled | adaptive
    budget_tokens: BudgetTokens | None = None


class OutputConfig(Struct, omit_defaults=True):
    effort: str | None = None
    format: JSONObject | None = None


class Metadata(Struct, omit_defaults=True):
    user_id: str | None = None


class MessagesRequest(Struct, omit_defaults=True):
    messages: list[Message]
    # Required by /v1/messages (checked there); count_tokens callers often leave it out.
    model: str = ""
    max_tokens: MaxTokens | None = None
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: UnitInterval | None = None
    top_p: UnitInterval | None = None
    top_k: TopK | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    metadata: Metadata | None = None
    output_config: OutputConfig | None = None


# --- response -------------------------------------------------------------------------------


class Usage(Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageResponse(Struct, tag="message", tag_field="type"):
    id: str
    model: str
    content: list[ResponseBlock]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage = msgspec.field(default_factory=Usage)
    role: str = "assistant"


# --- stream events --------------------------------------------------------------------------


class TextDelta(Struct, tag="text_delta", tag_field="type"):
    text: str


class InputJSONDelta(Struct, tag="input_json_delta", tag_field="type"):
    partial_json: str


class ThinkingDelta(Struct, tag="thinking_delta", tag_field="type"):
    thinking: str


class SignatureDelta(Struct, tag="signature_delta", tag_field="type"):
    signature: str


Delta = TextDelta | InputJSONDelta | ThinkingDelta | SignatureDelta


class MessageStart(Struct, tag="message_start", tag_field="type"):
    message: MessageResponse


class ContentBlockStart(Struct, tag="content_block_start", tag_field="type"):
    index: int
    content_block: ResponseBlock


class ContentBlockDelta(Struct, tag="content_block_delta", tag_field="type"):
    index: int
    delta: Delta


class ContentBlockStop(Struct, tag="content_block_stop", tag_field="type"):
    index: int


class MessageDeltaBody(Struct):
    stop_reason: str | None = None
    stop_sequence: str | None = None


class DeltaUsage(Struct, omit_defaults=True):
    # Required, so that a count of 0 is still sent: the SDK reads it unconditionally.
    output_tokens: int
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageDelta(Struct, tag="message_delta", tag_field="type"):
    delta: MessageDeltaBody
    usage: DeltaUsage


class MessageStop(Struct, tag="message_stop", tag_field="type"):
    pass


class Ping(Struct, tag="ping", tag_field="type"):
    pass


class ErrorBody(Struct):
    type: str
    message: str


class ErrorEvent(Struct, tag="error", tag_field="type"):
    error: ErrorBody


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | ErrorEvent
)

request_decoder = msgspec.json.Decoder(MessagesRequest)
response_decoder = msgspec.json.Decoder(MessageResponse)
event_decoder: msgspec.json.Decoder[StreamEvent] = msgspec.json.Decoder(StreamEvent)


def system_text(system: str | list[TextBlock] | None) -> list[str]:
    """The system prompt as separate text parts, in order."""
    if system is None:
        return []
    if isinstance(system, str):
        return [system] if system else []
    return [block.text for block in system]


def document_text(source: ContentSource) -> str:
    """The text of a custom-content document: its string, or its text blocks joined."""
    if isinstance(source.content, str):
        return source.content
    return "\n".join(b.text for b in source.content if isinstance(b, TextBlock))

"""A provider's "your prompt is too long", said as Anthropic says it.

Anthropic answers an oversized prompt with 400 ``invalid_request_error`` and the message
``prompt is too long: 208310 tokens > 200000 maximum``; Claude Code recognises those words and
compacts the conversation (or tells the user to), where any other wording is a dead end. The
providers' own words, each matched on the error text the format extracted:

- OpenAI (code ``context_length_exceeded``): "This model's maximum context length is 128000
  tokens. However, your messages resulted in 130000 tokens." OpenAI-compatible servers (vLLM,
  OpenRouter: "This endpoint's maximum context length is ...") and DeepSeek say the same, or
  "However, you requested 70000 tokens (69000 in the messages, 1000 in the completion)";
  the prompt's own count is the one in the messages.
- Gemini (400 ``INVALID_ARGUMENT``): "The input token count (1234567) exceeds the maximum number
  of tokens allowed (1048576)."
"""

from __future__ import annotations

import re

from .errors import InvalidRequestError

_MAXIMUM = re.compile(r"maximum context length is (\d+) tokens")
_IN_MESSAGES = re.compile(r"\((\d+) in the messages")
_PROMPT = re.compile(r"(?:resulted in|requested(?: about)?) (\d+) tokens")
_GEMINI = re.compile(
    r"input token count \(?(\d+)\)? exceeds the maximum number of tokens allowed \(?(\d+)\)?"
)
# Statuses a prompt-too-long answer comes with: 400 mostly; some gateways send 413.
_STATUSES = (400, 413)


def prompt_too_long(status: int, message: str) -> InvalidRequestError | None:
    """Anthropic's error for an upstream error that says the prompt does not fit, else None."""
    if status not in _STATUSES:
        return None
    found = _GEMINI.search(message)
    if found is not None:
        tokens, maximum = found.group(1), found.group(2)
    else:
        limit = _MAXIMUM.search(message)
        if limit is None:
            return None
        maximum = limit.group(1)
        count = _IN_MESSAGES.search(message, limit.end()) or _PROMPT.search(message, limit.end())
        if count is None:
            return InvalidRequestError(f"prompt is too long: more than {maximum} tokens")
        tokens = count.group(1)
    return InvalidRequestError(f"prompt is too long: {tokens} tokens > {maximum} maximum")

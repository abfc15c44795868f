"""When a failed upstream attempt is worth another, and how long to wait before it.

Retried (before the first byte reaches the client, messages.py): connection failures and
timeouts (the gateway's 502 and 504), and the statuses that say "not now" rather than "never":
408, 409 (Anthropic's lock conflicts), 429, 500, 502, 503, 504 and 529 (Anthropic's overloaded).
Never retried: 400, 401, 403, 404, 413 and the other 4xx, which the same request gets again.
The Anthropic and OpenAI SDKs retry the same set
(https://docs.anthropic.com/en/api/errors, "Request errors"; openai-python's README, "Retries").

The wait is the provider's own hint when it gives one, else exponential backoff with full jitter
(https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/): a random wait up to
``BASE * 2**n`` seconds, capped at ``CAP``, so that sessions failed by one outage do not come
back in step. Hints, first found wins:

- ``retry-after-ms``: milliseconds (OpenAI's and Anthropic's SDKs read it first).
- ``retry-after``: seconds or an HTTP date (RFC 9110 section 10.2.3); Gemini's ``retryDelay``
  (a ``google.rpc.RetryInfo`` detail, https://ai.google.dev/gemini-api/docs/rate-limits) reaches
  here as ``retry-after`` through the gemini format's ``error_info``; OpenRouter passes its
  providers' ``Retry-After`` on.
- ``x-ratelimit-reset``: OpenRouter's rate-limit reset, an instant in epoch milliseconds
  (https://openrouter.ai/docs/api_reference/limits: "X-RateLimit-* headers on the error
  response"). DeepSeek documents no retry header for its 429 and 503
  (https://api-docs.deepseek.com/quick_start/error_codes): backoff applies.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
BASE_SECONDS = 0.5
CAP_SECONDS = 8.0
# A hint longer than this is not waited for within one request: a fallback, or the client's
# own retry (it gets the header), does better than a connection held open for minutes.
MAX_HINT_SECONDS = 60.0


def is_retryable(status: int, error: BaseException | None = None) -> bool:
    """Whether a failure with ``status`` may pass on another attempt. A provider certificate
    that does not verify (found among the exceptions ``error`` was raised from) is a 502 that
    every attempt would meet again."""
    if status not in RETRYABLE_STATUSES:
        return False
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, ssl.SSLCertVerificationError):
            return False
        error = error.__cause__ or error.__context__
        seen += 1
    return True


def hinted_delay(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait the provider asked for, in seconds, or None when it gave no usable hint.

    ``now`` is the wall clock (``time.time()``), for the hints that are instants.
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            pass
        else:
            return max(0.0, when - (time.time() if now is None else now))
    value = headers.get("x-ratelimit-reset")
    if value is not None and value.isdigit():
        instant = int(value)
        # Epoch seconds are 10 digits until 2286; OpenRouter sends milliseconds.
        seconds = instant / 1000 if instant > 10**11 else instant
        return max(0.0, seconds - (time.time() if now is None else now))
    return None


def backoff(attempt: int) -> float:
    """Full jitter: a random wait in [0, min(CAP, BASE * 2**attempt)) for the 0-based retry."""
    return random.uniform(0.0, min(CAP_SECONDS, BASE_SECONDS * 2**attempt))

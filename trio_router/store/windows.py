"""rpm and tpm as sliding windows over per-second buckets, the same for every backend.

A limited key has one row per second in which it started requests or finished some
(``rate_buckets``: requests started, tokens spent), so a key's window is at most
``WINDOW + BUCKET`` rows however busy the key is. Round 2 measured the row-per-request window
it replaces: at 250 requests/s a key's last minute held 30,000 rows, and counting them was 15 % of
the router's CPU per non-streamed request.

A bucket counts until every request in it has surely left the window: ``second`` holds
requests made in ``[second, second + 1)``, so the bucket leaves ``WINDOW + BUCKET`` seconds
after its start. The window is therefore between 60 and 61 seconds long, never shorter: a key
is never let in above its limit, and ``retry-after`` is at most a second later than the exact
one, never earlier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from . import Limits, Refusal

WINDOW = 60  # seconds: the "per minute" of rpm and tpm
BUCKET = 1  # seconds per bucket


def bucket(now: float) -> int:
    """The bucket a request made at ``now`` (unix seconds) counts in."""
    return math.floor(now)


def horizon(now: float) -> float:
    """Buckets whose second is at or before this have left the window (delete them)."""
    return now - WINDOW - BUCKET


def seconds_until(until: float, now: float) -> int:
    """``retry-after``: whole seconds, rounded up, so a client that waits that long is let in."""
    return max(1, math.ceil(until - now))


def refusal(rows: Sequence[tuple[int, int, int]], limits: Limits, now: float) -> Refusal | None:
    """The rpm or tpm refusal for a key whose window is ``rows`` (second, requests, tokens),
    oldest first and with the expired buckets gone, or None when both have room. The refusal's
    ``retry-after`` is when enough of the oldest buckets have left for the count to fall below
    the limit."""
    for limit, column, cap in (("rpm", 1, limits.rpm), ("tpm", 2, limits.tpm)):
        if cap is None:
            continue
        total = sum(row[column] for row in rows)
        if total < cap:
            continue
        for row in rows:
            total -= row[column]
            if total < cap:
                return Refusal(limit, seconds_until(row[0] + BUCKET + WINDOW, now))
    return None

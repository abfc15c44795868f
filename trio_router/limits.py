"""Per-key limits and providers' fair-share caps, enforced across workers through the store.

Counts live only in the store (one transaction per decision, see :class:`~.store.Store`), so
two workers, or two hosts on PostgreSQL later, refuse and admit as one would. What a worker
keeps in memory is only what it must renew or wake: the leases of its open requests, and an
event per provider so that its own waiters look again at once when its own request ends (a
slot freed by another worker is seen at the next poll, ``POLL_SECONDS``).

A lease is a row per open request that a limit counts (a key's ``concurrent``, a provider's
``max_concurrent``). It is deleted in the same transaction that records the request's usage,
on every exit path; a worker renews its leases' expiry every ``HEARTBEAT_SECONDS``, so the
leases of a worker that died expire within ``LEASE_SECONDS`` and no slot leaks.
"""

from __future__ import annotations

import itertools
import uuid

import trio

from .errors import RouterError
from .logs import logger
from .store import ClientKey, Store

LEASE_SECONDS = 30.0
HEARTBEAT_SECONDS = 10.0
POLL_SECONDS = 0.1
# How long a request waits for a provider slot before its 429: long enough to ride out a burst,
# short enough that a client's own retry (after retry-after) is the better wait.
SLOT_WAIT_SECONDS = 20.0
APIKEY_HOLDER = ""  # the key id, for fair share, of requests made with APIKEY or none


class LimitExceeded(RouterError):
    """A limit of the gateway's own (not the provider's) refused the request."""

    status = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, headers={"retry-after": str(retry_after)})


_MESSAGES = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "budget_tokens": "token budget",
    "budget_usd": "USD budget",
    "concurrent": "concurrent requests",
}


class Limiter:
    """One worker's side of the limits."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.worker = uuid.uuid4().hex
        # Lease ids: this worker's id and a count, unique across workers and hosts. uuid4 per
        # request read os.urandom (a system call) and was 1.2 % of a non-streamed request's CPU.
        self._leases = itertools.count()
        self.open: set[str] = set()  # this worker's leases, renewed while they are open
        self._freed: dict[str, trio.Event] = {}

    def new_lease(self) -> str:
        return f"{self.worker}.{next(self._leases)}"

    async def admit(self, key: ClientKey, lease: str) -> bool:
        """Count a request of ``key`` as started, or raise a 429 with its ``retry-after``.

        Returns whether ``lease`` was taken (the key has a ``concurrent`` limit).
        """
        taken = key.limits.concurrent is not None
        if taken:
            self.open.add(lease)
        refusal = await self.store.admit(key, lease if taken else None, self.worker, LEASE_SECONDS)
        if refusal is None:
            return taken
        self.open.discard(lease)
        limit = getattr(key.limits, refusal.limit)
        what = _MESSAGES[refusal.limit]
        raise LimitExceeded(
            f"rate limit: this API key's {what} limit ({limit}) is reached;"
            f" retry after {refusal.retry_after} s",
            refusal.retry_after,
        )

    async def take_slot(self, provider: str, cap: int, key_id: str, lease: str) -> None:
        """Wait for one of ``provider``'s ``cap`` slots, fairly between keys, for at most
        ``SLOT_WAIT_SECONDS``; then a 429. A cancel (the client left) leaves the queue too."""
        self.open.add(lease)
        granted = False
        try:
            with trio.move_on_after(SLOT_WAIT_SECONDS):
                while True:
                    freed = self._freed.setdefault(provider, trio.Event())
                    if await self.store.take_slot(
                        provider, cap, key_id, lease, self.worker, LEASE_SECONDS
                    ):
                        granted = True
                        return
                    with trio.move_on_after(POLL_SECONDS):
                        await freed.wait()
        finally:
            if not granted:
                with trio.CancelScope(shield=True):
                    await self.store.leave_queue(lease)
        raise LimitExceeded(
            f"provider {provider!r} is at its max_concurrent ({cap}): no slot freed within"
            f" {SLOT_WAIT_SECONDS:.0f} s",
            1,
        )

    def released(self, lease: str, provider: str | None) -> None:
        """``lease`` is gone from the store: stop renewing it, and wake this worker's waiters."""
        self.open.discard(lease)
        if provider is not None:
            freed = self._freed.pop(provider, None)
            if freed is not None:
                freed.set()

    async def heartbeat(self) -> None:
        """Renew this worker's open leases, for as long as the worker serves."""
        while True:
            await trio.sleep(HEARTBEAT_SECONDS)
            if self.open:
                try:
                    await self.store.heartbeat(sorted(self.open), LEASE_SECONDS)
                except Exception:
                    logger.exception("could not renew this worker's leases")

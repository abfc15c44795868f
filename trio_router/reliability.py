"""What one worker remembers about its providers' health: circuit breakers, key pools, load.

Kept per worker (nothing is shared through the store: one worker's view of a provider is enough
to stop sending it requests that fail) and per provider *name*, in :class:`Reliability`, which
the request handler holds for the worker's lifetime: a config reload keeps a provider's breaker
and its keys' cool-downs. A pool whose keys changed in a reload starts afresh, so an operator
who puts a revoked key back (fixed at the provider) gets it used again.
"""

from __future__ import annotations

import trio

from .config import Provider


class Breaker:
    """Closed, then open after ``threshold`` consecutive failures, for ``cooldown`` seconds;
    then half-open: one request (the probe) goes through, and its outcome closes the breaker or
    opens it for another cool-down. Requests meanwhile are refused, not queued behind the probe.
    """

    __slots__ = ("failures", "opened_at", "probing")

    def __init__(self) -> None:
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    def admits(self, threshold: int, cooldown: float) -> bool:
        """Whether a request may go to the provider now; True makes it the probe when the
        breaker is open and cooled down (the caller must then report its outcome or
        :meth:`abandoned`)."""
        if threshold <= 0 or self.opened_at is None:
            return True
        if self.probing or trio.current_time() - self.opened_at < cooldown:
            return False
        self.probing = True
        return True

    def retry_after(self, cooldown: float) -> float:
        """Seconds until the breaker lets a probe through."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + cooldown - trio.current_time())

    def succeeded(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def failed(self, threshold: int) -> bool:
        """Count a failure; True when it opened (or re-opened) the breaker."""
        self.failures += 1
        opens = self.probing or (threshold > 0 and self.failures >= threshold)
        self.probing = False
        if opens:
            self.opened_at = trio.current_time()
        return opens

    def abandoned(self) -> None:
        """The probe ended without an answer either way (the client left): let another probe."""
        self.probing = False


class KeyPool:
    """A provider's ``api_keys``, handed out round robin, minus those resting or revoked."""

    __slots__ = ("keys", "next", "resting", "revoked")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.next = 0
        self.resting: dict[str, float] = {}  # key -> trio time it may be used again
        self.revoked: set[str] = set()

    def pick(self, tried: set[str]) -> str | None:
        """The next usable key not in ``tried``; when every such key is resting, the one that
        rests least (the provider's 429 then says so, and the request's retries wait); None
        when none is left."""
        now = trio.current_time()
        count = len(self.keys)
        soonest: str | None = None
        for step in range(count):
            key = self.keys[(self.next + step) % count]
            if key in self.revoked or key in tried:
                continue
            until = self.resting.get(key, 0.0)
            if until <= now:
                self.next = (self.next + step + 1) % count
                return key
            if soonest is None or until < self.resting[soonest]:
                soonest = key
        return soonest

    def ready(self) -> bool:
        """Whether a key may be used now (none revoked or resting)."""
        now = trio.current_time()
        return any(k not in self.revoked and self.resting.get(k, 0.0) <= now for k in self.keys)

    def rest(self, key: str, seconds: float) -> None:
        self.resting[key] = trio.current_time() + seconds

    def revoke(self, key: str) -> None:
        self.revoked.add(key)

    @property
    def live(self) -> int:
        return len(self.keys) - len(self.revoked)


class Reliability:
    """A worker's breakers and key pools by provider name, and its open upstream requests."""

    def __init__(self) -> None:
        self.breakers: dict[str, Breaker] = {}
        self.pools: dict[str, KeyPool] = {}
        self.open = 0  # upstream requests between their first attempt and their end

    def breaker(self, provider: str) -> Breaker:
        found = self.breakers.get(provider)
        if found is None:
            found = self.breakers[provider] = Breaker()
        return found

    def pool(self, provider: Provider) -> KeyPool:
        keys = tuple(provider.api_keys)
        found = self.pools.get(provider.name)
        if found is None or found.keys != keys:
            found = self.pools[provider.name] = KeyPool(keys)
        return found

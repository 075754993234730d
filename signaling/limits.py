"""Request rate limits per client address: a token bucket each, answered 429 with Retry-After."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimited(Exception):
    """Too many requests from one address; ``retry_after`` whole seconds until the next is allowed."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimiter:
    """``burst`` requests at once, then ``per_minute`` a minute, for each key (a client address)."""

    MAX_KEYS = 10_000  # past this many tracked addresses, the ones with full buckets are forgotten

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_minute > 0 and burst >= 1")
        self.rate = per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, what: str = "requests") -> None:
        """Spend one token of ``key``'s bucket or raise :class:`RateLimited`."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self.rate)
            raise RateLimited(f"too many {what} from this address; try again in {wait} s", wait)
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > self.MAX_KEYS:
            self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {k: (t, at) for k, (t, at) in self._buckets.items() if now - at < full_after}

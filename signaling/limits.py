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

    MAX_KEYS = 10_000  # past this many tracked addresses, the least recently seen are forgotten

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_minute > 0 and burst >= 1")
        self.rate = per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at), least recently seen first

    def take(self, key: str, what: str = "requests") -> None:
        """Spend one token of ``key``'s bucket or raise :class:`RateLimited`."""
        now = self._clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))  # re-inserted last: most recent
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.MAX_KEYS:
            del self._buckets[next(iter(self._buckets))]
        if not allowed:
            wait = math.ceil((1.0 - tokens) / self.rate)
            raise RateLimited(f"too many {what} from this address; try again in {wait} s", wait)

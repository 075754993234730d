"""The per-address rate limiter: a token bucket per key, a bounded number of keys."""

from __future__ import annotations

import pytest

from signaling.limits import RateLimited, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate_with_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(RateLimited) as refused:
        limiter.take("a", "offers")
    assert refused.value.retry_after == 1 and "too many offers" in str(refused.value)
    limiter.take("b")  # another address has its own bucket
    clock.now = 1.0
    limiter.take("a")  # one token a second comes back


def test_the_number_of_tracked_addresses_stays_bounded_and_the_oldest_go_first(monkeypatch) -> None:
    monkeypatch.setattr(RateLimiter, "MAX_KEYS", 100)
    clock = Clock()
    limiter = RateLimiter(per_minute=1, burst=1, clock=clock)
    limiter.take("first")
    for number in range(500):  # all within the same second: no bucket has refilled
        limiter.take(f"address-{number}")
    assert len(limiter._buckets) == 100
    assert "first" not in limiter._buckets and "address-499" in limiter._buckets
    with pytest.raises(RateLimited):
        limiter.take("address-499")  # a recent address keeps its empty bucket

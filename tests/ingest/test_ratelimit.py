"""Rate limiting: per-source buckets, and adaptive throttling of low-priority sources under load."""

from __future__ import annotations

import pytest

from ingest.ratelimit import RateLimiter, pressure_from_backlog


def _passed(limiter: RateLimiter, source: str, priority: float, seconds: int, rate: float = 100) -> int:
    """Requests let through when a source offers 1,000/s for ``seconds`` (explicit clock)."""
    passed = 0
    for tick in range(seconds * 1000):
        if limiter.acquire(source, rate, now=tick / 1000, priority=priority) == 0:
            passed += 1
    return passed


def test_a_source_gets_its_rate_and_a_retry_after() -> None:
    limiter = RateLimiter(burst_seconds=1)
    assert 100 <= _passed(limiter, "gh", 0.5, 3) <= 100 * 3 + 100
    wait = limiter.acquire("gh", 100, now=3.0)
    assert 0 < wait <= 0.02


def test_under_load_low_priority_sources_are_throttled_first() -> None:
    limiter = RateLimiter(burst_seconds=1)
    limiter.pressure = 0.8
    low = _passed(limiter, "marketing", 0.1, 5)
    high = _passed(limiter, "payments", 1.0, 5)
    assert high >= 500  # a priority-1 source keeps its full rate
    assert low < high * 0.4  # rate x (1 - 0.8 x 0.9) = 28%
    limiter.pressure = 0.0
    assert _passed(limiter, "marketing", 0.1, 5) >= 500  # load gone: back to full rate


@pytest.mark.parametrize(("backlog", "expected"), [(0, 0.0), (5_000, 0.0), (10_000, 1 / 3), (20_000, 1.0)])
def test_pressure_follows_the_backlog(backlog: int, expected: float) -> None:
    assert pressure_from_backlog(backlog, 10_000) == pytest.approx(expected)

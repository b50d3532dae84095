"""Per-source token buckets: a flood from one source gets 429 + Retry-After, others flow on.

Buckets live in each API process (no round trip on the hot path), so with N API processes a
source's effective limit is N times its rate.

Adaptive: under load (``pressure`` 0..1, from the workers' backlog) a source's rate shrinks by
``pressure * (1 - priority)``: low-priority sources are throttled first, a priority-1 source never.
A source's priority is its ``priority`` option (0..1, default 0.5).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

DEFAULT_RATE = 20_000.0  # events per second per source, unless the source sets option rate_limit


@dataclass(slots=True)
class _Bucket:
    rate: float
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, default_rate: float = DEFAULT_RATE, burst_seconds: float = 2.0) -> None:
        self.default_rate = default_rate
        self.burst_seconds = burst_seconds
        self.pressure = 0.0  # set by the backlog watcher
        self._buckets: dict[str, _Bucket] = {}

    def acquire(
        self, source: str, rate: float | None = None, now: float | None = None, priority: float = 0.5
    ) -> float:
        """0 if the event may pass, else the seconds to wait before retrying. rate <= 0: unlimited."""
        rate = self.default_rate if rate is None else rate
        if rate <= 0:
            return 0.0
        shrink = min(1.0, max(0.0, self.pressure)) * (1.0 - min(1.0, max(0.0, priority)))
        rate = max(rate * 0.01, rate * (1.0 - shrink))
        now = time.monotonic() if now is None else now
        capacity = max(1.0, rate * self.burst_seconds)
        bucket = self._buckets.get(source)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[source] = _Bucket(rate, capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate


def retry_after(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))


def pressure_from_backlog(backlog: int, threshold: int) -> float:
    """0 below half the alert threshold, rising linearly to 1 at twice it."""
    if threshold <= 0:
        return 0.0
    return min(1.0, max(0.0, (backlog - threshold / 2) / (1.5 * threshold)))

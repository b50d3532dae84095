"""The one exception boundary of each background unit (DESIGN invariant 11).

A unit — a stream entry, a context in a lifecycle pass, a batch of vectors — that fails on its own is
logged once with its traceback, counted in ``hookline_unit_failures_total{unit, error}``, and moved on
(retried, dead-lettered or skipped) by its owner. Whatever it raised: no event, of any shape, stops a
process. An outage is not the unit's fault: it stops the batch or the pass instead (nothing is
acknowledged or recorded as failed), and the loop backs off and tries again.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import structlog

from memory.errors import StoreUnavailable
from memory.metrics import UNIT_FAILURES

log = structlog.get_logger(__name__)

# What says "a store is unreachable right now" rather than "this unit is bad".
OUTAGES: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    aioredis.ConnectionError,
    aioredis.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OUTAGES)


def describe(exc: BaseException, limit: int = 2000) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unit_failed(unit: str, exc: BaseException, **fields: Any) -> None:
    """Log the failure with its traceback and count it; the caller decides what happens to the unit."""
    UNIT_FAILURES.labels(unit=unit, error=type(exc).__name__).inc()
    log.error("unit.failed", unit=unit, error=describe(exc, 500), exc_info=exc, **fields)

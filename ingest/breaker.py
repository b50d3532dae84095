"""A circuit breaker per source: a source that keeps failing is paused instead of burning attempts.

Closed: everything flows, outcomes are recorded over a rolling window. When the failure rate over
at least ``min_samples`` reaches ``threshold``, it opens for ``cooldown_s``; its events are
rescheduled without using up an attempt. Then it is half-open: one probe event goes through; success
closes it, failure opens it again (with the cooldown doubled, up to ``max_cooldown_s``).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

import structlog

from ingest.metrics import BREAKER_OPEN

log = structlog.get_logger(__name__)


class State(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class Breaker:
    source: str
    window: int = 20
    min_samples: int = 10
    threshold: float = 0.5
    cooldown_s: float = 30.0
    max_cooldown_s: float = 600.0
    state: State = State.CLOSED
    opened_until: float = 0.0
    _results: deque[bool] = field(default_factory=deque)
    _cooldown: float = 0.0
    _probing: bool = False

    def allow(self, now: float | None = None) -> bool:
        """May an event of this source be attempted now?"""
        now = time.monotonic() if now is None else now
        if self.state is State.OPEN and now >= self.opened_until:
            self.state, self._probing = State.HALF_OPEN, False
        if self.state is State.CLOSED:
            return True
        if self.state is State.HALF_OPEN and not self._probing:
            self._probing = True  # exactly one probe at a time
            return True
        return False

    def record(self, ok: bool, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.state is State.HALF_OPEN:
            if ok:
                self._close()
            else:
                self._open(now, self._cooldown * 2)
            return
        self._results.append(ok)
        if len(self._results) > self.window:
            self._results.popleft()
        failures = self._results.count(False)
        if len(self._results) >= self.min_samples and failures / len(self._results) >= self.threshold:
            self._open(now, self.cooldown_s)

    def _open(self, now: float, cooldown: float) -> None:
        self._cooldown = min(self.max_cooldown_s, max(cooldown, self.cooldown_s))
        self.state, self.opened_until, self._probing = State.OPEN, now + self._cooldown, False
        self._results.clear()
        BREAKER_OPEN.labels(source=self.source).set(1)
        log.error("breaker.open", source=self.source, cooldown_s=self._cooldown)

    def _close(self) -> None:
        self.state, self._probing, self._cooldown = State.CLOSED, False, 0.0
        self._results.clear()
        BREAKER_OPEN.labels(source=self.source).set(0)
        log.info("breaker.closed", source=self.source)


class Breakers:
    def __init__(self, **options: float) -> None:
        self._options = options
        self._by_source: dict[str, Breaker] = {}

    def __getitem__(self, source: str) -> Breaker:
        breaker = self._by_source.get(source)
        if breaker is None:
            breaker = self._by_source[source] = Breaker(source, **self._options)  # type: ignore[arg-type]
        return breaker

    def open_sources(self) -> list[str]:
        return [name for name, b in self._by_source.items() if b.state is not State.CLOSED]

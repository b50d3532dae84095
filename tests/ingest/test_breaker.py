"""The per-source circuit breaker, driven with an explicit clock."""

from __future__ import annotations

from ingest.breaker import Breaker, Breakers, State


def test_opens_on_the_failure_rate_and_half_opens_with_one_probe() -> None:
    breaker = Breaker("gh", window=10, min_samples=4, threshold=0.5, cooldown_s=30)
    for ok in (True, False, True):
        breaker.record(ok, now=0)
    assert breaker.state is State.CLOSED and breaker.allow(now=0)
    breaker.record(False, now=1)  # 2 failures out of 4
    assert breaker.state is State.OPEN
    assert not breaker.allow(now=10)
    assert breaker.allow(now=31) and breaker.state is State.HALF_OPEN  # the probe
    assert not breaker.allow(now=31)  # only one probe at a time
    breaker.record(True, now=32)
    assert breaker.state is State.CLOSED and breaker.allow(now=32)


def test_a_failed_probe_reopens_with_a_longer_cooldown() -> None:
    breaker = Breaker("gh", min_samples=2, threshold=1.0, cooldown_s=10, max_cooldown_s=25)
    breaker.record(False, now=0)
    breaker.record(False, now=0)
    assert breaker.allow(now=10)
    breaker.record(False, now=10)
    assert breaker.state is State.OPEN and not breaker.allow(now=29) and breaker.allow(now=30.1)
    breaker.record(False, now=31)
    assert breaker.opened_until == 31 + 25  # doubled again, capped


def test_sources_are_independent() -> None:
    breakers = Breakers(min_samples=1, threshold=1.0)
    breakers["bad"].record(False, now=0)
    assert breakers.open_sources() == ["bad"]
    assert breakers["good"].allow(now=0)

"""Poison events: whatever a mapper, the decoder or a worker turn raises — exception types that no list
in the code names — the worker stays up, the entry is retried and then dead-lettered with a metric, and
the rest of the stream flows (DESIGN invariant 11). Real Redis (both kinds) and PostgreSQL."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
import pytest
from prometheus_client import REGISTRY

from ingest import dlq, envelope
from ingest import worker as worker_module
from ingest.retry import RetryPolicies, RetryPolicy
from ingest.stream import StreamProducer, Submission
from ingest.worker import Worker, WorkerConfig
from memory import keys
from memory.mappers import base as mappers
from memory.models import MappedEvent
from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import wait_until

FAST = RetryPolicies(default=RetryPolicy(base_s=0.01, cap_s=0.02, max_attempts=3))
CONFIG = WorkerConfig(batch_size=20, block_ms=50, claim_idle_ms=60_000, max_backoff_s=0.05, retries=FAST)


class Unlisted(Exception):
    """An exception type nothing in Hookline names."""


class Surprising(LookupError):
    """A built-in family the old hand-written list did not name either (LookupError, not KeyError)."""


class PoisonousMapper:
    """The GitHub mapper, except that a payload carrying ``"poison"`` raises ``exc`` from ``map``."""

    def __init__(self, inner: Any, exc: type[BaseException]) -> None:
        self.inner = inner
        self.exc = exc

    def map(self, event_type: str, payload: Any) -> MappedEvent:
        if isinstance(payload, dict) and "poison" in payload:
            raise self.exc(f"mapper exploded on {payload['poison']}")
        mapped: MappedEvent = self.inner.map(event_type, payload)
        return mapped


def _issue(number: int, poison: str | None = None) -> bytes:
    payload = copy.deepcopy(load_fixture("issues_opened"))
    payload["issue"]["number"] = number
    payload["issue"]["title"] = f"Issue {number}"
    if poison is not None:
        payload["poison"] = poison
    return orjson.dumps(payload)


async def _enqueue(rt: Runtime, producer: StreamProducer, tenant: str, delivery: str, body: bytes) -> None:
    data = envelope.encode(
        envelope.Envelope(
            tenant, "gh", "github", "issues", delivery, f"gh:{delivery}", datetime.now(UTC), body
        )
    )
    partition = keys.partition_of(tenant, "gh", rt.settings.partitions)
    await producer.submit(
        Submission(
            keys.dedup_window(partition, tenant, "gh", f"gh:{delivery}"),
            60,
            keys.events_stream(partition),
            keys.accepted_counter(partition),
            data,
        )
    )


@asynccontextmanager
async def _running(worker: Worker, producer: StreamProducer) -> AsyncIterator[anyio.Event]:
    """The worker and the producer as tasks; the event is set if ``Worker.run`` ever returns."""
    ended = anyio.Event()

    async def run_worker() -> None:
        try:
            await worker.run()
        finally:
            ended.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="producer")
        tasks.start_soon(run_worker, name="worker")
        try:
            yield ended
        finally:
            worker.stop()
            tasks.cancel_scope.cancel()


def _failures(unit: str, error: str) -> float:
    return REGISTRY.get_sample_value("hookline_unit_failures_total", {"unit": unit, "error": error}) or 0.0


async def _applied(rt: Runtime, service: MemoryService, tenant: str, numbers: range) -> bool:
    found = {event.id for event in await service.recent_events(tenant, limit=100)}
    return {f"gh:i{n}" for n in numbers} <= found


async def _hot_ids(rt: Runtime, tenant: str) -> set[str]:
    ids: set[str] = set()
    async for key in rt.redis.scan_iter(match=f"hl:{{c:{tenant}:*}}:events"):
        ids |= {k.decode() for k in await rt.redis.hkeys(key)}
    return ids


@pytest.mark.parametrize("exc", [Unlisted, Surprising, RecursionError, UnicodeError])
async def test_a_mapper_that_raises_anything_is_retried_then_dead_lettered(
    rt: Runtime, tenant: str, monkeypatch: pytest.MonkeyPatch, exc: type[Exception]
) -> None:
    monkeypatch.setitem(mappers._MAPPERS, "github", PoisonousMapper(mappers._MAPPERS["github"], exc))
    service = MemoryService(rt)
    producer = StreamProducer(rt.redis)
    worker = Worker(rt.redis, service.apply_hot, rt.settings.partitions, CONFIG, "poison-0")
    before = _failures("event:context", exc.__name__)
    async with _running(worker, producer) as ended:
        for n in range(6):
            await _enqueue(rt, producer, tenant, f"i{n}", _issue(n))
        await _enqueue(rt, producer, tenant, "bad", _issue(100, poison="the first"))
        for n in range(6, 12):
            await _enqueue(rt, producer, tenant, f"i{n}", _issue(n))

        async def settled() -> bool:
            letters = await dlq.list_dead(rt.redis, 50)
            mine = [d for d in letters if d.tenant == tenant]
            applied = {f"gh:i{n}" for n in range(12)} <= await _hot_ids(rt, tenant)
            return applied and len(mine) == 1

        await wait_until(settled, within=30)
        assert not ended.is_set()  # the worker is still running
        letter = next(d for d in await dlq.list_dead(rt.redis, 50) if d.tenant == tenant)
        assert exc.__name__ in letter.error and "mapper exploded" in letter.error
        assert letter.attempts == 3 and letter.group == "context"
        assert "gh:bad" not in await _hot_ids(rt, tenant)
        assert _failures("event:context", exc.__name__) >= before + 3  # one per attempt

        await _enqueue(rt, producer, tenant, "later", _issue(200))  # and what follows still flows

        async def later_applied() -> bool:
            return "gh:later" in await _hot_ids(rt, tenant)

        await wait_until(later_applied, within=10)
        assert not ended.is_set()


async def test_an_entry_that_cannot_be_decoded_in_any_way_is_dead_lettered_at_once(
    rt: Runtime, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = worker_module.to_event

    def to_event(decoded: envelope.Envelope, entry_id: str) -> Any:
        if b"poison" in decoded.payload:
            raise Unlisted("the decoder met something new")
        return real(decoded, entry_id)

    monkeypatch.setattr(worker_module, "to_event", to_event)
    service = MemoryService(rt)
    producer = StreamProducer(rt.redis)
    worker = Worker(rt.redis, service.apply_hot, rt.settings.partitions, CONFIG, "poison-1")
    before = _failures("decode:context", "Unlisted")
    async with _running(worker, producer) as ended:
        await _enqueue(rt, producer, tenant, "bad", _issue(1, poison="decoder"))
        await _enqueue(rt, producer, tenant, "i2", _issue(2))

        async def settled() -> bool:
            mine = [d for d in await dlq.list_dead(rt.redis, 50) if d.tenant == tenant]
            return len(mine) == 1 and "gh:i2" in await _hot_ids(rt, tenant)

        await wait_until(settled, within=30)
        letter = next(d for d in await dlq.list_dead(rt.redis, 50) if d.tenant == tenant)
        assert "Unlisted" in letter.error and letter.attempts == 1  # never retried: it cannot change
        assert _failures("decode:context", "Unlisted") == before + 1
        assert not ended.is_set()


async def test_a_turn_that_fails_in_an_unexpected_way_backs_off_and_carries_on(
    rt: Runtime, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = Worker._reclaim

    async def reclaim(self: Worker) -> list[Any]:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise Unlisted("housekeeping broke")
        return await real(self)

    monkeypatch.setattr(Worker, "_reclaim", reclaim)
    service = MemoryService(rt)
    producer = StreamProducer(rt.redis)
    worker = Worker(rt.redis, service.apply_hot, rt.settings.partitions, CONFIG, "poison-2")
    before = _failures("worker:context", "Unlisted")
    async with _running(worker, producer) as ended:
        await _enqueue(rt, producer, tenant, "i1", _issue(1))

        async def applied() -> bool:
            return "gh:i1" in await _hot_ids(rt, tenant)

        await wait_until(applied, within=30)
        assert not ended.is_set() and calls["n"] >= 3
        assert _failures("worker:context", "Unlisted") == before + 2

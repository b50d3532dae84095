"""Retries and dead letters in the worker, on real Redis (both kinds) and PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime

import anyio

from ingest import envelope
from ingest.retry import RetryPolicies, RetryPolicy, RetryQueue
from ingest.stream import StreamProducer, Submission
from ingest.worker import Worker, WorkerConfig
from memory import keys
from memory.models import Event
from memory.runtime import Runtime
from memory.service import MemoryService, Rejected
from tests.fixtures.github_examples import load_fixture
from tests.helpers import wait_until

FAST = RetryPolicies(default=RetryPolicy(base_s=0.01, cap_s=0.02, max_attempts=3))


def test_full_jitter_stays_within_the_exponential_cap() -> None:
    policy = RetryPolicy(base_s=1, cap_s=60, max_attempts=9)
    rng = random.Random(1)
    for attempt in range(1, 12):
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= min(60, 2**attempt)
        assert max(delays) > min(60, 2**attempt) * 0.8  # jitter spreads over the whole range


async def _enqueue(rt: Runtime, producer: StreamProducer, tenant: str, delivery: str) -> None:
    body = envelope.orjson.dumps(load_fixture("push"))
    data = envelope.encode(
        envelope.Envelope(tenant, "gh", "github", "push", delivery, f"gh:{delivery}", datetime.now(UTC), body)
    )
    p = keys.partition_of(tenant, "gh", rt.settings.partitions)
    key = f"gh:{delivery}"
    await producer.submit(
        Submission(
            keys.dedup_window(p, tenant, "gh", key), 60, keys.events_stream(p), keys.accepted_counter(p), data
        )
    )


class Flaky:
    """A real handler (the memory service) that fails for one event while ``broken`` is set."""

    def __init__(self, service: MemoryService, poison: str) -> None:
        self.service, self.poison, self.broken, self.calls = service, poison, True, 0

    async def __call__(self, events: Sequence[Event]) -> Sequence[Rejected]:
        self.calls += 1
        if self.broken and any(e.id == self.poison for e in events):
            raise ValueError(f"cannot handle {self.poison}")
        return await self.service.apply_events(events)


async def test_a_failing_event_is_retried_then_dead_lettered_while_others_flow(
    rt: Runtime, tenant: str
) -> None:
    service = MemoryService(rt)
    handler = Flaky(service, "gh:poison")
    producer = StreamProducer(rt.redis)
    config = WorkerConfig(batch_size=10, block_ms=20, retries=FAST)
    worker = Worker(rt.redis, handler, rt.settings.partitions, config, "w-0")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="producer")
        tasks.start_soon(worker.run, name="worker")
        for i in range(5):
            await _enqueue(rt, producer, tenant, f"ok{i}")
        await _enqueue(rt, producer, tenant, "poison")
        for i in range(5, 10):
            await _enqueue(rt, producer, tenant, f"ok{i}")

        async def settled() -> bool:
            applied = len(await service.recent_events(tenant, limit=100))
            dead = await rt.redis.xlen(keys.dead_letters())
            # the retry ZSET lets go of a dead-lettered item just after the DLQ has it
            return applied == 10 and dead == 1 and await RetryQueue(rt.redis, "context").size() == 0

        await wait_until(settled)
        worker.stop()
        tasks.cancel_scope.cancel()
    ((_, fields),) = await rt.redis.xrange(keys.dead_letters())
    assert fields[b"attempts"] == b"3" and b"ValueError: cannot handle gh:poison" in fields[b"error"]
    assert fields[b"group"] == b"context"
    queue = RetryQueue(rt.redis, "context")
    assert await queue.size() == 0  # dead-lettered items leave the retry ZSET
    assert not await rt.redis.hgetall(keys.attempts("context"))


async def test_a_retry_that_succeeds_is_applied_once_and_forgotten(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    handler = Flaky(service, "gh:late")
    producer = StreamProducer(rt.redis)
    many = RetryPolicies(default=RetryPolicy(base_s=0.01, cap_s=0.02, max_attempts=1000))
    worker = Worker(rt.redis, handler, rt.settings.partitions, WorkerConfig(block_ms=20, retries=many), "w-0")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="producer")
        tasks.start_soon(worker.run, name="worker")
        await _enqueue(rt, producer, tenant, "late")

        async def retried() -> bool:
            return int(await rt.redis.hget(keys.attempts("context"), await _member(rt)) or 0) >= 2

        await wait_until(retried)
        handler.broken = False  # the cause is fixed

        async def applied() -> bool:
            return (
                len(await service.recent_events(tenant)) == 1
                and await RetryQueue(rt.redis, "context").size() == 0
            )

        await wait_until(applied)
        worker.stop()
        tasks.cancel_scope.cancel()
    assert await rt.redis.xlen(keys.dead_letters()) == 0
    ctx = await service.get_context(tenant, (await service.recent_events(tenant))[0].context_id)
    assert ctx.head.event_count == 1


async def _member(rt: Runtime) -> str:
    for p in range(rt.settings.partitions):
        rows = await rt.redis.xrange(keys.events_stream(p))
        if rows:
            entry = rows[0][0].decode()
            return f"{keys.events_stream(p)}|{entry}"
    return ""

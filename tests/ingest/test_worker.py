"""The context worker against real Redis (both kinds) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import anyio

from ingest import envelope
from ingest.dedup import Outcome
from ingest.stream import StreamProducer, Submission
from ingest.worker import Worker, WorkerConfig
from memory import keys
from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import wait_until

CONFIG = WorkerConfig(batch_size=50, block_ms=50, claim_idle_ms=60_000)


def _envelope(tenant: str, delivery: str, event_type: str = "push", payload: bytes | None = None) -> bytes:
    body = payload if payload is not None else envelope.orjson.dumps(load_fixture("push"))
    return envelope.encode(
        envelope.Envelope(
            tenant, "gh", "github", event_type, delivery, f"gh:{delivery}", datetime.now(UTC), body
        )
    )


async def _enqueue(rt: Runtime, producer: StreamProducer, tenant: str, data: bytes, key: str) -> Outcome:
    partition = keys.partition_of(tenant, "gh", rt.settings.partitions)
    result = await producer.submit(
        Submission(
            keys.dedup_window(partition, tenant, "gh", key),
            60,
            keys.events_stream(partition),
            keys.accepted_counter(partition),
            data,
        )
    )
    return result.outcome


@asynccontextmanager
async def running(worker: Worker, producer: StreamProducer) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="producer")
        tasks.start_soon(worker.run, name="worker")
        try:
            yield
        finally:
            worker.stop()
            tasks.cancel_scope.cancel()


async def _pending(rt: Runtime) -> int:
    total = 0
    for partition in range(rt.settings.partitions):
        for info in await rt.redis.xinfo_groups(keys.events_stream(partition)):
            total += int(info["pending"])
    return total


async def test_events_are_applied_once_and_acknowledged(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    producer = StreamProducer(rt.redis)
    worker = Worker(rt.redis, service.apply_events, rt.settings.partitions, CONFIG, "test-0")
    async with running(worker, producer):
        for i in range(30):
            assert (
                await _enqueue(rt, producer, tenant, _envelope(tenant, f"d{i}"), f"gh:d{i}") is Outcome.QUEUED
            )
        assert (
            await _enqueue(rt, producer, tenant, _envelope(tenant, "d0"), "gh:d0") is Outcome.DUPLICATE_WINDOW
        )

        async def all_applied() -> bool:
            return len(await service.recent_events(tenant, limit=100)) == 30

        await wait_until(all_applied)
        await wait_until(lambda: _is_zero(_pending(rt)))
    hits = await service.search_context(tenant, "", limit=5)
    assert len(hits) == 1 and hits[0].context.event_count == 30


async def _is_zero(value: object) -> bool:
    return await value == 0  # type: ignore[misc]


async def test_corrupt_and_unmappable_entries_are_dead_lettered_while_others_flow(
    rt: Runtime, tenant: str
) -> None:
    service = MemoryService(rt)
    producer = StreamProducer(rt.redis)
    worker = Worker(rt.redis, service.apply_events, rt.settings.partitions, CONFIG, "test-0")
    stream = keys.events_stream(keys.partition_of(tenant, "gh", rt.settings.partitions))
    async with running(worker, producer):
        await rt.redis.xadd(stream, {"e": b"\xff\x00 not protobuf"})
        await _enqueue(rt, producer, tenant, _envelope(tenant, "list", payload=b"[1, 2]"), "gh:list")
        await _enqueue(rt, producer, tenant, _envelope(tenant, "ok"), "gh:ok")

        async def settled() -> bool:
            return (
                await rt.redis.xlen(keys.dead_letters()) == 1
                and len(await service.recent_events(tenant)) == 2
            )

        await wait_until(settled)
        await wait_until(lambda: _is_zero(_pending(rt)))
    dead = await rt.redis.xrange(keys.dead_letters())
    assert b"not a WebhookEvent" in dead[0][1][b"error"]


async def test_a_lost_group_is_recreated(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    producer = StreamProducer(rt.redis)
    worker = Worker(rt.redis, service.apply_events, rt.settings.partitions, CONFIG, "test-0")
    async with running(worker, producer):
        await _enqueue(rt, producer, tenant, _envelope(tenant, "a"), "gh:a")
        await wait_until(lambda: _count(service, tenant, 1))
        for partition in range(rt.settings.partitions):  # as after a Redis restart without persistence
            await rt.redis.xgroup_destroy(keys.events_stream(partition), keys.CONTEXT_GROUP)
        await _enqueue(rt, producer, tenant, _envelope(tenant, "b"), "gh:b")
        await wait_until(lambda: _count(service, tenant, 2))


async def _count(service: MemoryService, tenant: str, n: int) -> bool:
    return len(await service.recent_events(tenant, limit=100)) == n


async def test_a_stalled_consumers_entries_are_reclaimed(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    producer = StreamProducer(rt.redis)
    stalled = Worker(rt.redis, service.apply_events, rt.settings.partitions, CONFIG, "stalled")
    await stalled._ensure_groups()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="producer")
        await _enqueue(rt, producer, tenant, _envelope(tenant, "x"), "gh:x")
        tasks.cancel_scope.cancel()
    assert await stalled._read(">")  # read, never acknowledged: the consumer "died"
    rescuer = Worker(
        rt.redis,
        service.apply_events,
        rt.settings.partitions,
        WorkerConfig(block_ms=50, claim_idle_ms=1),
        "rescuer",
    )
    async with running(rescuer, StreamProducer(rt.redis)):
        await wait_until(lambda: _count(service, tenant, 1))
        await wait_until(lambda: _is_zero(_pending(rt)))

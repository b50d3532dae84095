"""Deduplication on real Redis and PostgreSQL: exact window, Bloom hint, ledger as judge."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime

import anyio
import pytest
from redis.crc import key_slot

from ingest import envelope
from ingest.dedup import BloomConfig
from ingest.stream import StreamProducer, Submission, admit
from ingest.worker import Worker, WorkerConfig, audit_handler
from memory import keys
from memory.ledger import Ledger
from memory.runtime import Runtime
from tests.helpers import wait_until

SOURCE = "gh"


def _submission(rt: Runtime, bloom: BloomConfig, tenant: str, key: str, window_s: int = 3600) -> Submission:
    partition = keys.partition_of(tenant, SOURCE, rt.settings.partitions)
    data = envelope.encode(
        envelope.Envelope(tenant, SOURCE, "github", "push", key, key, datetime.now(UTC), b'{"n": 1}')
    )
    now = 1_800_000_000.0
    return Submission(
        window_key=keys.dedup_window(partition, tenant, SOURCE, key),
        window_s=window_s,
        stream=keys.events_stream(partition),
        counter=keys.accepted_counter(partition),
        envelope=data,
        bloom_keys=tuple(bloom.keys(partition, now)),
        bloom_positions=tuple(bloom.positions(tenant, SOURCE, key)),
        bloom_ttl_s=bloom.generation_s * bloom.generations,
    )


@asynccontextmanager
async def pipeline(rt: Runtime) -> AsyncIterator[StreamProducer]:
    """The producer plus a real `audit` group worker writing the ledger."""
    producer = StreamProducer(rt.redis)
    config = WorkerConfig(group=keys.AUDIT_GROUP, batch_size=500, block_ms=50)
    auditor = Worker(rt.redis, audit_handler(Ledger(rt.db)), rt.settings.partitions, config, "auditor")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="producer")
        tasks.start_soon(auditor.run, name="auditor")
        try:
            yield producer
        finally:
            auditor.stop()
            tasks.cancel_scope.cancel()


async def _ledger_count(rt: Runtime, tenant: str) -> int:
    async with rt.db.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM ledger WHERE tenant = %s", (tenant,))
        ).fetchone()
    return int(row[0]) if row else 0


async def _admit_all(
    rt: Runtime, producer: StreamProducer, bloom: BloomConfig, tenant: str, ids: list[str]
) -> int:
    """Submit concurrently in chunks; the number judged duplicate."""
    ledger = Ledger(rt.db)
    duplicates = 0
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        results: list[bool] = []

        async def one(key: str, into: list[bool]) -> None:
            into.append(await admit(producer, ledger, tenant, key, _submission(rt, bloom, tenant, key)))

        async with anyio.create_task_group() as tasks:
            for key in chunk:
                tasks.start_soon(one, key, results)
        duplicates += sum(results)
    return duplicates


async def test_a_bloom_false_positive_is_queued_after_the_ledger_says_unseen(
    machine_rt: Runtime, tenant: str
) -> None:
    rt = machine_rt
    tiny = BloomConfig(capacity=1, error_rate=0.5)  # 1 bit, 1 hash: every second key "collides"
    async with pipeline(rt) as producer:
        ledger = Ledger(rt.db)
        assert await admit(producer, ledger, tenant, "a", _submission(rt, tiny, tenant, "a")) is False
        # "b" sets no new bit: the Bloom filter says "maybe seen", the ledger says no.
        assert await admit(producer, ledger, tenant, "b", _submission(rt, tiny, tenant, "b")) is False
        await wait_until(lambda: _equals(_ledger_count(rt, tenant), 2))
        # Beyond the window (key expired), "a" is caught by Bloom + ledger.
        await rt.redis.delete(_submission(rt, tiny, tenant, "a").window_key)
        assert await admit(producer, ledger, tenant, "a", _submission(rt, tiny, tenant, "a")) is True
    total = sum([int(await rt.redis.xlen(keys.events_stream(p))) for p in range(rt.settings.partitions)])
    assert total == 2


async def test_the_body_key_is_checked_and_set_atomically_with_the_window_key(
    machine_rt: Runtime, tenant: str
) -> None:
    rt = machine_rt
    partition = keys.partition_of(tenant, SOURCE, rt.settings.partitions)
    body_key = keys.dedup_body(partition, tenant, SOURCE, "ab" * 32)
    # Same Cluster slot as the stream and the window key, so the one script may touch all three.
    first = replace(_submission(rt, BloomConfig(), tenant, "d1", window_s=600), body_key=body_key)
    assert {key_slot(key.encode()) for key in (first.window_key, first.stream, body_key)} == {
        key_slot(first.stream.encode())
    }
    tiny = BloomConfig(capacity=1, error_rate=0.5)  # every key "collides": the force path runs
    async with pipeline(rt) as producer:
        ledger = Ledger(rt.db)
        assert await admit(producer, ledger, tenant, "d1", first) is False
        assert 590 <= int(await rt.redis.ttl(body_key)) <= 600
        assert 590 <= int(await rt.redis.ttl(first.window_key)) <= 600
        # Another delivery id, the same body: a duplicate, whichever layer is asked first.
        replay = replace(_submission(rt, tiny, tenant, "d2"), body_key=body_key)
        assert await admit(producer, ledger, tenant, "d2", replay) is True
        forced = replace(replay, force=True)
        assert await admit(producer, ledger, tenant, "d2", forced) is True
        assert not await rt.redis.exists(replay.window_key)  # a duplicate marks nothing seen
        # Another body under a fresh delivery id is a new event; without a body key, so is d2.
        other = replace(_submission(rt, BloomConfig(), tenant, "d3"), body_key=body_key[:-1] + "0")
        assert await admit(producer, ledger, tenant, "d3", other) is False
        plain = _submission(rt, BloomConfig(), tenant, "d2")
        assert await admit(producer, ledger, tenant, "d2", plain) is False
    assert int(await rt.redis.xlen(keys.events_stream(partition))) == 3


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_dedup_over_100k_events_catches_every_duplicate_and_drops_no_unique(
    machine_rt: Runtime, tenant: str
) -> None:
    rt = machine_rt
    bloom = BloomConfig()
    rng = random.Random(2026)
    first = [f"{SOURCE}:u{i}" for i in range(60_000)]
    second = [f"{SOURCE}:u{i}" for i in range(60_000, 90_000)]
    beyond_window = rng.sample(first, 3_000)
    within_window = rng.sample(first + second, 7_000)
    async with pipeline(rt) as producer:
        assert await _admit_all(rt, producer, bloom, tenant, first) == 0
        await wait_until(lambda: _equals(_ledger_count(rt, tenant), 60_000), within=120)
        # These duplicates arrive after their window expired: only Bloom + ledger can catch them.
        for start in range(0, len(beyond_window), 500):
            partition = keys.partition_of(tenant, SOURCE, rt.settings.partitions)
            chunk = beyond_window[start : start + 500]
            await rt.redis.delete(*[keys.dedup_window(partition, tenant, SOURCE, key) for key in chunk])
        mixed = second + beyond_window + within_window
        rng.shuffle(mixed)
        # A within-window duplicate of a key from `second` may arrive before its original: then the
        # "original" is the duplicate. Either way exactly one of the two is accepted.
        duplicates = await _admit_all(rt, producer, bloom, tenant, mixed)
        assert duplicates == len(beyond_window) + len(within_window)
        await wait_until(lambda: _equals(_ledger_count(rt, tenant), 90_000), within=120)
    accepted = sum(
        [int(await rt.redis.get(keys.accepted_counter(p)) or 0) for p in range(rt.settings.partitions)]
    )
    assert accepted == 90_000
    async with rt.db.connection() as conn:
        rows = await (await conn.execute("SELECT id FROM ledger WHERE tenant = %s", (tenant,))).fetchall()
    assert {row[0] for row in rows} == set(first + second)


@pytest.mark.parametrize(("capacity", "error_rate"), [(20_000, 0.01), (20_000, 0.001)])
def test_the_bloom_false_positive_rate_at_design_capacity_is_near_target(
    capacity: int, error_rate: float
) -> None:
    bloom = BloomConfig(capacity=capacity, error_rate=error_rate)
    bits = bytearray(bloom.bits // 8 + 1)
    for i in range(capacity):
        for position in bloom.positions("t", "s", f"in-{i}"):
            bits[position >> 3] |= 1 << (position & 7)
    probes = 200_000
    false_positives = sum(
        all(bits[p >> 3] & (1 << (p & 7)) for p in bloom.positions("t", "s", f"out-{i}"))
        for i in range(probes)
    )
    measured = false_positives / probes
    assert measured <= error_rate * 1.5, measured
    fill = sum(bin(byte).count("1") for byte in bits) / bloom.bits
    assert abs(bloom.estimated_false_positive_rate(fill) - error_rate) < error_rate * 0.5

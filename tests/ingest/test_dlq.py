"""The dead-letter stream's operations against real Redis (both kinds), and a worker taking a retry."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from ingest import dlq, envelope
from ingest.worker import Worker, WorkerConfig, context_handler
from memory import keys
from memory.errors import InvalidArgument
from memory.ids import context_id
from memory.mappers.base import mapper_for
from memory.runtime import Runtime
from memory.service import MemoryService
from memory.tiers.hot import HotTier
from tests.fixtures.github_examples import load_fixture
from tests.helpers import wait_until

CORRUPT = b"\xff\x00 not protobuf"


def _envelope(tenant: str, delivery: str, source: str = "gh") -> bytes:
    return envelope.encode(
        envelope.Envelope(
            tenant,
            source,
            "github",
            "push",
            delivery,
            f"{source}:{delivery}",
            datetime.now(UTC),
            envelope.orjson.dumps(load_fixture("push")),
        )
    )


async def _dead(
    rt: Runtime,
    data: bytes,
    *,
    group: str = keys.CONTEXT_GROUP,
    stream: str | None = None,
    attempts: int | None = None,
    entry_id: str = "*",
) -> str:
    """A DLQ entry laid out as the workers write them."""
    fields: dict[str, str | bytes] = {
        "stream": stream or keys.events_stream(0),
        "entry": "1700000000000-0",
        "group": group,
        "error": f"{group} failed",
        "at_ms": str(int(time.time() * 1000)) if entry_id == "*" else entry_id.split("-")[0],
        "e": data,
    }
    if attempts is not None:
        fields["attempts"] = str(attempts)
    added = await rt.redis.xadd(keys.dead_letters(), fields, id=entry_id)
    return added.decode() if isinstance(added, bytes) else str(added)


async def test_list_is_newest_first_and_decodes_what_it_can(rt: Runtime, tenant: str) -> None:
    first = await _dead(rt, _envelope(tenant, "a"))
    second = await _dead(rt, CORRUPT, group=keys.AUDIT_GROUP)
    third = await _dead(rt, _envelope(tenant, "c"), group=keys.INDEX_GROUP, attempts=5)

    letters = await dlq.list_dead(rt.redis)
    assert [d.id for d in letters] == [third, second, first]
    newest, corrupt, oldest = letters
    assert (newest.tenant, newest.source, newest.event_type, newest.dedup_key) == (
        tenant,
        "gh",
        "push",
        "gh:c",
    )
    assert newest.group == keys.INDEX_GROUP and newest.attempts == 5 and newest.error == "index failed"
    assert newest.stream == keys.events_stream(0) and newest.entry == "1700000000000-0"
    assert abs((datetime.now(UTC) - newest.at).total_seconds()) < 60
    assert corrupt.tenant is corrupt.source is corrupt.event_type is corrupt.dedup_key is None
    assert oldest.attempts == 1  # written before attempts were counted
    assert newest.payload is None  # only show() decodes the payload

    assert [d.id for d in await dlq.list_dead(rt.redis, count=1)] == [third]
    assert [d.id for d in await dlq.list_dead(rt.redis, group=keys.AUDIT_GROUP)] == [second]


async def test_a_group_filter_reads_past_the_first_page(rt: Runtime, tenant: str) -> None:
    audit = await _dead(rt, CORRUPT, group=keys.AUDIT_GROUP)
    async with rt.redis.pipeline(transaction=False) as pipe:
        for _ in range(450):  # newer than the audit entry, and more than two pages
            pipe.xadd(keys.dead_letters(), {"group": keys.CONTEXT_GROUP, "error": "x", "e": CORRUPT})
        await pipe.execute()
    assert [d.id for d in await dlq.list_dead(rt.redis, count=5, group=keys.AUDIT_GROUP)] == [audit]
    assert len(await dlq.list_dead(rt.redis, count=300, group=keys.CONTEXT_GROUP)) == 300


async def test_show_decodes_the_payload(rt: Runtime, tenant: str) -> None:
    valid = await _dead(rt, _envelope(tenant, "s"))
    corrupt = await _dead(rt, CORRUPT)

    letter = await dlq.show(rt.redis, valid)
    assert letter is not None and letter.payload == load_fixture("push")
    broken = await dlq.show(rt.redis, corrupt)
    assert broken is not None and broken.payload is None and broken.error == "context failed"
    assert await dlq.show(rt.redis, "1-0") is None
    with pytest.raises(InvalidArgument):
        await dlq.show(rt.redis, "not-an-id")


async def test_retry_requeues_on_the_original_stream_and_a_worker_applies_it(
    rt: Runtime, tenant: str
) -> None:
    stream = keys.events_stream(keys.partition_of(tenant, "gh", rt.settings.partitions))
    data = _envelope(tenant, "r")
    retried = await _dead(rt, data, stream=stream)
    kept = await _dead(rt, CORRUPT, stream=stream)

    assert await dlq.retry(rt.redis, [retried]) == 1
    assert [d.id for d in await dlq.list_dead(rt.redis)] == [kept]
    entries = await rt.redis.xrange(stream)
    assert [fields for _, fields in entries] == [{b"e": data}]  # a new entry, the same envelope

    service = MemoryService(rt)
    worker = Worker(
        rt.redis,
        context_handler(service),
        rt.settings.partitions,
        WorkerConfig(batch_size=50, block_ms=50),
        "dlq-test-0",
    )
    subject = mapper_for("github").map("push", load_fixture("push")).subject
    hot = HotTier(rt.redis)

    async def applied() -> bool:
        return await hot.read(tenant, context_id(tenant, subject)) is not None

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run, name="worker")
        try:
            await wait_until(applied)
        finally:
            worker.stop()
    ctx = await hot.read(tenant, context_id(tenant, subject))
    assert ctx is not None and [e.id for e in ctx.events] == ["gh:r"]


async def test_retry_all_of_a_group_and_never_into_a_foreign_key(rt: Runtime, tenant: str) -> None:
    context = await _dead(rt, _envelope(tenant, "1"))
    audit = await _dead(rt, _envelope(tenant, "2"), group=keys.AUDIT_GROUP)
    foreign = await _dead(rt, _envelope(tenant, "3"), stream="hl:tokens")
    pretender = await _dead(rt, _envelope(tenant, "4"), stream="hl:{p0}:events:x")

    assert await dlq.retry(rt.redis, all=True, group=keys.CONTEXT_GROUP) == 1
    left = {d.id for d in await dlq.list_dead(rt.redis)}
    assert left == {audit, foreign, pretender} and context not in left
    assert await rt.redis.exists("hl:tokens", "hl:{p0}:events:x") == 0
    assert await rt.redis.xlen(keys.events_stream(0)) == 1

    assert await dlq.retry(rt.redis, all=True) == 1  # the audit one; the two foreign ones stay
    assert {d.id for d in await dlq.list_dead(rt.redis)} == {foreign, pretender}


async def test_retry_and_purge_take_ids_or_all(rt: Runtime) -> None:
    for operation in (dlq.retry, dlq.purge):
        with pytest.raises(InvalidArgument):
            await operation(rt.redis)
        with pytest.raises(InvalidArgument):
            await operation(rt.redis, ["1-0"], all=True)
    with pytest.raises(InvalidArgument):
        await dlq.purge(rt.redis, ["1-0; FLUSHALL"])


async def test_purge_by_id_by_age_and_all(rt: Runtime, tenant: str) -> None:
    ten_days_ago = int((datetime.now(UTC) - timedelta(days=10)).timestamp() * 1000)
    old = [await _dead(rt, CORRUPT, entry_id=f"{ten_days_ago + i}-0") for i in range(3)]
    new = [await _dead(rt, _envelope(tenant, str(i))) for i in range(3)]

    assert await dlq.purge(rt.redis, [old[0], new[0]]) == 2
    assert await dlq.purge(rt.redis, [old[1], new[1]], older_than=timedelta(days=7)) == 1
    assert {d.id for d in await dlq.list_dead(rt.redis)} == {old[2], new[1], new[2]}
    assert await dlq.purge(rt.redis, all=True, older_than=timedelta(days=7)) == 1
    assert {d.id for d in await dlq.list_dead(rt.redis)} == {new[1], new[2]}
    assert await dlq.purge(rt.redis, all=True) == 2
    assert await dlq.list_dead(rt.redis) == []

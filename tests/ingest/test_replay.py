"""Replaying a time range of the streams through the groups' handlers, on real Redis and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from ingest import envelope
from ingest.replay import replay
from ingest.worker import Worker, WorkerConfig, audit_handler, context_handler
from memory import keys
from memory.errors import InvalidArgument
from memory.ids import context_id
from memory.ledger import Ledger
from memory.mappers.base import mapper_for
from memory.runtime import Runtime
from memory.service import MemoryService
from memory.tiers.hot import HotTier
from tests.fixtures.github_examples import load_fixture
from tests.helpers import wait_until

PUSH = load_fixture("push")


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
            envelope.orjson.dumps(PUSH),
        )
    )


def _stream(rt: Runtime, tenant: str, source: str) -> str:
    return keys.events_stream(keys.partition_of(tenant, source, rt.settings.partitions))


async def _queue(rt: Runtime, tenant: str, source: str, data: bytes, entry_id: str = "*") -> None:
    await rt.redis.xadd(_stream(rt, tenant, source), {"e": data}, id=entry_id)


def _push_context(tenant: str) -> str:
    return context_id(tenant, mapper_for("github").map("push", PUSH).subject)


async def _ledger_rows(rt: Runtime, tenant: str) -> int:
    async with rt.db.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM ledger WHERE tenant = %s", (tenant,))
        ).fetchone()
    return int(row[0]) if row else 0


async def test_replay_restores_a_context_whose_hot_copy_was_deleted(rt: Runtime, tenant: str) -> None:
    ten_days_ago = datetime.now(UTC) - timedelta(days=10)
    old_ms = int(ten_days_ago.timestamp() * 1000)
    # queued ten days ago: outside the first replayed range (and the oldest entries the streams hold)
    await _queue(rt, tenant, "gh", _envelope(tenant, "old"), f"{old_ms}-0")
    await _queue(rt, tenant, "other", _envelope(tenant, "older", source="other"), f"{old_ms}-1")
    start = datetime.now(UTC) - timedelta(seconds=1)
    for i in range(5):
        await _queue(rt, tenant, "gh", _envelope(tenant, f"d{i}"))
    await _queue(rt, tenant, "other", _envelope(tenant, "x", source="other"))
    await _queue(rt, tenant, "gh", b"\xff\x00 not protobuf")

    service = MemoryService(rt)
    hot = HotTier(rt.redis)
    ctx_id = _push_context(tenant)
    worker = Worker(
        rt.redis, context_handler(service), rt.settings.partitions, WorkerConfig(block_ms=50), "replay-0"
    )

    async def all_applied() -> bool:
        ctx = await hot.read(tenant, ctx_id)
        return ctx is not None and len(ctx.events) == 8  # old, older, d0..d4, x

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run, name="worker")
        try:
            await wait_until(all_applied)
        finally:
            worker.stop()
    await hot.delete(tenant, ctx_id)
    assert await hot.read(tenant, ctx_id) is None

    handlers = {keys.CONTEXT_GROUP: context_handler(service)}
    report = await replay(rt, handlers, "gh", start, datetime.now(UTC), [keys.CONTEXT_GROUP], batch_size=2)
    assert (report.read, report.matched, report.undecodable) == (7, 5, 1)  # d0..d4, x, corrupt
    assert report.replayed == {keys.CONTEXT_GROUP: 5} and report.rejected == {keys.CONTEXT_GROUP: 0}
    assert report.earliest_available is not None
    assert int(report.earliest_available.timestamp() * 1000) == old_ms
    ctx = await hot.read(tenant, ctx_id)
    assert ctx is not None and sorted(e.id for e in ctx.events) == [f"gh:d{i}" for i in range(5)]

    again = await replay(rt, handlers, "gh", start, datetime.now(UTC), [keys.CONTEXT_GROUP])
    assert again.replayed == {keys.CONTEXT_GROUP: 5}
    ctx = await hot.read(tenant, ctx_id)
    assert ctx is not None and len(ctx.events) == 5  # idempotent: nothing doubled

    everything = await replay(rt, handlers, None, ten_days_ago, datetime.now(UTC), [keys.CONTEXT_GROUP])
    assert everything.matched == 8 and not everything.may_be_incomplete
    ctx = await hot.read(tenant, ctx_id)
    assert ctx is not None and len(ctx.events) == 8

    for partition in range(rt.settings.partitions):  # the two old entries are trimmed away
        await rt.redis.xtrim(keys.events_stream(partition), minid=f"{old_ms + 1}-0", approximate=False)
    trimmed = await replay(rt, handlers, None, ten_days_ago, datetime.now(UTC), [keys.CONTEXT_GROUP])
    assert trimmed.matched == 6 and trimmed.may_be_incomplete  # part of the range is gone
    assert trimmed.earliest_available is not None and trimmed.earliest_available >= start


async def test_replay_feeds_every_chosen_group(rt: Runtime, tenant: str) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    for i in range(3):
        await _queue(rt, tenant, "gh", _envelope(tenant, f"a{i}"))
    service = MemoryService(rt)
    handlers = {keys.CONTEXT_GROUP: context_handler(service), keys.AUDIT_GROUP: audit_handler(Ledger(rt.db))}

    report = await replay(rt, handlers, "gh", start, datetime.now(UTC), list(handlers))
    assert report.replayed == {keys.CONTEXT_GROUP: 3, keys.AUDIT_GROUP: 3}
    assert await _ledger_rows(rt, tenant) == 3
    assert await HotTier(rt.redis).read(tenant, _push_context(tenant)) is not None

    nothing = await replay(rt, handlers, "gh", start - timedelta(days=2), start - timedelta(days=1),
                           [keys.AUDIT_GROUP])  # fmt: skip
    assert nothing.read == 0 and nothing.replayed == {keys.AUDIT_GROUP: 0}


async def test_replay_refuses_an_unknown_group_or_an_inverted_range(rt: Runtime) -> None:
    now = datetime.now(UTC)
    handlers = {keys.CONTEXT_GROUP: context_handler(MemoryService(rt))}
    with pytest.raises(InvalidArgument, match="no handler"):
        await replay(rt, handlers, None, now - timedelta(hours=1), now, [keys.AUDIT_GROUP])
    with pytest.raises(InvalidArgument, match="after until"):
        await replay(rt, handlers, None, now, now - timedelta(hours=1), [keys.CONTEXT_GROUP])

"""The hot tier on both real Redis servers: idempotent and order-tolerant application."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from memory.ids import context_id, head_key
from memory.models import ContextEvent
from memory.runtime import Runtime
from memory.tiers.hot import HotTier, HotWrite
from tests.helpers import flush_redis

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _write(tenant: str, n: int, title: str, importance: float = 0.5) -> HotWrite:
    occurred = T0 + timedelta(minutes=n)
    event = ContextEvent(f"e{n}", "pull_request", f"event {n}", occurred, occurred, ("alice",))
    head = {"source": "gh", "subject": "github:o/r#pr/1", "kind": "pull_request", "title": title,
            "state": "open" if n < 2 else "closed", "url": "", "labels": "[]", "fields": "{}"}  # fmt: skip
    return HotWrite(tenant, context_id(tenant, "github:o/r#pr/1"), event,
                    head_key(int(occurred.timestamp() * 1000), event.id), importance, head)  # fmt: skip


async def test_applying_twice_is_a_no_op(rt: Runtime, tenant: str) -> None:
    hot = HotTier(rt.redis)
    write = _write(tenant, 0, "first")
    assert await hot.apply([write], T0) == [True]
    assert await hot.apply([write], T0) == [False]
    ctx = await hot.read(tenant, write.context_id)
    assert ctx is not None
    assert ctx.head.event_count == 1 and [e.id for e in ctx.events] == ["e0"]


async def test_every_order_gives_the_same_context(rt: Runtime, tenant: str) -> None:
    hot = HotTier(rt.redis)
    writes = [
        _write(tenant, 0, "first", 0.4),
        _write(tenant, 1, "second", 0.9),
        _write(tenant, 2, "third", 0.2),
    ]
    seen = set()
    for order in itertools.permutations(writes):
        await flush_redis(rt.redis)
        for write in order:
            await hot.apply([write], T0)
        ctx = await hot.read(tenant, writes[0].context_id)
        assert ctx is not None
        seen.add((ctx.head.title, ctx.head.state, ctx.head.importance, ctx.head.event_count,
                  ctx.head.created_at, ctx.head.updated_at, tuple(e.id for e in ctx.events)))  # fmt: skip
    assert seen == {("third", "closed", 0.9, 3, T0, T0 + timedelta(minutes=2), ("e0", "e1", "e2"))}


async def test_tenants_do_not_share_contexts(rt: Runtime, tenant: str) -> None:
    hot = HotTier(rt.redis)
    write = _write(tenant, 0, "mine")
    await hot.apply([write], T0)
    assert await hot.read("someone-else", write.context_id) is None
    assert await hot.read(tenant, write.context_id) is not None

"""forget's tombstone: an event of the forgotten context that was already on its way (read by a
worker, waiting in a retry) is dropped by the hot tier and the index; a later one starts afresh.
Real Redis (both kinds) and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest.envelope import entry_event
from memory import keys
from memory.forget import forget
from memory.runtime import Runtime
from memory.service import MemoryService
from memory.tombstones import lifetime_s
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event


async def _rows(rt: Runtime, tenant: str, ctx_id: str) -> tuple[int, int]:
    """How many rows PostgreSQL has of the context: in ``contexts`` and in ``events``."""
    sql = """
        SELECT (SELECT count(*) FROM contexts WHERE tenant = %(t)s AND id = %(c)s),
               (SELECT count(*) FROM events WHERE tenant = %(t)s AND context_id = %(c)s)
    """
    async with rt.db.connection() as conn:
        row = await (await conn.execute(sql, {"t": tenant, "c": ctx_id})).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_an_event_in_flight_when_forget_runs_does_not_bring_the_context_back(
    rt: Runtime, tenant: str
) -> None:
    service = MemoryService(rt)
    before = datetime.now(UTC) - timedelta(seconds=5)
    opened = make_event(
        tenant, "pull_request", load_fixture("pull_request_opened"), "gh:1", received_at=before
    )
    await service.apply_events([opened])
    ctx_id = (await service.recent_events(tenant, limit=1))[0].context_id
    # A worker read this one before the forget and applies it after: the classic resurrection.
    in_flight = make_event(
        tenant, "pull_request", load_fixture("pull_request_closed"), "gh:2", received_at=before
    )

    report = await forget(rt, tenant, ctx_id, entry_event)
    assert report.found
    assert await service.apply_hot([in_flight]) == []  # acknowledged (nothing to retry) ...
    await service.index_events([in_flight])
    assert not await rt.redis.exists(keys.context(tenant, ctx_id))  # ... but not applied
    assert await _rows(rt, tenant, ctx_id) == (0, 0)
    ttl = await rt.redis.ttl(keys.context_forgotten(tenant, ctx_id))
    assert 0 < ttl <= lifetime_s(rt.settings)

    # The subject comes back with a new event: a new context, with that event alone.
    later = make_event(tenant, "pull_request", load_fixture("pull_request_closed"), "gh:3")
    await service.apply_events([later])
    ctx = await service.get_context(tenant, ctx_id)
    assert [e.id for e in ctx.events] == ["gh:3"]
    assert await _rows(rt, tenant, ctx_id) == (1, 1)


async def test_the_tombstone_holds_no_trace_of_the_subject(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    await service.apply_events([make_event(tenant, "push", load_fixture("push"), "gh:p")])
    ctx_id = (await service.recent_events(tenant, limit=1))[0].context_id
    await forget(rt, tenant, ctx_id, entry_event)
    left = [k async for k in rt.redis.scan_iter(match=f"hl:{{c:{tenant}:*")]
    assert left == [keys.context_forgotten(tenant, ctx_id).encode()]
    mark = await rt.redis.get(left[0])
    assert mark is not None and mark.isdigit()  # a moment in ms, nothing else

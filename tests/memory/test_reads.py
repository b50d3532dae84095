"""The read log: a server's reads are answered first, and their access counts and pre-warming
follow in the background, batched, none lost while the queue has room, all done at close."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import anyio

from memory.reads import DROPPED, Read, ReadLog
from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event


async def _contexts(service: MemoryService, tenant: str, n: int) -> list[str]:
    events = []
    for i in range(n):
        payload = copy.deepcopy(load_fixture("issues_opened"))
        payload["issue"]["number"] = 500 + i
        events.append(make_event(tenant, "issues", payload, f"gh:rl{i}"))
    await service.apply_events(events)
    return sorted(hit.context.id for hit in await service.search_context(tenant, "", limit=n))


async def _accesses(rt: Runtime, tenant: str) -> dict[str, int]:
    async with rt.db.connection() as conn:
        rows = await (
            await conn.execute("SELECT id, access_count FROM contexts WHERE tenant = %s", (tenant,))
        ).fetchall()
    return {str(ctx_id): int(count) for ctx_id, count in rows}


async def test_reads_are_followed_up_in_the_background_and_all_counted_at_close(
    machine_rt: Runtime, tenant: str
) -> None:
    service = MemoryService(machine_rt)
    a, b = await _contexts(service, tenant, 2)
    reads = service.reads = ReadLog(machine_rt, service.prewarmer)
    async with anyio.create_task_group() as tasks:
        await tasks.start(reads.run, name="read-follow-ups")
        for _ in range(6):  # a then b, six times: P(b | a) = 1
            await service.get_context(tenant, a, agent="triage-bot")
            await service.get_context(tenant, b, agent="triage-bot")
        reads.close()  # run() returns once the queued reads are followed up
    assert await _accesses(machine_rt, tenant) == {a: 6, b: 6}
    assert [x for x, _ in await service.prewarmer.predict(tenant, "triage-bot", a)] == [b]
    assert reads.dropped == 0


async def test_without_a_running_log_a_read_is_followed_up_inline(machine_rt: Runtime, tenant: str) -> None:
    service = MemoryService(machine_rt)
    (a,) = await _contexts(service, tenant, 1)
    await service.get_context(tenant, a, agent="triage-bot")
    assert await _accesses(machine_rt, tenant) == {a: 1}


async def test_a_full_queue_drops_reads_and_counts_them_never_blocks_the_reader(
    machine_rt: Runtime, tenant: str
) -> None:
    service = MemoryService(machine_rt)
    (a,) = await _contexts(service, tenant, 1)
    reads = ReadLog(machine_rt, service.prewarmer, capacity=2)
    before = DROPPED._value.get()
    for _ in range(5):  # record() is synchronous: it cannot wait for a queue nothing drains
        reads.record(Read(tenant, (a,), datetime.now(UTC), "triage-bot"))
    assert reads.dropped == 3 and DROPPED._value.get() == before + 3
    reads.close()
    await reads.run()
    assert await _accesses(machine_rt, tenant) == {a: 2}  # the two queued reads, in one UPDATE
    reads.record(Read(tenant, (a,), datetime.now(UTC), "triage-bot"))  # closed: dropped, not raised
    assert reads.dropped == 4


async def test_a_batch_counts_every_read_even_of_one_context(machine_rt: Runtime, tenant: str) -> None:
    service = MemoryService(machine_rt)
    a, b = await _contexts(service, tenant, 2)
    reads = ReadLog(machine_rt, service.prewarmer)
    for ctx_id in (a, a, b, a):
        reads.record(Read(tenant, (ctx_id,), datetime.now(UTC), "triage-bot"))
    reads.close()
    await reads.run()  # one turn: a single UPDATE for the tenant
    assert await _accesses(machine_rt, tenant) == {a: 3, b: 1}

"""The embedding refresher: with one running, the index group writes rows without embedding, and the
refresher embeds what is due (never-embedded contexts first) on the real local embedder."""

from __future__ import annotations

import copy

import anyio

from memory.errors import StoreUnavailable
from memory.runtime import Runtime
from memory.service import MemoryService
from memory.tiers import index
from memory.vectors import BATCH, VectorRefresher
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event, wait_until


def _issue(tenant: str, number: int) -> object:
    payload = copy.deepcopy(load_fixture("issues_opened"))
    payload["issue"]["number"] = number
    payload["issue"]["title"] = f"Deploy step {number} times out"
    return make_event(tenant, "issues", payload, f"gh:v{number}")


async def _unembedded(rt: Runtime, tenant: str) -> int:
    async with rt.db.connection() as conn:
        sql = "SELECT count(*) FROM contexts WHERE tenant = %s AND embedding IS NULL"
        row = await (await conn.execute(sql, (tenant,))).fetchone()
    assert row is not None
    return int(row[0])


async def test_the_index_group_leaves_embedding_to_the_refresher(vrt: Runtime, tenant: str) -> None:
    service = MemoryService(vrt)
    service.vectors = VectorRefresher(service.refresh_embeddings)
    await service.index_events([_issue(tenant, n) for n in range(3)])  # type: ignore[misc]
    assert await _unembedded(vrt, tenant) == 3  # rows written, nothing embedded inline
    async with anyio.create_task_group() as tasks:
        await tasks.start(service.vectors.run, name="embeddings")

        async def embedded() -> bool:
            return await _unembedded(vrt, tenant) == 0

        await wait_until(embedded, within=60)
        tasks.cancel_scope.cancel()
    hits = await service.search_context(tenant, "deployment stage hanging", limit=3)
    assert hits and {"similarity", "text_rank"} <= set(hits[0].breakdown)  # found both ways


async def test_never_embedded_contexts_come_first(vrt: Runtime, tenant: str) -> None:
    service = MemoryService(vrt)
    await service.index_events([_issue(tenant, 1)])  # type: ignore[list-item]
    async with vrt.db.connection() as conn:  # embedded, then changed long after
        await conn.execute(
            "UPDATE contexts SET embedded_at = now() - interval '1 hour', "
            "touched_at = now() - interval '30 minutes' WHERE tenant = %s",
            (tenant,),
        )
    service.vectors = VectorRefresher(service.refresh_embeddings)
    await service.index_events([_issue(tenant, 2)])  # type: ignore[list-item]
    async with vrt.db.connection() as conn:
        due = await index.stale_embeddings(conn, 10)
    ids = [ctx_id for t, ctx_id in due if t == tenant]
    assert len(ids) == 2
    async with vrt.db.connection() as conn:
        row = await (
            await conn.execute("SELECT id FROM contexts WHERE tenant = %s AND embedding IS NULL", (tenant,))
        ).fetchone()
    assert row is not None and ids[0] == row[0]


async def test_a_failing_refresh_is_logged_and_tried_again() -> None:
    calls: list[int] = []
    second = anyio.Event()

    async def refresh(limit: int) -> int:
        calls.append(limit)
        if len(calls) == 1:
            raise StoreUnavailable("PostgreSQL is down")
        second.set()
        return 0

    refresher = VectorRefresher(refresh)
    async with anyio.create_task_group() as tasks:
        await tasks.start(refresher.run, name="embeddings")
        refresher.wake()  # no waiting out the poll after the failure
        with anyio.fail_after(10):
            await second.wait()
        tasks.cancel_scope.cancel()
    assert calls[:2] == [BATCH, BATCH]

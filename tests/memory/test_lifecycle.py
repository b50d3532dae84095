"""A context through every tier with a controllable clock, on real Redis (both kinds),
PostgreSQL and the file blob store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memory import keys
from memory.lifecycle import Lifecycle
from memory.runtime import Runtime, open_runtime
from memory.service import MemoryService
from memory.tiers import document
from tests.conftest import make_settings
from tests.fixtures.github_examples import fixture_names, load_fixture
from tests.helpers import make_event

HOUR = timedelta(hours=1)


async def _seed(service: MemoryService, tenant: str, n: int = 3) -> str:
    events = [make_event(tenant, "push", load_fixture("push"), f"gh:p{i}") for i in range(n)]
    await service.apply_events(events)
    return (await service.recent_events(tenant, limit=1))[0].context_id


async def _tier(rt: Runtime, tenant: str, ctx_id: str) -> tuple[str, str]:
    redis_tier = (await rt.redis.hget(keys.context(tenant, ctx_id), "tier") or b"").decode()
    async with rt.db.connection() as conn:
        row = await (await conn.execute("SELECT tier FROM contexts WHERE tenant = %s AND id = %s",
                                        (tenant, ctx_id))).fetchone()  # fmt: skip
    return redis_tier, row[0] if row else ""


async def test_a_context_moves_hot_warm_cold_and_every_tier_answers(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    ctx_id = await _seed(service, tenant)
    hot = await service.get_context(tenant, ctx_id)
    now = datetime.now(UTC)
    lifecycle = Lifecycle(rt)

    assert (await lifecycle.run_pass(now)).to_warm == 0  # not idle yet
    report = await lifecycle.run_pass(now + 10 * HOUR)  # 2 h TTL, stretched by importance
    assert report.to_warm == 1 and await _tier(rt, tenant, ctx_id) == ("warm", "warm")
    warm = await service.get_context(tenant, ctx_id)
    assert warm.head.tier == "warm" and [e.id for e in warm.events] == [e.id for e in hot.events]
    assert await rt.redis.exists(keys.context_events(tenant, ctx_id)) == 0
    assert (await service.search_context(tenant, "push", limit=5))[0].context.tier == "warm"

    report = await lifecycle.run_pass(now + 200 * HOUR)
    assert report.to_cold == 1 and await _tier(rt, tenant, ctx_id) == ("cold", "cold")
    assert await rt.redis.exists(keys.context_warm(tenant, ctx_id)) == 0
    cold = await service.get_context(tenant, ctx_id)  # the summary, at once
    assert cold.head.tier == "cold" and cold.head.summary and cold.head.event_count == 3
    assert (await service.search_context(tenant, "push", limit=5))[0].context.tier == "cold"

    restored = await service.get_context(tenant, ctx_id, restore=True)  # cold → warm
    assert restored.head.tier == "warm" and [e.id for e in restored.events] == [e.id for e in hot.events]
    assert await _tier(rt, tenant, ctx_id) == ("warm", "warm")


async def test_a_new_event_brings_a_cold_context_back_whole(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    ctx_id = await _seed(service, tenant, n=2)
    lifecycle = Lifecycle(rt)
    now = datetime.now(UTC)
    await lifecycle.run_pass(now + 10 * HOUR)
    await lifecycle.run_pass(now + 200 * HOUR)
    assert await _tier(rt, tenant, ctx_id) == ("cold", "cold")
    await service.apply_events([make_event(tenant, "push", load_fixture("push"), "gh:late")])
    ctx = await service.get_context(tenant, ctx_id)
    assert ctx.head.tier == "hot" and sorted(e.id for e in ctx.events) == ["gh:late", "gh:p0", "gh:p1"]
    assert ctx.head.event_count == 3
    assert await _tier(rt, tenant, ctx_id) == ("hot", "hot")


async def test_a_transition_killed_halfway_and_rerun_gives_one_consistent_context(
    rt: Runtime, tenant: str
) -> None:
    service = MemoryService(rt)
    ctx_id = await _seed(service, tenant)
    before = await service.get_context(tenant, ctx_id)
    lifecycle = Lifecycle(rt)
    later = datetime.now(UTC) + 10 * HOUR
    # Redis flipped to warm, then the process died before PostgreSQL was told.
    head, events, _ = await lifecycle.hot.read_raw(tenant, ctx_id)
    raw = document.encode(head, events)
    assert await lifecycle.hot.to_warm(
        tenant, ctx_id, await lifecycle.codec.compress(0, raw), len(events), 0, len(raw)
    )
    assert await _tier(rt, tenant, ctx_id) == ("warm", "hot")
    report = await lifecycle.run_pass(later)  # the re-run repairs instead of redoing
    assert report.repaired == 1 and await _tier(rt, tenant, ctx_id) == ("warm", "warm")
    # Archive written, then died before the flips: the re-run overwrites and completes.
    await lifecycle.run_pass(later + 200 * HOUR)
    assert await _tier(rt, tenant, ctx_id) == ("cold", "cold")
    await lifecycle.run_pass(later + 400 * HOUR)  # and again: nothing changes
    after = await service.get_context(tenant, ctx_id, restore=True)
    assert [(e.id, e.text) for e in after.events] == [(e.id, e.text) for e in before.events]
    assert after.head.title == before.head.title and after.head.event_count == before.head.event_count


async def test_an_event_arriving_during_demotion_aborts_it(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    ctx_id = await _seed(service, tenant, n=1)
    lifecycle = Lifecycle(rt)
    head, events, _ = await lifecycle.hot.read_raw(tenant, ctx_id)
    await service.apply_events([make_event(tenant, "push", load_fixture("push"), "gh:meanwhile")])
    raw = document.encode(head, events)
    assert not await lifecycle.hot.to_warm(tenant, ctx_id, raw, len(events), 0, len(raw))
    assert len((await service.get_context(tenant, ctx_id)).events) == 2


async def test_importance_and_pins_stretch_the_idle_time(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    ctx_id = await _seed(service, tenant, n=1)
    lifecycle = Lifecycle(rt)
    async with rt.db.connection() as conn:
        await conn.execute("UPDATE contexts SET pinned = true WHERE id = %s", (ctx_id,))
    assert (await lifecycle.run_pass(datetime.now(UTC) + 1000 * HOUR)).to_warm == 0
    async with rt.db.connection() as conn:
        await conn.execute("UPDATE contexts SET pinned = false, importance = 1.0 WHERE id = %s", (ctx_id,))
    # 2 h x (1 + 2 x 1.0) = 6 h for the most important contexts
    assert (await lifecycle.run_pass(datetime.now(UTC) + 5 * HOUR)).to_warm == 0
    assert (await lifecycle.run_pass(datetime.now(UTC) + 7 * HOUR)).to_warm == 1


@pytest.mark.parametrize("count", [40])
async def test_warm_compression_trains_a_dictionary_per_source(rt: Runtime, tenant: str, count: int) -> None:
    service = MemoryService(rt)
    names = fixture_names()
    events = []
    for i in range(count):
        name = names[i % len(names)]
        payload = load_fixture(name)
        if "number" in payload:
            payload["number"] = 1000 + i
        for key in ("issue", "pull_request"):
            if isinstance(payload.get(key), dict):
                payload[key]["number"] = 1000 + i
        events.append(make_event(tenant, name.split("_")[0] if name != "pull_request_review_submitted"
                                 else "pull_request_review", payload, f"gh:{i}"))  # fmt: skip
    await service.apply_events(events)
    raw_total = 0
    for ctx_id in {e.context_id for e in await service.recent_events(tenant, limit=100)}:
        head, events_raw, _ = await Lifecycle(rt).hot.read_raw(tenant, ctx_id)
        raw_total += len(document.encode(head, events_raw))
    report = await Lifecycle(rt).run_pass(datetime.now(UTC) + 10 * HOUR)
    assert report.to_warm >= 10 and report.dictionaries
    warm_total = 0
    cursor = 0
    while True:
        cursor, found = await rt.redis.scan(cursor, match=f"hl:{{c:{tenant}:*}}:warm", count=500)
        for key in found:
            warm_total += await rt.redis.strlen(key)
        if cursor == 0:
            break
    assert warm_total < raw_total * 0.3, (warm_total, raw_total)


async def test_memory_pressure_demotes_hot_contexts_early(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    ctx_id = await _seed(service, tenant, n=2)
    lifecycle = Lifecycle(rt)
    assert (await lifecycle.run_pass()).to_warm == 0  # fresh: stays hot
    used = int((await rt.redis.info("memory"))["used_memory"])
    await rt.redis.config_set("maxmemory", str(used * 2))
    try:
        for i in range(15):  # ~85% full: under pressure (small values: a big one needs 2x to arrive)
            await rt.redis.set(f"hl:test:ballast:{i}", b"x" * int(used * 0.05))
        report = await lifecycle.run_pass()
    finally:
        await rt.redis.config_set("maxmemory", "0")
        await rt.redis.delete(*[f"hl:test:ballast:{i}" for i in range(15)])
    assert report.pressure and report.to_warm == 1
    assert (await service.get_context(tenant, ctx_id)).head.tier == "warm"


async def test_the_cold_tier_archives_to_s3(
    machine_rt: Runtime, tenant: str, tmp_root: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="hookline-cold")
    settings = make_settings(
        tmp_root, machine_rt.redis_url, machine_rt.database_url,
        HOOKLINE_BLOB_URL="s3://hookline-cold/archive", HOOKLINE_S3_ENDPOINT_URL=moto_endpoint,
    )  # fmt: skip
    async with open_runtime(settings, migrate=False) as rt:
        service = MemoryService(rt)
        ctx_id = await _seed(service, tenant, n=2)
        updated = (await service.get_context(tenant, ctx_id)).head.updated_at
        now = datetime.now(UTC)
        await Lifecycle(rt).run_pass(now + 10 * HOUR)
        assert (await Lifecycle(rt).run_pass(now + 200 * HOUR)).to_cold == 1
        listed = s3.list_objects_v2(Bucket="hookline-cold", Prefix="archive/contexts/")["Contents"]
        # dated by the context's last update (the payload's own time), as contexts/YYYY/MM/DD/<id>
        assert [o["Key"] for o in listed] == [f"archive/contexts/{updated:%Y/%m/%d}/{ctx_id}.json.zst"]
        restored = await service.get_context(tenant, ctx_id, restore=True)
        assert sorted(e.id for e in restored.events) == ["gh:p0", "gh:p1"]


async def test_retention_deletes_a_context_from_every_tier(rt: Runtime, tenant: str) -> None:
    from functools import partial

    from ingest.envelope import entry_event
    from memory.errors import NotFound
    from memory.forget import forget

    service = MemoryService(rt)
    ctx_id = await _seed(service, tenant, n=2)
    lifecycle = Lifecycle(rt, forgetter=partial(forget, rt, decode=entry_event))
    now = datetime.now(UTC)
    await lifecycle.run_pass(now + 10 * HOUR)
    await lifecycle.run_pass(now + 200 * HOUR)  # cold, archived
    archive = (await rt.redis.hget(keys.context(tenant, ctx_id), "archive_key") or b"").decode()
    assert archive and await rt.blobs.get(archive)
    report = await lifecycle.run_pass(now + timedelta(seconds=rt.settings.retention_s) + 10 * HOUR)
    assert report.expired == 1
    with pytest.raises(NotFound):
        await service.get_context(tenant, ctx_id)
    with pytest.raises(NotFound):
        await rt.blobs.get(archive)
    left = [k async for k in rt.redis.scan_iter(match=f"hl:{{c:{tenant}:*")]
    assert left == [keys.context_forgotten(tenant, ctx_id).encode()]  # the tombstone alone


async def test_a_read_does_not_wait_for_a_row_the_index_holds_locked(rt: Runtime, tenant: str) -> None:
    """touch() skips a contexts row locked by another transaction (the index group's batch upsert)
    instead of queueing behind it: the read goes on, that access is not counted."""
    import anyio
    import psycopg

    from memory.lifecycle import touch

    service = MemoryService(rt)
    ctx_id = await _seed(service, tenant, n=1)

    async def accesses() -> int:
        async with rt.db.connection() as conn:
            sql = "SELECT access_count FROM contexts WHERE tenant = %s AND id = %s"
            row = await (await conn.execute(sql, (tenant, ctx_id))).fetchone()
        assert row is not None
        return int(row[0])

    before = await accesses()
    async with await psycopg.AsyncConnection.connect(rt.database_url) as holder, holder.transaction():
        await holder.execute(
            "SELECT 1 FROM contexts WHERE tenant = %s AND id = %s FOR UPDATE", (tenant, ctx_id)
        )
        with anyio.fail_after(5):  # it would wait for the holder's commit otherwise
            await touch(rt, tenant, [ctx_id])
        assert await accesses() == before
    await touch(rt, tenant, [ctx_id])
    assert await accesses() == before + 1

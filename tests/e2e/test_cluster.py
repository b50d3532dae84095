"""Redis Cluster: a real three-node cluster (the machine's redis-server). The intake's dedup script,
the workers and the hot tier work across slots, and so does the whole lifecycle: hot → warm with a
trained dictionary (whose keys live in different slots), warm → cold, cold → warm, back to hot on a
new event, and early demotion when any one node is short of memory."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from redis.crc import key_slot

from ingest.accept import Acceptor
from ingest.stream import StreamProducer
from ingest.worker import Worker, WorkerConfig
from memory import keys
from memory.ledger import Ledger
from memory.lifecycle import Lifecycle
from memory.models import Source
from memory.runtime import Runtime, open_runtime
from memory.service import MemoryService
from tests.conftest import make_settings
from tests.e2e.redis_servers import start_cluster
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event, wait_until

pytestmark = pytest.mark.e2e

HOUR = timedelta(hours=1)
SUBJECTS = 24  # more than the samples a first dictionary needs (memory.tiers.warm.MIN_SAMPLES)


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="hlcl", dir="/tmp") as root, start_cluster(Path(root)) as ports:
        yield f"redis+cluster://127.0.0.1:{ports[0]}"


@pytest.fixture
async def cluster_rt(cluster_url: str, tmp_root: Path, machine_database_url: str) -> AsyncIterator[Runtime]:
    """A runtime on the cluster; PostgreSQL's contexts emptied (a lifecycle pass visits every row)."""
    settings = make_settings(tmp_root, cluster_url, machine_database_url, HOOKLINE_EMBEDDER="none")
    async with open_runtime(settings, migrate=False) as rt:
        async with rt.db.connection() as conn:
            await conn.execute("TRUNCATE events, contexts, ledger, rollups, context_links")
        yield rt


async def test_intake_dedup_workers_and_hot_tier_across_cluster_slots(
    cluster_rt: Runtime, tenant: str
) -> None:
    rt = cluster_rt
    producer = StreamProducer(rt.redis)
    acceptor = Acceptor(rt.settings, producer, Ledger(rt.db))
    service = MemoryService(rt)
    worker = Worker(rt.redis, service.apply_events, rt.settings.partitions, WorkerConfig(block_ms=20), "cl-0")
    sources = [Source(f"gh{n}", tenant, "github", ("x",)) for n in range(4)]  # spread over partitions
    body = orjson.dumps(load_fixture("push"))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="producer")
        tasks.start_soon(worker.run, name="worker")
        accepted = []
        for source in sources:
            for _ in range(3):
                delivery = uuid.uuid4().hex
                _, duplicate = await acceptor.accept(source, "push", delivery, orjson.loads(body), body)
                assert duplicate is False
                accepted.append(delivery)
            _, again = await acceptor.accept(source, "push", accepted[-1], orjson.loads(body), body)
            assert again is True

        async def applied() -> bool:
            return len(await service.recent_events(tenant, limit=100)) == len(accepted)

        await wait_until(applied, within=30)
        worker.stop()
        tasks.cancel_scope.cancel()
    ctx_id = (await service.recent_events(tenant, limit=1))[0].context_id
    ctx = await service.get_context(tenant, ctx_id)
    assert ctx.head.tier == "hot" and ctx.head.event_count == len(accepted)


def issue(number: int, action: str = "opened") -> dict[str, Any]:
    """A real ``issues`` payload made into issue ``number``: one subject, so one context, each."""
    payload = load_fixture("issues_opened")
    payload["action"] = action
    payload["issue"]["number"] = number
    payload["issue"]["title"] = f"Spelling error number {number} in the README file"
    payload["issue"]["body"] = f"It looks like you spelled 'commit' with {number} t's."
    return payload


async def test_the_whole_lifecycle_runs_on_the_cluster(cluster_rt: Runtime, tenant: str) -> None:
    rt = cluster_rt
    service = MemoryService(rt)
    await service.apply_events(
        [make_event(tenant, "issues", issue(n), f"gh:i{n}", source="gh") for n in range(SUBJECTS)]
    )
    ids = sorted({event.context_id for event in await service.recent_events(tenant, limit=100)})
    assert len(ids) == SUBJECTS
    before = {ctx_id: await service.get_context(tenant, ctx_id) for ctx_id in ids}
    lifecycle = Lifecycle(rt)
    now = datetime.now(UTC)

    # hot → warm, training the source's dictionary: its three keys are in different slots, which
    # a MULTI refuses (CROSSSLOT), so training writes them one by one
    report = await lifecycle.run_pass(now + 10 * HOUR)
    assert report.to_warm == SUBJECTS and len(report.dictionaries) == 1, report
    dict_id = report.dictionaries[0]
    trained = [keys.zstd_dictionary(dict_id), keys.zstd_current_dictionary("gh"),
               keys.zstd_samples_since_training("gh")]  # fmt: skip
    assert len({key_slot(key.encode()) for key in trained}) > 1
    assert await rt.redis.get(keys.zstd_current_dictionary("gh")) == str(dict_id).encode()
    heads = [await rt.redis.hgetall(keys.context(tenant, ctx_id)) for ctx_id in ids]
    assert {head[b"tier"] for head in heads} == {b"warm"}
    assert sum(head[b"warm_dict"] == str(dict_id).encode() for head in heads) >= 1  # used, too
    for ctx_id in ids:
        warm = await service.get_context(tenant, ctx_id)
        assert warm.head.tier == "warm"
        assert [(e.id, e.text) for e in warm.events] == [(e.id, e.text) for e in before[ctx_id].events]

    # warm → cold: archived in the blob store, answered with the summary
    report = await lifecycle.run_pass(now + 200 * HOUR)
    assert report.to_cold == SUBJECTS, report
    first, second = ids[0], ids[1]
    archive = (await rt.redis.hget(keys.context(tenant, first), "archive_key") or b"").decode()
    assert archive and await rt.blobs.get(archive)
    cold = await service.get_context(tenant, first)
    assert cold.head.tier == "cold" and cold.head.summary

    # cold → warm on a read that asks for the body
    restored = await service.get_context(tenant, first, restore=True)
    assert restored.head.tier == "warm"
    assert [(e.id, e.text) for e in restored.events] == [(e.id, e.text) for e in before[first].events]

    # cold → hot when a new event arrives for the subject
    number = int(before[second].events[0].id.removeprefix("gh:i"))
    await service.apply_events([make_event(tenant, "issues", issue(number, "edited"), "gh:late")])
    promoted = await service.get_context(tenant, second)
    assert promoted.head.tier == "hot"
    expected = sorted([*(e.id for e in before[second].events), "gh:late"])
    assert sorted(e.id for e in promoted.events) == expected

    # early demotion: one node (not the one a plain INFO asks) nearly full is pressure enough
    await service.apply_events([make_event(tenant, "issues", issue(500), "gh:fresh")])
    fresh = next(e.context_id for e in await service.recent_events(tenant, limit=5) if e.id == "gh:fresh")
    assert not (await lifecycle.run_pass()).pressure
    cluster: Any = rt.redis
    node = next(n for n in cluster.get_primaries() if n.name != cluster.get_default_node().name)
    used = int((await cluster.info("memory", target_nodes=node))["used_memory"])
    await cluster.config_set("maxmemory", str(int(used / 0.85)), target_nodes=node)
    try:
        report = await lifecycle.run_pass()
    finally:
        await cluster.config_set("maxmemory", "0", target_nodes=node)
    assert report.pressure and report.to_warm == 2, report  # the fresh context and the promoted one
    assert (await service.get_context(tenant, fresh)).head.tier == "warm"
    assert (await service.get_context(tenant, second)).head.tier == "warm"

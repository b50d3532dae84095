"""forget on a real three-node Redis Cluster: no command it sends spans slots - the dictionary scrub
(retire, retrain, recompress with a script, delete), the pre-warm keys, the per-context embedding
cache (a script per key, in the context's slot) - and nothing of the context is left on any node."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.envelope import entry_event
from memory import keys
from memory.embed_cache import CachedEmbedder
from memory.forget import forget
from memory.ids import context_id
from memory.lifecycle import Lifecycle
from memory.mappers.base import mapper_for
from memory.runtime import Runtime, open_runtime
from memory.service import MemoryService
from memory.tiers.warm import MIN_SAMPLES, frame_dictionary
from tests.conftest import make_settings
from tests.e2e.redis_servers import start_cluster
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="hlfc", dir="/tmp") as root, start_cluster(Path(root)) as ports:
        yield f"redis+cluster://127.0.0.1:{ports[0]}"


@pytest.fixture
async def cluster_rt(cluster_url: str, tmp_path: Path, machine_database_url: str) -> AsyncIterator[Runtime]:
    settings = make_settings(tmp_path, cluster_url, machine_database_url, HOOKLINE_EMBEDDER="none")
    async with open_runtime(settings, migrate=False) as rt:
        async with rt.db.connection() as conn:
            await conn.execute("TRUNCATE events, contexts, ledger, rollups, context_links")
        yield rt


class Letters:
    """A deterministic embedder (the cache is what is under test here, not the model)."""

    dim, name = 4, "letters"

    async def embed(self, texts: Sequence[str], *, background: bool = False) -> list[list[float]]:
        return [[float(len(text)), float(text.count("e")), 1.0, 0.0] for text in texts]

    async def aclose(self) -> None:
        return None


def _issue(number: int, title: str) -> dict[str, Any]:
    payload = copy.deepcopy(load_fixture("issues_opened"))
    payload["issue"].update(number=number, title=title)
    return payload


async def test_forget_on_the_cluster(cluster_rt: Runtime, tenant: str) -> None:
    rt, service = cluster_rt, MemoryService(cluster_rt)
    target = _issue(1, "Deploy plan zq-cluster-secret")
    await service.apply_events([make_event(tenant, "issues", target, "gh:1")])  # demoted first: sampled
    await service.apply_events(
        [make_event(tenant, "issues", _issue(n, f"Chore {n}"), f"gh:{n}") for n in range(2, MIN_SAMPLES + 4)]
    )
    ctx_id = context_id(tenant, mapper_for("github").map("issues", target).subject)
    report = await Lifecycle(rt).run_pass(datetime.now(UTC) + timedelta(hours=10))
    assert len(report.dictionaries) == 1
    trained = report.dictionaries[0]
    # Pre-warm keys and a cached embedding of the context, written on the cluster.
    for read in (ctx_id, context_id(tenant, "github:Codertocat/Hello-World#issue/2"), ctx_id):
        await service.prewarmer.observe(tenant, "triage", read, datetime.now(UTC))
    cache = CachedEmbedder(Letters(), rt.redis, ttl_s=60)
    await cache.embed_contexts([(tenant, ctx_id, "Deploy plan zq-cluster-secret")])
    assert await rt.redis.exists(keys.embedding_context(tenant, ctx_id)) == 1

    counts = (await forget(rt, tenant, ctx_id, entry_event)).counts

    assert counts["contexts"] == 1 and counts["samples"] == 1 and counts["dictionaries"] == 1
    assert counts["recompressed"] >= 1 and counts["prewarm_keys"] >= 3 and counts["redis_keys"] == 3
    assert await rt.redis.exists(keys.zstd_dictionary(trained)) == 0
    redis: Any = rt.redis
    left: list[bytes] = []
    async for name in redis.scan_iter(match="*"):  # every node
        left.append(name)
        if (await redis.type(name)) == b"string":
            left.append(await redis.get(name) or b"")
    assert [name for name in left if ctx_id.encode() in name] == [
        keys.context_forgotten(tenant, ctx_id).encode()
    ]
    assert not any(b"zq-cluster-secret" in chunk for chunk in left)
    for n in range(2, MIN_SAMPLES + 4):  # every other context still reads, off the deleted dictionary
        other = await service.get_context(
            tenant, context_id(tenant, f"github:Codertocat/Hello-World#issue/{n}")
        )
        assert other.head.tier == "warm" and other.events
        blob = await redis.get(keys.context_warm(tenant, other.head.id)) or b""
        assert frame_dictionary(blob, -1) != trained
    # A context forgotten meanwhile is not cached, on the cluster too (the script's two keys share a slot).
    await cache.embed_contexts([(tenant, ctx_id, "made while forget ran")])
    assert await rt.redis.exists(keys.embedding_context(tenant, ctx_id)) == 0

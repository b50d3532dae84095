"""The pre-warmer on a synthetic access pattern: it learns A → B and the hit rate rises."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from memory.lifecycle import Lifecycle
from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event


async def _contexts(service: MemoryService, tenant: str, n: int) -> list[str]:
    events = []
    for i in range(n):
        payload = copy.deepcopy(load_fixture("issues_opened"))
        payload["issue"]["number"] = 300 + i
        payload["issue"]["title"] = f"Runbook step {i}"
        events.append(make_event(tenant, "issues", payload, f"gh:r{i}"))
    await service.apply_events(events)
    hits = await service.search_context(tenant, "", limit=n)
    number = {h.context.id: int(h.context.title.split("#")[1].split()[0]) for h in hits}
    return sorted(number, key=lambda ctx_id: number[ctx_id])


async def _all_cold(rt: Runtime) -> None:
    now = datetime.now(UTC)
    await Lifecycle(rt).run_pass(now + timedelta(hours=10))
    await Lifecycle(rt).run_pass(now + timedelta(days=30))


async def test_the_prewarmer_learns_a_pattern_and_its_hit_rate_rises(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    a, b, c, d = await _contexts(service, tenant, 4)
    await _all_cold(rt)
    # The agent reads A then B, four times (and once A then C: P(B|A) = 0.8 > 0.7).
    for follower in (b, b, c, b, b):
        await service.get_context(tenant, a, agent="triage-bot")
        await service.get_context(tenant, follower, agent="triage-bot")
    assert [x for x, _ in await service.prewarmer.predict(tenant, "triage-bot", a)] == [b]
    await _all_cold(rt)
    assert (await service.get_context(tenant, b)).head.tier == "cold"
    await service.get_context(tenant, a, agent="triage-bot")  # predicts B: warms it ahead
    before = service.prewarmer.hits
    assert (await service.get_context(tenant, b, agent="triage-bot")).head.tier == "warm"
    assert service.prewarmer.hits == before + 1 and service.prewarmer.hit_rate > 0
    # Another agent's habits are its own: nothing learned for it.
    assert await service.prewarmer.predict(tenant, "other-agent", a) == []
    assert d not in [x for x, _ in await service.prewarmer.predict(tenant, "triage-bot", a)]


async def test_a_strong_cold_search_hit_is_warmed(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    ids = await _contexts(service, tenant, 2)
    await _all_cold(rt)
    hits = await service.search_context(tenant, "Runbook step 1", limit=2)
    top = hits[0]
    if top.score > 0.8:
        assert (await service.get_context(tenant, top.context.id)).head.tier == "warm"
    else:
        assert (await service.get_context(tenant, top.context.id)).head.tier == "cold"
    assert top.context.id in ids

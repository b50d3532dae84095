"""Summaries: the extractive templates, the cold tier's summary, daily roll-ups, and Claude."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from memory.lifecycle import Lifecycle
from memory.rollups import missing_days, roll_up
from memory.runtime import Runtime
from memory.service import MemoryService
from memory.summarize import AnthropicSummarizer, ExtractiveSummarizer
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event


async def _pr(service: MemoryService, tenant: str, when: datetime | None = None) -> str:
    opened = load_fixture("pull_request_opened")
    closed = load_fixture("pull_request_closed")
    await service.apply_events([
        make_event(tenant, "pull_request", opened, "gh:o", received_at=when),
        make_event(tenant, "pull_request", closed, "gh:c", received_at=when),
    ])  # fmt: skip
    return (await service.recent_events(tenant, limit=1))[0].context_id


async def test_the_extractive_summary_uses_the_kind_template_and_real_facts(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    ctx = await service.get_context(tenant, await _pr(service, tenant))
    text = await ExtractiveSummarizer().summarize(ctx)
    assert text.startswith("Pull request ") and ctx.head.title in text
    assert "2 events" in text and ctx.events[-1].text[:40] in text


async def test_going_cold_stores_a_summary_that_search_returns(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    ctx_id = await _pr(service, tenant)
    now = datetime.now(UTC)
    await Lifecycle(rt).run_pass(now + timedelta(hours=10))
    await Lifecycle(rt).run_pass(now + timedelta(days=30))
    hit = (await service.search_context(tenant, "", limit=1))[0]
    assert hit.context.id == ctx_id and hit.context.tier == "cold"
    assert hit.context.summary.startswith("Pull request ") and "2 events" in hit.context.summary


async def test_daily_rollups_cover_each_finished_day_once(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    await _pr(service, tenant, when=yesterday)
    days = await missing_days(rt, datetime.now(UTC).date())
    assert yesterday.date() in days
    assert await roll_up(rt, yesterday.date()) >= 1
    assert yesterday.date() not in await missing_days(rt, datetime.now(UTC).date())
    async with rt.db.connection() as conn:
        row = await (
            await conn.execute("SELECT summary, contexts, events FROM rollups WHERE tenant = %s", (tenant,))
        ).fetchone()
    assert row is not None and row[1] == 1 and row[2] == 2 and "gh on " in row[0]


@pytest.mark.skipif(
    not os.environ.get("ANTHROPIC_API_KEY"),
    reason="needs ANTHROPIC_API_KEY: the Anthropic API is not reachable from here",
)
async def test_claude_summarizes_a_context(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    ctx = await service.get_context(tenant, await _pr(service, tenant))
    text = await AnthropicSummarizer(os.environ["ANTHROPIC_API_KEY"]).summarize(ctx)
    assert 20 < len(text) < 2000

"""The memory service on real Redis (both kinds) and PostgreSQL, with real GitHub payloads."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from memory import search
from memory.errors import InvalidArgument, NotFound
from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import flush_redis, make_event


def _pr_events(tenant: str) -> list:
    opened = load_fixture("pull_request_opened")
    closed = load_fixture("pull_request_closed")
    return [
        make_event(tenant, "pull_request", opened, "gh:opened"),
        make_event(tenant, "pull_request", closed, "gh:closed"),
    ]


async def test_events_become_a_searchable_readable_context(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    opened = load_fixture("pull_request_opened")
    assert await service.apply_events(_pr_events(tenant)) == []

    title_word = opened["pull_request"]["title"].split()[0]
    hits = await service.search_context(tenant, title_word)
    assert len(hits) == 1
    hit = hits[0]
    assert hit.context.event_count == 2 and hit.context.tier == "hot"
    assert {"relevance", "recency", "importance", "access", "text_rank"} <= set(
        hit.breakdown
    ) and hit.score > 0

    ctx = await service.get_context(tenant, hit.context.id)
    assert [e.id for e in ctx.events] == ["gh:opened", "gh:closed"]
    assert ctx.head.state in ("closed", "merged")


async def test_reapplying_and_reordering_change_nothing(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    events = _pr_events(tenant)
    shuffled = events * 3
    random.Random(7).shuffle(shuffled)
    await service.apply_events(shuffled)
    hits = await service.search_context(tenant, "", limit=5)
    assert len(hits) == 1
    ctx = await service.get_context(tenant, hits[0].context.id)
    assert len(ctx.events) == 2 and ctx.head.event_count == 2
    async with rt.db.connection() as conn:
        row = await (
            await conn.execute("SELECT event_count FROM contexts WHERE tenant = %s", (tenant,))
        ).fetchone()
    assert row == (2,)


async def test_an_issue_comment_on_a_pr_joins_the_pr_context(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    comment = load_fixture("issue_comment_created")
    pr_number = comment["issue"]["number"]
    pr = load_fixture("pull_request_opened")
    pr["pull_request"]["number"] = pr_number
    pr["number"] = pr_number
    pr["repository"] = comment["repository"]
    await service.apply_events(
        [make_event(tenant, "pull_request", pr, "a"), make_event(tenant, "issue_comment", comment, "b")]
    )
    hits = await service.search_context(tenant, "", limit=10)
    if "pull_request" in comment["issue"]:
        assert len(hits) == 1 and hits[0].context.event_count == 2
    else:
        assert len(hits) == 2


async def test_reads_never_cross_tenants(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    await service.apply_events(_pr_events(tenant))
    mine = await service.search_context(tenant, "", limit=5)
    assert mine
    assert await service.search_context("other", "", limit=5) == []
    assert await service.recent_events("other") == []
    with pytest.raises(NotFound):
        await service.get_context("other", mine[0].context.id)


async def test_cold_read_falls_back_to_the_index_when_redis_lost_the_context(
    rt: Runtime, tenant: str
) -> None:
    service = MemoryService(rt)
    await service.apply_events(_pr_events(tenant))
    ctx_id = (await service.search_context(tenant, "", limit=1))[0].context.id
    await flush_redis(rt.redis)
    ctx = await service.get_context(tenant, ctx_id)
    assert ctx.head.id == ctx_id and len(ctx.events) == 2


async def test_recent_events_page_newest_first(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    push = load_fixture("push")
    events = [
        make_event(tenant, "push", push, f"gh:p{i}", received_at=base + timedelta(seconds=i))
        for i in range(7)
    ]
    await service.apply_events(events)
    first = await service.recent_events(tenant, limit=4)
    assert [e.id for e in first] == ["gh:p6", "gh:p5", "gh:p4", "gh:p3"]
    rest = await service.recent_events(tenant, limit=4, before=(first[-1].received_at, first[-1].id))
    assert [e.id for e in rest] == ["gh:p2", "gh:p1", "gh:p0"]
    since = await service.recent_events(tenant, limit=10, since=base + timedelta(seconds=5))
    assert [e.id for e in since] == ["gh:p6", "gh:p5"]


async def test_search_filters_and_limits(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    await service.apply_events(_pr_events(tenant))
    assert await service.search_context(tenant, "", source="another-source") == []
    future = datetime.now(UTC) + timedelta(days=3650)
    assert await service.search_context(tenant, "", since=future) == []
    with pytest.raises(InvalidArgument):
        await service.search_context(tenant, "x", limit=0)
    with pytest.raises(InvalidArgument):
        await service.search_context(tenant, "x" * 5000)


async def test_unmappable_events_are_rejected_not_applied(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    bad = make_event(tenant, "pull_request", ["not", "an", "object"], "gh:bad")  # type: ignore[arg-type]
    good = _pr_events(tenant)[0]
    rejected = await service.apply_events([bad, good])
    assert [r.event.id for r in rejected] == ["gh:bad"]
    hits = await service.search_context(tenant, "", limit=10)
    assert len(hits) == 1 and hits[0].context.event_count == 1


async def test_nul_characters_in_payload_text_are_stored_safely(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    payload = load_fixture("issues_opened")
    payload["issue"]["title"] = "bad\x00title"
    assert await service.apply_events([make_event(tenant, "issues", payload, "gh:nul")]) == []
    hits = await service.search_context(tenant, "title", limit=5)
    assert len(hits) == 1 and "\x00" not in hits[0].context.title


async def test_full_text_candidates_of_a_query_of_stop_words_are_the_newest(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    events = [
        make_event(tenant, "issues", load_fixture("issues_opened"), "gh:i", received_at=base),
        make_event(tenant, "push", load_fixture("push"), "gh:p", received_at=base + timedelta(hours=1)),
    ]
    await service.apply_events(events)
    async with rt.db.connection() as conn:
        newest = await search.text_candidates(conn, tenant, "", search.Filters())
        assert len(newest) == 2 and newest[0]["updated_at"] >= newest[1]["updated_at"]
        for query in ("the", "what is it?", "?"):
            rows = await search.text_candidates(conn, tenant, query, search.Filters())
            assert [(r["id"], r["rank"]) for r in rows] == [(r["id"], 0) for r in newest], query


async def test_full_text_candidates_are_ranked_matches_with_their_columns(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    push = make_event(tenant, "push", load_fixture("push"), "gh:p")
    await service.apply_events([*_pr_events(tenant), push])
    async with rt.db.connection() as conn:
        sql = "SELECT title FROM contexts WHERE tenant = %s AND kind = 'pull_request'"
        row = await (await conn.execute(sql, (tenant,))).fetchone()
        assert row is not None
        title = row[0]
        rows = await search.text_candidates(conn, tenant, title, search.Filters())
        assert rows and rows[0]["title"] == title and rows[0]["rank"] > 0
        assert [r["rank"] for r in rows] == sorted((r["rank"] for r in rows), reverse=True)
        assert {"body", "summary", "pinned", "access_count"} <= set(rows[0])
        assert await search.text_candidates(conn, tenant, title, search.Filters(source="other")) == []
        assert await search.text_candidates(conn, "other", title, search.Filters()) == []

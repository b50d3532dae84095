"""forget and the derived PostgreSQL rows: a daily roll-up the context counted in is rewritten from
what remains (or deleted when nothing does), and its links go; on the machine's Redis and PostgreSQL.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.envelope import entry_event
from memory import links
from memory.forget import forget
from memory.ids import context_id
from memory.mappers.base import mapper_for
from memory.rollups import roll_up
from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event


def _issue(number: int, title: str) -> dict[str, Any]:
    payload = copy.deepcopy(load_fixture("issues_opened"))
    payload["issue"].update(number=number, title=title)
    return payload


def _id(tenant: str, payload: dict[str, Any]) -> str:
    return context_id(tenant, mapper_for("github").map("issues", payload).subject)


async def _rollup(rt: Runtime, tenant: str, day: object) -> tuple[str, int, int] | None:
    async with rt.db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT summary, contexts, events FROM rollups WHERE tenant = %s AND day = %s", (tenant, day)
            )
        ).fetchone()
    return (str(row[0]), int(row[1]), int(row[2])) if row else None


async def test_a_rollup_is_rewritten_without_the_context_then_deleted(
    machine_rt: Runtime, tenant: str
) -> None:
    rt, service, other = machine_rt, MemoryService(machine_rt), f"o{tenant}"
    today = datetime.now(UTC)
    yesterday = today - timedelta(days=1)
    first, second = _issue(1, "Rotate the zq-first-secret keys"), _issue(2, "Upgrade the runners")
    await service.apply_events(
        [
            make_event(tenant, "issues", first, "gh:1a"),
            make_event(tenant, "issues", first, "gh:1b"),
            make_event(tenant, "issues", first, "gh:1c", received_at=yesterday),  # a day never rolled up
            make_event(tenant, "issues", second, "gh:2a"),
            make_event(other, "issues", first, "gh:1a", source="gh-other"),
        ]
    )
    assert await roll_up(rt, today.date()) == 2
    summary, contexts, events = await _rollup(rt, tenant, today.date()) or ("", 0, 0)
    assert (
        f"[{_id(tenant, first)}]" in summary and "zq-first-secret" in summary and (contexts, events) == (2, 3)
    )
    theirs = await _rollup(rt, other, today.date())

    report = await forget(rt, tenant, _id(tenant, first), entry_event)

    assert report.counts["rollups_rewritten"] == 1 and report.counts["rollups_deleted"] == 0
    summary, contexts, events = await _rollup(rt, tenant, today.date()) or ("", 0, 0)
    assert "zq-first-secret" not in summary and f"[{_id(tenant, first)}]" not in summary
    assert f"[{_id(tenant, second)}]" in summary and (contexts, events) == (1, 1)
    assert await _rollup(rt, tenant, yesterday.date()) is None  # not written by forget either
    assert await _rollup(rt, other, today.date()) == theirs  # another tenant's: untouched

    report = await forget(rt, tenant, _id(tenant, second), entry_event)

    assert report.counts["rollups_deleted"] == 1 and await _rollup(rt, tenant, today.date()) is None


async def test_the_links_of_the_context_go(machine_rt: Runtime, tenant: str) -> None:
    rt, service = machine_rt, MemoryService(machine_rt)
    a, b, c = (_issue(n, f"Issue {n}") for n in (1, 2, 3))
    await service.apply_events([make_event(tenant, "issues", p, f"gh:{n}") for n, p in enumerate((a, b, c))])
    ids = sorted(_id(tenant, p) for p in (a, b, c))
    async with rt.db.connection() as conn:  # as link_near_duplicates writes them (a < b)
        for x, y in ((ids[0], ids[1]), (ids[0], ids[2]), (ids[1], ids[2])):
            await conn.execute(
                "INSERT INTO context_links (tenant, a, b, similarity) VALUES (%s, %s, %s, 0.95)",
                (tenant, x, y),
            )

    report = await forget(rt, tenant, ids[1], entry_event)

    assert report.counts["links"] == 2
    async with rt.db.connection() as conn:
        assert [other for other, _ in await links.related(conn, tenant, ids[0])] == [ids[2]]
        assert await links.related(conn, tenant, ids[1]) == []

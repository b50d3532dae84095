"""The PostgreSQL index row of a context, refreshed batch by batch: its count grows by the events new
in each batch (redeliveries add nothing), its body and summary follow event time whatever the order
of arrival, and a batch with nothing new leaves the row alone."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _comment(tenant: str, n: int) -> Any:
    payload = copy.deepcopy(load_fixture("issue_comment_created"))
    payload["comment"]["body"] = f"comment number {n}"
    payload["comment"]["created_at"] = payload["comment"]["updated_at"] = (
        T0 + timedelta(minutes=n)
    ).isoformat()
    return make_event(tenant, "issue_comment", payload, f"gh:c{n}", received_at=T0 + timedelta(minutes=n))


async def _row(rt: Runtime, tenant: str) -> dict[str, Any]:
    async with rt.db.connection() as conn:
        cur = await conn.execute(
            "SELECT event_count, body, summary, touched_at, "
            "(SELECT count(*) FROM events WHERE tenant = %s) AS ledger FROM contexts WHERE tenant = %s",
            (tenant, tenant),
        )
        rows = await cur.fetchall()
        names = [c.name for c in cur.description or []]
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


async def test_the_count_grows_by_new_events_only_and_the_body_follows_event_time(
    machine_rt: Runtime, tenant: str
) -> None:
    service = MemoryService(machine_rt)
    await service.index_events([_comment(tenant, n) for n in (1, 2, 3)])
    # Later batches: a redelivery with new ones, an older event arriving late, duplicates within a batch.
    await service.index_events([_comment(tenant, n) for n in (3, 5, 5, 6)])
    await service.index_events([_comment(tenant, n) for n in (4, 2, 1)])
    row = await _row(machine_rt, tenant)
    assert row["event_count"] == row["ledger"] == 6
    assert re.findall(r"comment number (\d)", row["body"]) == ["1", "2", "3", "4", "5", "6"]
    assert len(row["body"].splitlines()) == 6 and "comment number 6" in row["summary"]


async def test_a_batch_with_nothing_new_leaves_the_row_alone(machine_rt: Runtime, tenant: str) -> None:
    service = MemoryService(machine_rt)
    batch = [_comment(tenant, n) for n in (1, 2)]
    await service.index_events(batch)
    before = await _row(machine_rt, tenant)
    await service.index_events(batch)  # redelivered whole (a worker died before its ack)
    assert await _row(machine_rt, tenant) == before

"""Invariant 1 under fire: kill any process at any moment and no accepted event is lost or applied
twice.

Real ``hookline serve`` processes (an api-only one and a worker-only one) on an embedded Redis
(AOF, ``appendfsync everysec``) and PostgreSQL of each test's own, so that kills and restarts stay
inside the test. Signed GitHub deliveries go in over HTTP; every answer is recorded, and at the end
every event that got a 202 must be in the ledger, the events table and the hot tier exactly once.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
import pytest

from tests.e2e import procs
from tests.e2e.procs import Cluster, Outcomes, assert_applied_exactly_once, redeliver, send
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
async def cl() -> AsyncIterator[Cluster]:
    async with procs.cluster() as found:
        try:
            yield found
        except BaseException:
            print(found.logs())
            raise


def report(name: str, **figures: Any) -> None:
    print(f"\n[durability] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


async def more_than(database_url: str, table: str, n: int) -> bool:
    return await procs.count(database_url, table) > n


async def test_a_worker_killed_mid_stream_loses_nothing_and_applies_nothing_twice(cl: Cluster) -> None:
    api = cl.server("api", "api")
    worker = cl.server("worker", "worker")
    await api.start()
    await worker.start()
    deliveries = procs.issue_comments(10_000)
    outcomes = Outcomes()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(send, api.url, deliveries, cl.secret, outcomes)
        await wait_until(lambda: more_than(cl.stores.database_url, "events", 1_000), within=120)
        await worker.kill()
        killed_at = time.monotonic()
        left = await procs.groups(cl.stores.redis_url)
        await worker.start()
        restarted_s = time.monotonic() - killed_at
    assert outcomes.codes == {202: 10_000}, outcomes.codes
    await wait_until(lambda: procs.drained(cl.stores.redis_url), within=180)
    recovery_s = time.monotonic() - killed_at
    report(
        "worker kill -9",
        pending_left_by_the_dead=sum(g.pending for g in left.values()),
        unread_at_kill=max(g.unread for g in left.values()),
        restart_s=f"{restarted_s:.1f}",
        kill_to_drained_s=f"{recovery_s:.1f}",
    )
    await assert_applied_exactly_once(cl, {d.id for d in deliveries})
    # The restarted process took its consumer names back rather than waiting out XAUTOCLAIM's idle time.
    assert recovery_s < 60, f"recovery took {recovery_s:.0f} s"

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


async def accepted(outcomes: Outcomes, n: int) -> bool:
    return len(outcomes.accepted) >= n


async def busy(cl: Cluster, applied: int) -> bool:
    """The worker has applied more than ``applied`` events and holds a batch in hand right now."""
    db, redis_url = cl.stores.database_url, cl.stores.redis_url
    return await more_than(db, "events", applied) and await procs.in_flight(redis_url) > 0


async def test_a_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice(cl: Cluster) -> None:
    api = cl.server("api", "api")
    worker = cl.server("worker", "worker")
    await api.start()
    deliveries = procs.issue_comments(10_000)
    outcomes = Outcomes()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(send, api.url, deliveries, cl.secret, outcomes)
        # A backlog first, so that the worker is busy (a batch in hand) when it dies.
        await wait_until(lambda: accepted(outcomes, 2_000), within=60)
        await worker.start()
        await wait_until(lambda: busy(cl, 1_000), within=120)
        await worker.kill()
        killed_at = time.monotonic()
        left = await procs.groups(cl.stores.redis_url)
        await worker.start()
        restarted_s = time.monotonic() - killed_at
    assert outcomes.codes == {202: 10_000}, outcomes.codes
    await wait_until(lambda: procs.drained(cl.stores.redis_url), within=180)
    recovery_s = time.monotonic() - killed_at
    in_hand = {group: state.pending for group, state in left.items()}
    report(
        "worker kill -9",
        entries_in_the_dead_workers_hands=in_hand,
        unread_at_kill=max(g.unread for g in left.values()),
        restart_s=f"{restarted_s:.1f}",
        kill_to_drained_s=f"{recovery_s:.1f}",
    )
    assert sum(in_hand.values()) > 0, "the kill did not catch the worker in a batch"
    await assert_applied_exactly_once(cl, {d.id for d in deliveries})
    # The restarted process took its consumer names (and their pending entries) back at once,
    # rather than waiting out XAUTOCLAIM's 60 s idle time.
    assert recovery_s < 60, f"recovery took {recovery_s:.0f} s"

"""Invariant 1 under fire: kill any process at any moment and no accepted event is lost or applied
twice.

Real ``hookline serve`` processes (an api-only one and a worker-only one) on an embedded Redis
(AOF, ``appendfsync everysec``) and PostgreSQL of each test's own, so that kills and restarts stay
inside the test. Signed GitHub deliveries go in over HTTP; every answer is recorded, and at the end
every event that got a 202 must be in the ledger, the events table and the hot tier exactly once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anyio
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
    await procs.drain(cl)
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


async def refused_some(outcomes: Outcomes) -> bool:
    return bool(outcomes.refused)


@pytest.mark.parametrize("crash", ["shutdown", "kill-9"])
async def test_redis_restarted_mid_stream_keeps_every_accepted_event(cl: Cluster, crash: str) -> None:
    """Redis goes down under load, the orderly way (SHUTDOWN: AOF flushed and fsynced) or the hard
    way (``kill -9``: with ``appendfsync everysec`` the AOF is written to the kernel before a reply
    leaves Redis, but fsynced only every second). Either way every event that got its 202 survives a
    *process* crash; only a crash of the machine itself may lose the last second of 202s (see below)."""
    api = cl.server("api", "api")
    worker = cl.server("worker", "worker")
    await api.start()
    await worker.start()
    deliveries = procs.issue_comments(6_000)
    outcomes = Outcomes()
    async with anyio.create_task_group() as tasks:
        # Paced, so that deliveries keep coming after the restart as well as during the outage.
        tasks.start_soon(partial(send, api.url, deliveries, cl.secret, outcomes, rate=600))
        await wait_until(lambda: accepted(outcomes, 2_000), within=60)
        down_at = time.monotonic()
        await (cl.stores.stop_redis() if crash == "shutdown" else cl.stores.kill_redis())
        before = set(outcomes.accepted)  # every 202 sent before the crash
        stopped_s = time.monotonic() - down_at
        await wait_until(lambda: refused_some(outcomes), within=30)  # the intake noticed: 503s
        await cl.stores.start_redis()
        outage_s = time.monotonic() - down_at
    refused_during = len(outcomes.refused)
    await redeliver(api.url, cl.secret, outcomes)
    await procs.drain(cl)
    report(
        f"redis {crash}",
        accepted_before_crash=len(before),
        stop_s=f"{stopped_s:.2f}",
        outage_s=f"{outage_s:.2f}",
        refused_then_redelivered=refused_during,
        codes=dict(outcomes.codes),
        transport_errors=outcomes.transport_errors,
        duplicates_on_redelivery=len(outcomes.duplicates),
        recovered_s=f"{time.monotonic() - down_at:.1f}",
    )
    assert set(outcomes.codes) <= {200, 202, 503}, outcomes.codes
    ledger = set(await procs.ids(cl.stores.database_url, "ledger"))
    lost = sorted(outcomes.accepted - ledger)
    assert not lost, f"{len(lost)} events got a 202 and were lost with Redis: {lost[:10]}"
    # The provider's retries made up for every refusal, and nothing was applied twice.
    await assert_applied_exactly_once(cl, {d.id for d in deliveries})
    assert "worker.backoff" in worker.log_text()  # the worker did see Redis go

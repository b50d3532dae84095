"""Invariant 1 under fire: kill any process at any moment and no accepted event is lost or applied
twice.

Real ``hookline serve`` processes (an api-only one and a worker-only one) on an embedded Redis
(AOF, ``appendfsync everysec``) and PostgreSQL of each test's own, so that kills and restarts stay
inside the test. Signed GitHub deliveries go in over HTTP; every answer is recorded, and at the end
every event that got a 202 must be in the ledger, the events table and the hot tier exactly once.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any

import anyio
import pytest

from ingest.retry import RetryPolicies, RetryPolicy
from ingest.worker import Worker, WorkerConfig
from memory import keys
from memory.models import Event
from memory.runtime import open_runtime
from memory.service import MemoryService, Rejected
from memory.settings import load_settings
from tests.e2e import procs
from tests.e2e.procs import Cluster, Outcomes, assert_applied_exactly_once, redeliver, send
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
async def cl() -> AsyncIterator[Cluster]:
    async with procs.cluster() as found:
        yield found


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


async def frozen_mid_batch(cl: Cluster, worker: procs.Server, applied: int) -> bool:
    """Freeze the worker (SIGSTOP) once it has applied more than ``applied`` events; if it holds
    no batch at that instant (between an ack and its next read), let it go on and say so. A
    frozen worker cannot ack, so a kill that follows a True catches a batch in hand for certain."""
    if not await more_than(cl.stores.database_url, "events", applied):
        return False
    worker.pause()
    if await procs.in_flight(cl.stores.redis_url) > 0:
        return True
    worker.resume()
    return False


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
        await wait_until(lambda: frozen_mid_batch(cl, worker, 1_000), within=120)
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
    # The restarted process took the dead one's consumer names back (its pid was gone), so it
    # finished their pending entries itself instead of leaving them to XAUTOCLAIM after 60 s idle.
    names = await procs.consumer_names(cl.stores.redis_url)
    assert all(len(found) == 1 for found in names.values()), names


async def refused_some(outcomes: Outcomes) -> bool:
    return bool(outcomes.refused)


@pytest.mark.parametrize("crash", ["shutdown", "kill-9"])
async def test_redis_restarted_mid_stream_keeps_every_accepted_event(cl: Cluster, crash: str) -> None:
    """Redis goes down under load, the orderly way (SHUTDOWN: the AOF is flushed and fsynced) or
    the hard way (``kill -9``), and comes back from its AOF. Every event that got its 202 must be in
    a stream after the restart, and be applied once in the end; the refused ones (503) are sent
    again, as the provider would.

    What ``appendfsync everysec`` guarantees: Redis write()s the AOF before it replies, so a killed
    redis-server normally loses nothing acknowledged (the kernel still has it), and a crash of the
    machine (power, kernel) loses up to the last second. But while a background fsync is stalled
    (a slow disk), Redis postpones that write() for up to 2 s and replies anyway: then even a
    ``kill -9`` can lose up to 2 s of 202s. A fast local disk, as here, does not stall."""
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
    # Redis itself kept every 202: each accepted event is in a stream after the restart.
    lost = sorted(outcomes.accepted - await procs.stream_ids(cl.stores.redis_url))
    assert not lost, f"{len(lost)} events got a 202 and were lost with Redis ({crash}): {lost[:10]}"
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
    # The provider's retries made up for every refusal, and nothing was applied twice.
    await assert_applied_exactly_once(cl, {d.id for d in deliveries})
    assert "worker.backoff" in worker.log_text()  # the worker did see Redis go


async def test_postgres_down_for_30_s_loses_nothing_accepted(cl: Cluster) -> None:
    """PostgreSQL stops for 30 s while deliveries keep coming. The intake needs PostgreSQL only to
    look sources up (cached 2 s): after that it answers 503, which is a refusal (the provider
    retries), not a loss. The context group needs only Redis and keeps applying; the index and
    audit groups back off and catch up. Every 202 ends up applied once, and no event used up a
    retry attempt or reached the dead-letter stream because a store was down."""
    api = cl.server("api", "api")
    worker = cl.server("worker", "worker")
    await api.start()
    await worker.start()
    deliveries = procs.issue_comments(6_000)
    outcomes = Outcomes()
    redis_url = cl.stores.redis_url
    async with anyio.create_task_group() as tasks:
        paced = partial(send, api.url, deliveries, cl.secret, outcomes, rate=150, request_timeout_s=90)
        tasks.start_soon(paced)
        await procs.wait_for(cl, lambda: busy(cl, 300), within=60)
        await cl.stores.stop_postgres()
        down_at = time.monotonic()
        accepted_at_outage = len(outcomes.accepted)
        while time.monotonic() < down_at + 30:  # the outage itself: watch it, don't sync on it
            assert api.running and worker.running
            assert set(outcomes.codes) <= {202, 503}, outcomes.codes
            assert cl.crashed() is None, cl.crashed()
            await anyio.sleep(1)
        # Only Redis was needed for this: the hot tier has every event accepted so far.
        hot_in_outage = await procs.hot_total(redis_url)
        accepted_in_outage = len(outcomes.accepted)
        await cl.stores.start_postgres()
        up_at = time.monotonic()
    await redeliver(api.url, cl.secret, outcomes)
    await procs.drain(cl)
    report(
        "postgres down 30 s",
        accepted_before=accepted_at_outage,
        accepted_during=accepted_in_outage - accepted_at_outage,
        hot_tier_during=hot_in_outage,
        codes=dict(outcomes.codes),
        slowest_answer_s=f"{outcomes.slowest_s:.1f}",
        up_to_drained_s=f"{time.monotonic() - up_at:.1f}",
    )
    assert hot_in_outage == accepted_in_outage, "the context group stalled with PostgreSQL"
    assert set(outcomes.codes) <= {202, 503}, outcomes.codes
    await assert_applied_exactly_once(cl, {d.id for d in deliveries})
    assert '"worker.backoff"' in worker.log_text()


async def test_an_event_postgres_cannot_index_is_dead_lettered_while_the_rest_flows(cl: Cluster) -> None:
    """A natural poison: an issue whose title is too big for a tsvector. The context and audit
    groups take it; the index group's upsert fails with ProgramLimitExceeded every time. It must
    use up its retry attempts (5 by default) and land in the dead-letter stream with its error,
    while every other event is indexed meanwhile."""
    api = cl.server("api", "api")
    worker = cl.server("worker", "worker")
    await api.start()
    await worker.start()
    normal = procs.issue_comments(300)
    poison = procs.giant_issue()
    outcomes = Outcomes()
    await send(api.url, [*normal[:150], poison, *normal[150:]], cl.secret, outcomes, concurrency=8)
    assert outcomes.codes == {202: 301}, outcomes.codes
    db, redis_url = cl.stores.database_url, cl.stores.redis_url

    async def everything_else_indexed() -> bool:
        return await procs.count(db, "events") == 300

    async def dead_lettered() -> bool:
        return len(await procs.dead_letters(redis_url)) > 0

    await procs.wait_for(cl, everything_else_indexed, within=120)
    await procs.wait_for(cl, dead_lettered, within=120)
    letters = await procs.dead_letters(redis_url)
    assert len(letters) == 1, letters
    assert letters[0]["group"] == "index" and letters[0]["attempts"] == "5", letters
    assert "tsvector" in letters[0]["error"], letters
    procs.same_ids("events", await procs.ids(db, "events"), {d.id for d in normal})
    await procs.drain(cl)
    procs.same_ids("ledger", await procs.ids(db, "ledger"), {d.id for d in [*normal, poison]})
    assert await procs.hot_total(redis_url) == 301


class Flaky:
    """A context-group handler that fails for one event until ``fixed``, applying the rest for real."""

    def __init__(self, service: MemoryService, poison: str) -> None:
        self.service = service
        self.poison = poison
        self.fixed = False
        self.alone_failures = 0  # attempts on the poison by itself (the worker isolates it)
        self.applied: Counter[str] = Counter()  # successful applications per event id

    async def __call__(self, events: Sequence[Event]) -> Sequence[Rejected]:
        if not self.fixed and any(e.id == self.poison for e in events):
            if len(events) == 1:
                self.alone_failures += 1
            raise ValueError(f"poison {self.poison}")
        rejected = await self.service.apply_events(events)
        self.applied.update(e.id for e in events)
        return rejected


async def test_a_failing_event_is_dead_lettered_after_max_attempts_then_retried_once(cl: Cluster) -> None:
    """One event's handler keeps failing: it is retried with backoff, dead-lettered after exactly
    ``max_attempts`` with its error and count, while the rest flow; once the cause is fixed,
    ``hookline dlq retry`` brings it back and it is applied once."""
    api = cl.server("api", "api")
    await api.start()
    env = {k: v for k, v in api.env.items() if k != "HOOKLINE_PORT"} | {"HOOKLINE_EMBEDDER": "none"}
    settings = load_settings(env)
    deliveries = procs.issue_comments(200)
    poison = deliveries[100].id
    policy = RetryPolicies(default=RetryPolicy(base_s=0.01, cap_s=0.05, max_attempts=3))
    config = WorkerConfig(group=keys.CONTEXT_GROUP, batch_size=50, block_ms=50, retries=policy)
    db, redis_url = cl.stores.database_url, cl.stores.redis_url
    async with open_runtime(settings, migrate=False) as rt, anyio.create_task_group() as tasks:
        flaky = Flaky(MemoryService(rt), poison)
        worker = Worker(rt.redis, flaky, settings.partitions, config, "flaky-0")
        tasks.start_soon(worker.run, name="flaky-worker")
        outcomes = await send(api.url, deliveries, cl.secret, Outcomes())
        assert outcomes.codes == {202: 200}, outcomes.codes

        async def settled() -> bool:
            return await procs.count(db, "events") == 199 and bool(await procs.dead_letters(redis_url))

        await wait_until(settled, within=30)
        [letter] = await procs.dead_letters(redis_url)
        assert letter["group"] == "context" and letter["attempts"] == "3", letter
        assert letter["error"] == f"ValueError: poison {poison}", letter
        assert flaky.alone_failures == 3
        assert poison not in flaky.applied and set(flaky.applied.values()) == {1}
        assert await procs.retries_scheduled(redis_url) == {"context": 0, "index": 0, "audit": 0}
        async with procs.redis_client(redis_url) as redis:
            assert await redis.hlen(keys.attempts(keys.CONTEXT_GROUP)) == 0  # its count went with it

        flaky.fixed = True
        done = await anyio.run_process([procs.HOOKLINE, "dlq", "retry", letter["id"]], env=env, check=False)
        assert done.returncode == 0, done.stderr.decode()
        assert b"retried 1 dead letter" in done.stdout, done.stdout

        async def reapplied() -> bool:
            return await procs.count(db, "events") == 200 and not await procs.dead_letters(redis_url)

        await wait_until(reapplied, within=30)
        worker.stop()
    assert flaky.applied[poison] == 1 and set(flaky.applied.values()) == {1}
    procs.same_ids("events", await procs.ids(db, "events"), {d.id for d in deliveries})
    hot = await procs.hot_contexts(redis_url)
    assert sum(n for n, _ in hot.values()) == 200 and all(n == held for n, held in hot.values())


async def test_sigterm_during_a_batch_leaves_nothing_half_applied(cl: Cluster) -> None:
    """SIGTERM reaches a worker in the middle of 500-entry batches while events flow: it finishes
    and acknowledges what it holds, then exits. At that moment, for every group, what it has
    acknowledged is exactly what it has applied; after a restart everything is applied once."""
    api = cl.server("api", "api")
    worker = cl.server("worker", "worker", batch_size="500")
    await api.start()
    deliveries = procs.issue_comments(8_000)
    outcomes = Outcomes()
    db, redis_url = cl.stores.database_url, cl.stores.redis_url
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(send, api.url, deliveries, cl.secret, outcomes, rate=1_000))
        await wait_until(lambda: accepted(outcomes, 2_000), within=60)
        await worker.start()
        await procs.wait_for(cl, lambda: busy(cl, 500), within=120)
        stopping_at = time.monotonic()
        code = await worker.terminate(within=30)
        stop_s = time.monotonic() - stopping_at
        state = await procs.groups(redis_url)
        ledger, events = await procs.count(db, "ledger"), await procs.count(db, "events")
        hot = await procs.hot_total(redis_url)
        await worker.start()
    assert code in (0, -signal.SIGTERM), worker.log_tail()
    assert worker.log_text().count('"worker.stop"') == 3, worker.log_tail()
    report(
        "worker SIGTERM",
        stop_s=f"{stop_s:.1f}",
        delivered={g: s.delivered for g, s in state.items()},
        ledger=ledger,
        events=events,
        hot=hot,
    )
    assert all(s.pending == 0 for s in state.values()), f"left in hand: {state}"
    assert ledger == state["audit"].delivered
    assert events == state["index"].delivered
    assert hot == state["context"].delivered
    assert outcomes.codes == {202: 8_000}, outcomes.codes
    await procs.drain(cl)
    await assert_applied_exactly_once(cl, {d.id for d in deliveries})

"""Trimming, consumer names and cleanup, on real Redis (both kinds)."""

from __future__ import annotations

import os
import socket
import sys

import anyio

from ingest import consumers
from ingest.maintenance import cleanup_consumers, safe_trim_bound, trim
from ingest.stream import ensure_group
from memory import keys
from memory.runtime import Runtime

STREAM = keys.events_stream(0)


async def _fill(rt: Runtime, n: int) -> list[str]:
    return [(await rt.redis.xadd(STREAM, {"e": b"x"}, id=f"{1000 + i}-0")).decode() for i in range(n)]


async def test_trim_keeps_every_entry_some_group_has_not_acknowledged(rt: Runtime) -> None:
    ids = await _fill(rt, 10)
    for group in keys.GROUPS:
        await ensure_group(rt.redis, STREAM, group)
    # context read and acked 6, index read 8 but acked only the first 3, audit read nothing.
    await rt.redis.xreadgroup("context", "c", {STREAM: ">"}, count=6)
    await rt.redis.xack(STREAM, "context", *ids[:6])
    await rt.redis.xreadgroup("index", "i", {STREAM: ">"}, count=8)
    await rt.redis.xack(STREAM, "index", *ids[:3])
    # audit has read nothing: nothing may go
    assert await trim(rt.redis, [STREAM], keys.GROUPS, retention_s=1) == 0
    assert await rt.redis.xlen(STREAM) == 10
    await rt.redis.xreadgroup("audit", "a", {STREAM: ">"}, count=10)
    await rt.redis.xack(STREAM, "audit", *ids)
    assert await safe_trim_bound(rt.redis, STREAM, keys.GROUPS) == ids[3]  # index's oldest pending
    removed = await trim(rt.redis, [STREAM], keys.GROUPS, retention_s=1)
    assert removed == 3
    assert [e[0].decode() for e in await rt.redis.xrange(STREAM)] == ids[3:]


async def test_a_retry_waiting_in_the_zset_holds_its_entry(rt: Runtime) -> None:
    ids = await _fill(rt, 5)
    for group in keys.GROUPS:
        await ensure_group(rt.redis, STREAM, group)
        await rt.redis.xreadgroup(group, "x", {STREAM: ">"}, count=10)
        await rt.redis.xack(STREAM, group, *ids)
    await rt.redis.zadd(keys.retries("index"), {f"{STREAM}|{ids[1]}": 1})
    await trim(rt.redis, [STREAM], keys.GROUPS, retention_s=1)
    assert [e[0].decode() for e in await rt.redis.xrange(STREAM)] == ids[1:]


async def test_no_trim_while_a_group_is_missing_or_within_retention(rt: Runtime) -> None:
    ids = await _fill(rt, 3)
    await ensure_group(rt.redis, STREAM, "context")
    assert await safe_trim_bound(rt.redis, STREAM, keys.GROUPS) is None
    assert await trim(rt.redis, [STREAM], keys.GROUPS, retention_s=1) == 0
    for group in keys.GROUPS:
        await ensure_group(rt.redis, STREAM, group)
        await rt.redis.xreadgroup(group, "x", {STREAM: ">"}, count=10)
        await rt.redis.xack(STREAM, group, *ids)
    # Entries with ids from "now" are within a day's retention: kept for replay.
    fresh = (await rt.redis.xadd(STREAM, {"e": b"y"})).decode()
    for group in keys.GROUPS:
        await rt.redis.xreadgroup(group, "x", {STREAM: ">"}, count=10)
        await rt.redis.xack(STREAM, group, fresh)
    await trim(rt.redis, [STREAM], keys.GROUPS, retention_s=86400)
    assert [e[0].decode() for e in await rt.redis.xrange(STREAM)] == [fresh]


async def test_consumer_names_are_stable_and_a_dead_holders_name_is_taken_over(rt: Runtime) -> None:
    first = await consumers.acquire_name(rt.redis, "context", "host", set())
    second = await consumers.acquire_name(rt.redis, "context", "host", {first})
    assert (first, second) == ("host-0", "host-1")
    # A process of this host that died (a pid that no longer exists) held host-2.
    dead = await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"])
    await rt.redis.set(
        keys.consumer_slot("context", "host-2"), f"{socket.gethostname()}:{dead.stdout.decode().strip()}"
    )
    await rt.redis.set(keys.consumer_slot("context", "host-3"), f"elsewhere:{os.getpid()}")
    taken = await consumers.acquire_name(rt.redis, "context", "host", {first, second})
    assert taken == "host-2"
    assert await consumers.acquire_name(rt.redis, "context", "host", {first, second, taken}) == "host-4"


async def test_cleanup_removes_only_idle_consumers_with_nothing_pending(rt: Runtime) -> None:
    ids = await _fill(rt, 3)
    await ensure_group(rt.redis, STREAM, "context")
    await rt.redis.xreadgroup("context", "gone", {STREAM: ">"}, count=1)
    await rt.redis.xack(STREAM, "context", ids[0])
    await rt.redis.xreadgroup("context", "holding", {STREAM: ">"}, count=1)  # ids[1] pending
    await rt.redis.xreadgroup("context", "alive", {STREAM: ">"}, count=1)
    await rt.redis.xack(STREAM, "context", ids[2])
    await consumers.renew(rt.redis, "context", "alive")
    deleted = await cleanup_consumers(rt.redis, [STREAM], ["context"], idle_ms=0)
    assert deleted == ["context/gone"]
    names = {c["name"].decode() for c in await rt.redis.xinfo_consumers(STREAM, "context")}
    assert names == {"holding", "alive"}

"""Pipeline status: streams, consumer groups and their consumers, dead letters, counters and tiers.

Plain data (JSON-ready dicts) for ``hookline status``, the ``pipeline_status`` tool and the status
resource; rendering is theirs.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from memory import keys
from memory.runtime import Runtime

# When Redis does not report a group's lag (Redis < 7, or after deletions in the stream) it is
# counted by reading what follows the group's last delivered entry, up to this many entries.
LAG_SCAN = 1000


async def pipeline_status(
    rt: Runtime, groups: tuple[str, ...] = keys.GROUPS, tenant: str | None = None
) -> dict[str, Any]:
    """The pipeline as operators see it. With ``tenant`` (what MCP callers get), the tier counts are
    that tenant's own; streams, groups and consumers are shared machinery and stay whole."""
    streams: dict[str, Any] = {}
    totals: dict[str, dict[str, int]] = {group: {"lag": 0, "pending": 0} for group in groups}
    consumers: dict[tuple[str, str], dict[str, Any]] = {}
    accepted = 0
    for partition in range(rt.settings.partitions):
        stream = keys.events_stream(partition)
        accepted += int(await rt.redis.get(keys.accepted_counter(partition)) or 0)
        streams[stream] = {"length": int(await rt.redis.xlen(stream))}
        for info in await _groups_of(rt.redis, stream):
            group = _text(info["name"])
            total = totals.setdefault(group, {"lag": 0, "pending": 0})
            total["pending"] += int(info["pending"])
            total["lag"] += await _lag(rt.redis, stream, info)
            for consumer in await rt.redis.xinfo_consumers(stream, group):
                _add_consumer(consumers, group, consumer)
    return {
        "streams": streams,
        "groups": totals,
        "consumers": await _with_heartbeats(rt.redis, consumers),
        "dlq": int(await rt.redis.xlen(keys.dead_letters())),
        "events": {"accepted": accepted, "applied": int(await rt.redis.get(keys.counter("applied")) or 0)},
        "tiers": await _tiers(rt, tenant),
    }


async def _groups_of(redis: aioredis.Redis, stream: str) -> list[dict[str, Any]]:
    try:
        infos: list[dict[str, Any]] = await redis.xinfo_groups(stream)
    except ResponseError:  # the stream does not exist yet
        return []
    return infos


async def _lag(redis: aioredis.Redis, stream: str, info: dict[str, Any]) -> int:
    """Entries the group has not read yet."""
    if info.get("lag") is not None:
        return int(info["lag"])
    after = f"({_text(info['last-delivered-id'])}"
    return len(await redis.xrange(stream, min=after, count=LAG_SCAN) or [])


def _add_consumer(consumers: dict[tuple[str, str], dict[str, Any]], group: str, info: dict[str, Any]) -> None:
    """A consumer reads every partition: one row per (group, consumer), summed over streams."""
    name = _text(info["name"])
    row = consumers.setdefault((group, name), {"group": group, "name": name, "pending": 0, "idle_ms": None})
    row["pending"] += int(info["pending"])
    idle = int(info["idle"])
    row["idle_ms"] = idle if row["idle_ms"] is None else min(row["idle_ms"], idle)


async def _with_heartbeats(
    redis: aioredis.Redis, consumers: dict[tuple[str, str], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each consumer's last heartbeat (unix seconds; None once its 120 s key has expired)."""
    ordered = sorted(consumers)
    async with redis.pipeline(transaction=False) as pipe:
        for group, name in ordered:
            pipe.get(keys.consumer_heartbeat(group, name))
        beats = await pipe.execute() if ordered else []
    now = int(time.time())
    rows = []
    for key, beat in zip(ordered, beats, strict=True):
        heartbeat = _int(beat)
        age = None if heartbeat is None else max(0, now - heartbeat)
        rows.append({**consumers[key], "heartbeat": heartbeat, "heartbeat_age_s": age})
    return rows


async def _tiers(rt: Runtime, tenant: str | None) -> dict[str, dict[str, int]]:
    sql = "SELECT tier, count(*), coalesce(sum(length(body)), 0) FROM contexts"
    sql += " WHERE tenant = %s GROUP BY tier" if tenant is not None else " GROUP BY tier"
    async with rt.db.connection() as conn:
        rows = await (await conn.execute(sql, (tenant,) if tenant is not None else ())).fetchall()
    tiers = {tier: {"contexts": 0, "bytes": 0} for tier in ("hot", "warm", "cold")}
    for tier, count, size in rows:
        tiers[tier] = {"contexts": int(count), "bytes": int(size)}
    return tiers


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

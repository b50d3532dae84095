"""Pipeline status: streams, consumer groups, dead letters, counters and tiers, as plain data."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from memory import keys
from memory.runtime import Runtime


async def pipeline_status(rt: Runtime, groups: tuple[str, ...] = keys.GROUPS) -> dict[str, Any]:
    partitions = rt.settings.partitions
    streams: dict[str, Any] = {}
    totals: dict[str, dict[str, int]] = {group: {"lag": 0, "pending": 0} for group in groups}
    accepted = 0
    for partition in range(partitions):
        stream = keys.events_stream(partition)
        length = int(await rt.redis.xlen(stream))
        accepted += int(await rt.redis.get(keys.accepted_counter(partition)) or 0)
        streams[stream] = {"length": length}
        try:
            infos = await rt.redis.xinfo_groups(stream)
        except ResponseError:  # the stream does not exist yet
            infos = []
        for info in infos:
            name = _text(info["name"])
            if name in totals:
                totals[name]["pending"] += int(info["pending"])
                totals[name]["lag"] += int(info.get("lag") or 0)
    applied = int(await rt.redis.get(keys.counter("applied")) or 0)
    async with rt.db.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT tier, count(*), coalesce(sum(length(body)), 0) FROM contexts GROUP BY tier"
            )
        ).fetchall()
    tiers = {tier: {"contexts": 0, "bytes": 0} for tier in ("hot", "warm", "cold")}
    for tier, count, size in rows:
        tiers[tier] = {"contexts": int(count), "bytes": int(size)}
    return {
        "streams": streams,
        "groups": totals,
        "dlq": int(await rt.redis.xlen(keys.dead_letters())),
        "events": {"accepted": accepted, "applied": applied},
        "tiers": tiers,
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

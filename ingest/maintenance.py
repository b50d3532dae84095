"""Stream upkeep in each worker process: trimming, cleanup of departed consumers, and alerts.

Trimming never drops an entry some group still needs: for every stream the bound is the oldest
entry any group has pending (or not yet read), and the oldest entry waiting in a retry ZSET; only
entries older than both that bound and the retention time are trimmed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from ingest.metrics import ALERTS, DLQ_SIZE, GROUP_LAG, GROUP_PENDING, STREAM_TRIMMED
from ingest.retry import split
from memory import keys
from memory.failures import unit_failed

log = structlog.get_logger(__name__)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def _older(a: str, b: str) -> str:
    pa, pb = (tuple(int(x) for x in e.split("-")) for e in (a, b))
    return a if pa <= pb else b


async def safe_trim_bound(redis: aioredis.Redis, stream: str, groups: Sequence[str]) -> str | None:
    """The lowest entry id that some group still needs, or None when the stream must not be trimmed
    (a group is missing, so nobody knows what it still needs)."""
    try:
        infos = {_text(info["name"]): info for info in await redis.xinfo_groups(stream)}
    except ResponseError:
        return None  # no stream yet
    bound: str | None = None
    for group in groups:
        info = infos.get(group)
        if info is None:
            return None
        pending = await redis.xpending(stream, group)
        if int(pending["pending"]) > 0:
            need = _text(pending["min"])
        else:  # everything up to last-delivered is acknowledged; later entries are unread
            last = _text(info["last-delivered-id"])
            ms, seq = (int(x) for x in last.split("-"))
            need = f"{ms}-{seq + 1}"
        bound = need if bound is None else _older(bound, need)
    return bound


async def oldest_retry(redis: aioredis.Redis, stream: str, groups: Sequence[str]) -> str | None:
    oldest: str | None = None
    for group in groups:
        async for raw, _score in redis.zscan_iter(keys.retries(group)):
            member_stream, entry_id = split(_text(raw))
            if member_stream == stream:
                oldest = entry_id if oldest is None else _older(oldest, entry_id)
    return oldest


async def trim(redis: aioredis.Redis, streams: Sequence[str], groups: Sequence[str], retention_s: int) -> int:
    """Trim every stream as far as is safe; returns the number of entries removed."""
    removed = 0
    keep_from = f"{int((time.time() - retention_s) * 1000)}-0"
    for stream in streams:
        bound = await safe_trim_bound(redis, stream, groups)
        if bound is None:
            continue
        retry = await oldest_retry(redis, stream, groups)
        minid = _older(_older(bound, keep_from), retry) if retry else _older(bound, keep_from)
        removed += int(await redis.xtrim(stream, minid=minid, approximate=False))
    if removed:
        STREAM_TRIMMED.inc(removed)
    return removed


async def cleanup_consumers(redis: aioredis.Redis, streams: Sequence[str], groups: Sequence[str],
                            idle_ms: int) -> list[str]:  # fmt: skip
    """Delete consumers idle for ``idle_ms`` that hold nothing pending (their work has moved)."""
    deleted: list[str] = []
    for stream in streams:
        for group in groups:
            try:
                consumers = await redis.xinfo_consumers(stream, group)
            except ResponseError:
                continue
            for consumer in consumers:
                name = _text(consumer["name"])
                if int(consumer["pending"]) == 0 and int(consumer["idle"]) >= idle_ms:
                    if await redis.exists(keys.consumer_slot(group, name)):
                        continue  # a live process still holds the name
                    await redis.xgroup_delconsumer(stream, group, name)
                    deleted.append(f"{group}/{name}")
    return deleted


@dataclass
class Alerts:
    """Logs each alert condition at error level (and counts it) when it starts."""

    lag_threshold: int
    _dlq_seen: int | None = None
    _lagging: frozenset[str] = frozenset()

    async def check(self, redis: aioredis.Redis, streams: Sequence[str], groups: Sequence[str]) -> None:
        dlq = int(await redis.xlen(keys.dead_letters()))
        DLQ_SIZE.set(dlq)
        if self._dlq_seen is not None and dlq > self._dlq_seen:
            ALERTS.labels(kind="dlq_growth").inc()
            log.error("alert.dlq_growth", size=dlq, new=dlq - self._dlq_seen)
        self._dlq_seen = dlq
        lagging = set()
        for group in groups:
            lag = pending = 0
            for stream in streams:
                try:
                    for info in await redis.xinfo_groups(stream):
                        if _text(info["name"]) == group:
                            lag += int(info.get("lag") or 0)
                            pending += int(info["pending"])
                except ResponseError:
                    continue
            GROUP_LAG.labels(group=group).set(lag)
            GROUP_PENDING.labels(group=group).set(pending)
            if lag > self.lag_threshold:
                lagging.add(group)
                if group not in self._lagging:
                    ALERTS.labels(kind="lag").inc()
                    log.error("alert.lag", group=group, lag=lag, threshold=self.lag_threshold)
        self._lagging = frozenset(lagging)


async def run_maintenance(redis: aioredis.Redis, streams: Sequence[str], retention_s: int, lag_threshold: int,
                          every_s: float = 30.0, consumer_idle_ms: int = 3_600_000) -> None:  # fmt: skip
    """The maintenance loop (a named task of the worker role)."""
    alerts = Alerts(lag_threshold)
    while True:
        try:
            await alerts.check(redis, streams, keys.GROUPS)
            await trim(redis, streams, keys.GROUPS, retention_s)
            await cleanup_consumers(redis, streams, keys.GROUPS, consumer_idle_ms)
        except (aioredis.RedisError, OSError) as exc:
            log.warning("maintenance.failed", error=str(exc))
        except Exception as exc:  # the loop's boundary: a bad reply must not end the worker process
            unit_failed("maintenance", exc)
        await anyio.sleep(every_s)


async def backlog(redis: aioredis.Redis, streams: Sequence[str], groups: Sequence[str]) -> int:
    """Entries the slowest group still has to do (pending + not yet delivered), summed over streams."""
    worst = 0
    for group in groups:
        total = 0
        for stream in streams:
            try:
                for info in await redis.xinfo_groups(stream):
                    if _text(info["name"]) == group:
                        total += int(info["pending"]) + int(info.get("lag") or 0)
            except ResponseError:
                continue
        worst = max(worst, total)
    return worst


async def watch_pressure(redis: aioredis.Redis, streams: Sequence[str], threshold: int, limiter: Any,
                         every_s: float = 2.0) -> None:  # fmt: skip
    """Feed the API's rate limiter the workers' backlog (a named task of the api role)."""
    from ingest.ratelimit import pressure_from_backlog

    while True:
        try:
            limiter.pressure = pressure_from_backlog(await backlog(redis, streams, keys.GROUPS), threshold)
        except (aioredis.RedisError, OSError) as exc:
            log.warning("pressure.failed", error=str(exc))
        except Exception as exc:  # the loop's boundary
            unit_failed("backlog-pressure", exc)
        await anyio.sleep(every_s)

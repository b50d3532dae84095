"""Tombstones: what ``forget`` leaves so that an event already on its way cannot bring a context back.

``forget`` sets ``context_forgotten`` (the moment, in ms) before it deletes anything. From then on an
event of that context received before that moment is dropped by every group that writes the
context: the hot tier's apply script checks it atomically, the index group before its upsert. An
event received after it is a new one (the subject came back) and starts the context afresh.

The tombstone lives as long as an old event can still surface: the stream retention, the dedup
window (a redelivery inside it is a duplicate, outside a new event) and a day of margin for retries.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import redis.asyncio as aioredis

from memory import keys
from memory.settings import Settings

MARGIN_S = 86_400


def lifetime_s(settings: Settings) -> int:
    return max(settings.stream_retention_s, settings.dedup_window_s) + MARGIN_S


async def bury(redis: aioredis.Redis, settings: Settings, tenant: str, context_id: str, at: datetime) -> bool:
    """Mark the context forgotten at ``at`` (a later forget of it moves the mark forward only).
    Returns whether it was marked already."""
    key = keys.context_forgotten(tenant, context_id)
    at_ms = int(at.timestamp() * 1000)
    async with redis.pipeline(transaction=False) as pipe:  # one key: one slot, even in Cluster
        pipe.set(key, at_ms, get=True)
        pipe.expire(key, lifetime_s(settings))
        previous, _ = await pipe.execute()
    if previous is not None and int(previous) > at_ms:
        await redis.set(key, int(previous), ex=lifetime_s(settings))
    return previous is not None


async def unbury(redis: aioredis.Redis, tenant: str, context_id: str) -> None:
    """Take back a mark that guarded nothing (``forget`` of a context that does not exist)."""
    await redis.delete(keys.context_forgotten(tenant, context_id))


async def forgotten_before(
    redis: aioredis.Redis, events: Iterable[tuple[str, str, datetime]]
) -> set[tuple[str, str, datetime]]:
    """Of (tenant, context id, received at), those whose context was forgotten after receipt."""
    wanted = list(events)
    contexts = sorted({(tenant, ctx_id) for tenant, ctx_id, _ in wanted})
    if not contexts:
        return set()
    async with redis.pipeline(transaction=False) as pipe:
        for tenant, ctx_id in contexts:
            pipe.get(keys.context_forgotten(tenant, ctx_id))
        marks = dict(zip(contexts, await pipe.execute(), strict=True))
    return {
        (tenant, ctx_id, received)
        for tenant, ctx_id, received in wanted
        if marks[(tenant, ctx_id)] is not None and received.timestamp() * 1000 <= int(marks[(tenant, ctx_id)])
    }

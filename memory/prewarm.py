"""Predictive pre-warming: learn what agents read after what, and warm cold contexts before they
are asked for.

Per tenant and agent, every read of context B right after context A counts one A → B transition
(a Redis hash per A), and every read counts toward B's hour-of-day profile. After a read of A, each
B with P(B | A) > ``THRESHOLD`` that is cold is brought back to warm; so is every cold search hit
scoring above ``HIT_THRESHOLD``. A pre-warmed context is remembered for ``WINDOW_S``: if it is read
within that window, that is a pre-warm hit (``hookline_prewarm_hits_total`` over
``hookline_prewarms_total`` is the hit rate).

``forget_context`` removes a context from all of it: its own keys, the agents' "last read", and the
transitions of other contexts that name it (found through a reverse index, ``prewarm_previous``, and
the set of agents, ``prewarm_agents``, both kept by ``observe``; every key shares the tenant's slot).
A read followed up after its context was forgotten (a tombstone exists) is not learned from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import redis.asyncio as aioredis
from prometheus_client import Counter

from memory import keys
from memory.ids import is_context_id, is_name
from memory.lifecycle import Lifecycle

THRESHOLD = 0.7
HIT_THRESHOLD = 0.8
MIN_OBSERVATIONS = 3
WINDOW_S = 3600

PREWARMS = Counter("hookline_prewarms_total", "Cold contexts warmed ahead of a predicted read")
PREWARM_HITS = Counter("hookline_prewarm_hits_total", "Pre-warmed contexts that were then read")


class Prewarmer:
    def __init__(self, redis: aioredis.Redis, lifecycle: Lifecycle) -> None:
        self.redis = redis
        self.lifecycle = lifecycle
        self.prewarmed = 0
        self.hits = 0

    async def observe(self, tenant: str, agent: str, ctx_id: str, now: datetime) -> None:
        """Record a read: its transition from the agent's previous read, and its hour of day."""
        if await self.redis.exists(keys.context_forgotten(tenant, ctx_id)):
            return  # read just before a forget, followed up after it: nothing of it may come back
        last_key = keys.prewarm_last(tenant, agent)
        raw = await self.redis.getset(last_key, ctx_id)
        previous = raw.decode() if isinstance(raw, bytes) else raw
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.expire(last_key, 86400)
            pipe.sadd(keys.prewarm_agents(tenant), agent)
            if previous is not None and previous != ctx_id and is_context_id(previous):
                pipe.hincrby(keys.prewarm_transitions(tenant, agent, previous), ctx_id, 1)
                pipe.sadd(keys.prewarm_previous(tenant, agent, ctx_id), previous)
            pipe.hincrby(keys.prewarm_hours(tenant, ctx_id), str(now.hour), 1)
            pipe.delete(keys.prewarmed(tenant, ctx_id))
            results = await pipe.execute()
        if results[-1]:  # it had been pre-warmed: a hit
            self.hits += 1
            PREWARM_HITS.inc()

    async def predict(self, tenant: str, agent: str, ctx_id: str) -> list[tuple[str, float]]:
        raw = await self.redis.hgetall(keys.prewarm_transitions(tenant, agent, ctx_id))
        counts = {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
        total = sum(counts.values())
        if total < MIN_OBSERVATIONS:
            return []
        likely = [(other, n / total) for other, n in counts.items() if n / total > THRESHOLD]
        return sorted(likely, key=lambda item: -item[1])

    async def after_read(self, tenant: str, agent: str, ctx_id: str) -> list[str]:
        """Warm the contexts predicted to be read next; returns the ones actually moved."""
        return await self.warm(tenant, [other for other, _ in await self.predict(tenant, agent, ctx_id)])

    async def warm(self, tenant: str, ids: Sequence[str]) -> list[str]:
        moved = []
        for other in ids:
            if await self.lifecycle.rewarm(tenant, other):
                await self.redis.set(keys.prewarmed(tenant, other), 1, ex=WINDOW_S)
                self.prewarmed += 1
                PREWARMS.inc()
                moved.append(other)
        return moved

    @property
    def hit_rate(self) -> float:
        return self.hits / self.prewarmed if self.prewarmed else 0.0


# Deletes "last read" only while it still names the forgotten context (one key: one slot).
_DROP_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def forget_context(redis: aioredis.Redis, tenant: str, ctx_id: str) -> int:
    """Remove ``ctx_id`` from the tenant's pre-warm data; returns the keys and fields removed."""
    members = await redis.smembers(keys.prewarm_agents(tenant))
    agents = sorted(agent for agent in map(_text, members) if is_name(agent))
    async with redis.pipeline(transaction=False) as pipe:
        for agent in agents:
            pipe.hkeys(keys.prewarm_transitions(tenant, agent, ctx_id))
            pipe.smembers(keys.prewarm_previous(tenant, agent, ctx_id))
        found = await pipe.execute()
    removed = 0
    drop_if_equal = redis.register_script(_DROP_IF_EQUAL)
    for agent in agents:
        removed += int(await drop_if_equal(keys=[keys.prewarm_last(tenant, agent)], args=[ctx_id]))
    async with redis.pipeline(transaction=False) as pipe:
        for i, agent in enumerate(agents):
            followers, earlier = found[2 * i], found[2 * i + 1]
            for other in filter(is_context_id, map(_text, followers)):
                pipe.srem(keys.prewarm_previous(tenant, agent, other), ctx_id)
            for other in filter(is_context_id, map(_text, earlier)):
                pipe.hdel(keys.prewarm_transitions(tenant, agent, other), ctx_id)
            pipe.delete(
                keys.prewarm_transitions(tenant, agent, ctx_id), keys.prewarm_previous(tenant, agent, ctx_id)
            )
        pipe.delete(keys.prewarm_hours(tenant, ctx_id), keys.prewarmed(tenant, ctx_id))
        removed += sum(int(result) for result in await pipe.execute())
    return removed


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

"""Retries: exponential backoff with full jitter, scheduled in a Redis ZSET per consumer group.

A failed event's stream entry is acknowledged only after it has been written into the ZSET (by
"<stream>|<entry id>", scored by when it is due), so it is never lost: the ZSET holds it until it
succeeds or is dead-lettered. Due members are *leased* (their score pushed a lease ahead) rather
than removed, so a worker that dies while retrying leaves them to be retried again.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from memory import keys

# Members due by ARGV[1] (ms) get their score moved to ARGV[2] (the lease) and are returned.
_LEASE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return due
"""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 1.0
    cap_s: float = 300.0
    max_attempts: int = 5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
        return (rng or random).uniform(0, min(self.cap_s, self.base_s * 2**attempt))


@dataclass(frozen=True, slots=True)
class RetryPolicies:
    """The default policy, and overrides per source (from the source's options)."""

    default: RetryPolicy = RetryPolicy()
    per_source: Mapping[str, RetryPolicy] = field(default_factory=dict)

    def for_source(self, source: str) -> RetryPolicy:
        return self.per_source.get(source, self.default)


def member(stream: str, entry_id: str) -> str:
    return f"{stream}|{entry_id}"


def split(value: str) -> tuple[str, str]:
    stream, _, entry_id = value.rpartition("|")
    return stream, entry_id


class RetryQueue:
    def __init__(self, redis: aioredis.Redis, group: str) -> None:
        self.redis = redis
        self.zset = keys.retries(group)
        self.counts = keys.attempts(group)
        self._lease = redis.register_script(_LEASE_DUE)

    async def failed(self, item: str) -> int:
        """Count one more failed attempt; returns the total."""
        return int(await self.redis.hincrby(self.counts, item, 1))

    async def attempts(self, item: str) -> int:
        return int(await self.redis.hget(self.counts, item) or 0)

    async def schedule(self, item: str, due_ms: int) -> None:
        await self.redis.zadd(self.zset, {item: due_ms})

    async def lease_due(self, now_ms: int, lease_ms: int, count: int) -> list[str]:
        due = await self._lease(keys=[self.zset], args=[now_ms, now_ms + lease_ms, count])
        return [value.decode() if isinstance(value, bytes) else str(value) for value in due]

    async def done(self, items: list[str]) -> None:
        """Forget items that succeeded or were dead-lettered."""
        if items:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self.zset, *items)
                pipe.hdel(self.counts, *items)
                await pipe.execute()

    async def size(self) -> int:
        return int(await self.redis.zcard(self.zset))

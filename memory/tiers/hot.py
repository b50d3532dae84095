"""The hot tier: a context, raw and uncompressed, in two Redis hashes.

``ctx`` holds the head (title, state, counters ...); ``events`` maps each event's own id to the
event. Applying an event is one Lua script: HSETNX of the event makes re-application a no-op, and
the head fields are taken from the event with the greatest (time, id), so applying a subject's
events in any order gives the same context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
import redis.asyncio as aioredis

from memory import keys
from memory.models import Context, ContextEvent
from memory.runtime import is_cluster
from memory.tiers import document

_APPLY = """
local forgotten = redis.call('GET', KEYS[3])
if forgotten and tonumber(ARGV[7]) <= tonumber(forgotten) then return 2 end
local tier = redis.call('HGET', KEYS[1], 'tier')
if tier and tier ~= 'hot' then return -1 end
local added = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
local current = redis.call('HGET', KEYS[1], 'head_key')
if (not current) or ARGV[3] > current then
  local fields = {'head_key', ARGV[3]}
  for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
local importance = tonumber(redis.call('HGET', KEYS[1], 'importance') or '-1')
if tonumber(ARGV[4]) > importance then redis.call('HSET', KEYS[1], 'importance', ARGV[4]) end
local created = redis.call('HGET', KEYS[1], 'created_ms')
if (not created) or tonumber(ARGV[5]) < tonumber(created) then
  redis.call('HSET', KEYS[1], 'created_ms', ARGV[5])
end
local updated = redis.call('HGET', KEYS[1], 'updated_ms')
if (not updated) or tonumber(ARGV[5]) > tonumber(updated) then
  redis.call('HSET', KEYS[1], 'updated_ms', ARGV[5])
end
redis.call('HSET', KEYS[1], 'event_count', redis.call('HLEN', KEYS[2]), 'tier', 'hot', 'touched_ms', ARGV[6])
return added
"""


# Back to hot: the events come back into their hash, only if the tier is still the one we read.
_PROMOTE = """
if redis.call('HGET', KEYS[1], 'tier') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'tier', 'hot')
redis.call('HDEL', KEYS[1], 'warm_dict', 'warm_bytes')
redis.call('DEL', KEYS[3])
return 1
"""

# Hot to warm in one step, only if no event arrived since the document was read.
_TO_WARM = """
if redis.call('HGET', KEYS[1], 'tier') ~= 'hot' then return 0 end
if redis.call('HLEN', KEYS[2]) ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'tier', 'warm', 'warm_dict', ARGV[3], 'warm_bytes', string.len(ARGV[1]),
           'raw_bytes', ARGV[4])
redis.call('DEL', KEYS[2])
return 1
"""

# Warm to cold, only if the warm blob is still the one archived (same SHA-1).
_TO_COLD = """
if redis.call('HGET', KEYS[1], 'tier') ~= 'warm' then return 0 end
local blob = redis.call('GET', KEYS[3])
if (not blob) or redis.sha1hex(blob) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[1], 'tier', 'cold', 'archive_key', ARGV[2])
redis.call('HDEL', KEYS[1], 'warm_dict', 'warm_bytes')
return 1
"""


RawContext = tuple[dict[str, str], dict[str, str], bytes | None]  # head, events, warm blob


# Cold back to warm (a read asked for the full body): the archive's document, recompressed.
_COLD_TO_WARM = """
if redis.call('HGET', KEYS[1], 'tier') ~= 'cold' then return 0 end
redis.call('SET', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'tier', 'warm', 'warm_dict', ARGV[2], 'warm_bytes', string.len(ARGV[1]))
return 1
"""


@dataclass(frozen=True, slots=True)
class HotWrite:
    tenant: str
    context_id: str
    event: ContextEvent
    head_key: str
    importance: float
    head: dict[str, str]  # source, subject, kind, title, state, url, labels (JSON), fields (JSON)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _event_json(event: ContextEvent) -> bytes:
    return orjson.dumps(
        {
            "id": event.id,
            "event_type": event.event_type,
            "text": event.text,
            "occurred_ms": _ms(event.occurred_at),
            "received_ms": _ms(event.received_at),
            "actors": list(event.actors),
            "payload": event.payload,
        }
    )


class HotTier:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._apply = redis.register_script(_APPLY)
        self._promote = redis.register_script(_PROMOTE)
        self._to_warm = redis.register_script(_TO_WARM)
        self._to_cold = redis.register_script(_TO_COLD)
        self._cold_to_warm = redis.register_script(_COLD_TO_WARM)

    async def apply(self, writes: Sequence[HotWrite], now: datetime) -> list[int]:
        """Apply every write in one pipeline: 1 where the event was new to its context, 0 where it
        was already there, -1 where the context is warm or cold and must be promoted first, 2 where
        the context was forgotten after the event was received (it is dropped)."""
        if not writes:
            return []
        now_ms = str(_ms(now))
        calls = [self._apply_call(write, now_ms) for write in writes]
        if is_cluster(self._redis):  # no scripts in cluster pipelines: concurrent calls instead
            results = await asyncio.gather(*(self._apply(keys=k, args=a) for k, a in calls))
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for call_keys, call_args in calls:
                    await self._apply(keys=call_keys, args=call_args, client=pipe)
                results = await pipe.execute()
        return [int(result) for result in results]

    @staticmethod
    def _apply_call(write: HotWrite, now_ms: str) -> tuple[list[str], list[str | bytes]]:
        head_pairs = [item for pair in write.head.items() for item in pair]
        call_keys = [
            keys.context(write.tenant, write.context_id),
            keys.context_events(write.tenant, write.context_id),
            keys.context_forgotten(write.tenant, write.context_id),
        ]
        call_args: list[str | bytes] = [
            write.event.id,
            _event_json(write.event),
            write.head_key,
            f"{write.importance:.4f}",
            str(_ms(write.event.occurred_at)),
            now_ms,
            str(_ms(write.event.received_at)),
            *head_pairs,
        ]
        return call_keys, call_args

    async def read_raw(
        self, tenant: str, context_id: str
    ) -> tuple[dict[str, str], dict[str, str], bytes | None]:
        """The head hash, the events hash and the warm blob (any may be empty)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.context(tenant, context_id))
            pipe.hgetall(keys.context_events(tenant, context_id))
            pipe.get(keys.context_warm(tenant, context_id))
            head_raw, events_raw, warm = await pipe.execute()
        head = {k.decode(): v.decode() for k, v in head_raw.items()}
        events = {k.decode(): v.decode() for k, v in events_raw.items()}
        return head, events, warm

    async def read(self, tenant: str, context_id: str) -> Context | None:
        """The context if it is hot (None otherwise: see MemoryService.get_context for the rest)."""
        head, events, _ = await self.read_raw(tenant, context_id)
        if not head or head.get("tier", "hot") != "hot":
            return None
        return document.to_context(tenant, context_id, head, events)

    async def promote(self, tenant: str, context_id: str, from_tier: str, events: dict[str, str]) -> bool:
        pairs = [item for pair in events.items() for item in pair]
        result = await self._promote(keys=self._keys(tenant, context_id), args=[from_tier, *pairs])
        return bool(result)

    async def to_warm(self, tenant: str, context_id: str, blob: bytes, event_count: int, dict_id: int,
                      raw_bytes: int) -> bool:  # fmt: skip
        result = await self._to_warm(
            keys=self._keys(tenant, context_id), args=[blob, event_count, dict_id, raw_bytes]
        )
        return bool(result)

    async def to_cold(self, tenant: str, context_id: str, warm_sha1: str, archive_key: str) -> bool:
        result = await self._to_cold(keys=self._keys(tenant, context_id), args=[warm_sha1, archive_key])
        return bool(result)

    async def cold_to_warm(self, tenant: str, context_id: str, blob: bytes, dict_id: int) -> bool:
        return bool(await self._cold_to_warm(keys=self._keys(tenant, context_id), args=[blob, dict_id]))

    @staticmethod
    def _keys(tenant: str, context_id: str) -> list[str]:
        return [
            keys.context(tenant, context_id),
            keys.context_events(tenant, context_id),
            keys.context_warm(tenant, context_id),
        ]

    async def delete(self, tenant: str, context_id: str) -> None:
        await self._redis.delete(*self._keys(tenant, context_id))

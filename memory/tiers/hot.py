"""The hot tier: a context, raw and uncompressed, in two Redis hashes.

``ctx`` holds the head (title, state, counters ...); ``events`` maps each event's own id to the
event. Applying an event is one Lua script: HSETNX of the event makes re-application a no-op, and
the head fields are taken from the event with the greatest (time, id), so applying a subject's
events in any order gives the same context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from memory import keys
from memory.models import Context, ContextEvent, ContextSummary

_APPLY = """
local added = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
local current = redis.call('HGET', KEYS[1], 'head_key')
if (not current) or ARGV[3] > current then
  local fields = {'head_key', ARGV[3]}
  for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
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


def _from_ms(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def _event_json(event: ContextEvent) -> bytes:
    return orjson.dumps(
        {
            "id": event.id,
            "event_type": event.event_type,
            "text": event.text,
            "occurred_ms": _ms(event.occurred_at),
            "received_ms": _ms(event.received_at),
            "actors": list(event.actors),
        }
    )


class HotTier:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._apply = redis.register_script(_APPLY)

    async def apply(self, writes: Sequence[HotWrite], now: datetime) -> list[bool]:
        """Apply every write in one pipeline; True where the event was new to its context."""
        if not writes:
            return []
        now_ms = str(_ms(now))
        async with self._redis.pipeline(transaction=False) as pipe:
            for write in writes:
                head_pairs = [item for pair in write.head.items() for item in pair]
                await self._apply(
                    keys=[
                        keys.context(write.tenant, write.context_id),
                        keys.context_events(write.tenant, write.context_id),
                    ],
                    args=[
                        write.event.id,
                        _event_json(write.event),
                        write.head_key,
                        f"{write.importance:.4f}",
                        str(_ms(write.event.occurred_at)),
                        now_ms,
                        *head_pairs,
                    ],
                    client=pipe,
                )
            results = await pipe.execute()
        return [bool(result) for result in results]

    async def read(self, tenant: str, context_id: str) -> Context | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.context(tenant, context_id))
            pipe.hgetall(keys.context_events(tenant, context_id))
            head_raw, events_raw = await pipe.execute()
        if not head_raw:
            return None
        head = {k.decode(): v.decode() for k, v in head_raw.items()}
        events = sorted(
            (_parse_event(value) for value in events_raw.values()), key=lambda e: (e.occurred_at, e.id)
        )
        summary = ContextSummary(
            id=context_id,
            tenant=tenant,
            source=head.get("source", ""),
            subject=head.get("subject", ""),
            kind=head.get("kind", ""),
            title=head.get("title", ""),
            summary=events[-1].text if events else "",
            tier=head.get("tier", "hot"),
            state=head.get("state") or None,
            url=head.get("url") or None,
            importance=float(head.get("importance", 0.5)),
            event_count=int(head.get("event_count", len(events))),
            created_at=_from_ms(head.get("created_ms", 0)),
            updated_at=_from_ms(head.get("updated_ms", 0)),
        )
        return Context(
            head=summary,
            events=tuple(events),
            labels=tuple(orjson.loads(head.get("labels", "[]"))),
            fields=orjson.loads(head.get("fields", "{}")),
        )

    async def delete(self, tenant: str, context_id: str) -> None:
        await self._redis.delete(keys.context(tenant, context_id), keys.context_events(tenant, context_id))


def _parse_event(raw: bytes) -> ContextEvent:
    data = orjson.loads(raw)
    return ContextEvent(
        id=data["id"],
        event_type=data["event_type"],
        text=data["text"],
        occurred_at=_from_ms(data["occurred_ms"]),
        received_at=_from_ms(data["received_ms"]),
        actors=tuple(data.get("actors", ())),
    )

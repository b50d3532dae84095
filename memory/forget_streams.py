"""What ``forget`` finds and deletes in the event streams: the entries that carry one of the
context's events, their retries and dead letters, and the dedup window keys of its events.

Entries are found two ways: those the index and the ledger recorded (``stream_id``), and those not
settled yet, found by decoding the entries some consumer group has not acknowledged, the retry
ZSETs' entries and the dead letters. Each deleted entry is also acknowledged in every group, so no
pending list keeps pointing at it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from memory import keys
from memory.errors import HooklineError
from memory.ids import context_id as context_id_of
from memory.mappers.base import mapper_for
from memory.models import Event

# Turns a stream entry's envelope (and the entry's id) into the event; raises HooklineError when
# the entry cannot be decoded (such an entry belongs to no context).
Decode = Callable[[bytes, str], Event]

PAGE = 500  # stream entries or dead letters read per round trip

RawEntry = tuple[bytes, dict[bytes, bytes]]


@dataclass
class Traces:
    """What was found of the context, store by store."""

    tenant: str
    context_id: str
    subject: str | None
    event_ids: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    entries: set[tuple[str, str]] = field(default_factory=set)  # (stream, entry id)
    dead_letters: set[str] = field(default_factory=set)  # DLQ entry ids
    archives: set[str] = field(default_factory=set)  # candidate archive keys in the blob store
    days: set[tuple[str, date]] = field(default_factory=set)  # (source, UTC day) it had events on

    def add_event(self, event_id: str, source: str, stream: str | None, entry_id: str | None) -> None:
        self.event_ids.add(event_id)
        if source:
            self.sources.add(source)
        if stream and entry_id:
            self.entries.add((stream, entry_id))


class _Matcher:
    """Decides whether a stream entry carries one of the context's events (and records it)."""

    def __init__(self, traces: Traces, decode: Decode) -> None:
        self.traces = traces
        self.decode = decode
        self.tenant_bytes = traces.tenant.encode()

    def __call__(self, stream: str, entry_id: str, data: bytes | None) -> bool:
        if not data or self.tenant_bytes not in data:  # cheap: the envelope holds the tenant verbatim
            return False
        try:
            event = self.decode(data, entry_id)
        except HooklineError:
            return False  # undecodable: it belongs to no context
        if event.tenant != self.traces.tenant:
            return False
        if event.id not in self.traces.event_ids:
            try:
                mapped = mapper_for(event.provider).map(event.event_type, event.payload)
            except (HooklineError, ValueError):
                return False
            if context_id_of(event.tenant, mapped.subject) != self.traces.context_id:
                return False
            self.traces.subject = self.traces.subject or mapped.subject
        self.traces.add_event(event.id, event.source, stream, entry_id)
        return True


async def find_in_streams(redis: aioredis.Redis, traces: Traces, decode: Decode, partitions: int) -> None:
    matches = _Matcher(traces, decode)
    for partition in range(partitions):
        stream = keys.events_stream(partition)
        start = await _unsettled_from(redis, stream)
        if start is not None:
            async for entry_id, fields in _pages(redis, stream, start):
                matches(stream, entry_id, fields.get(b"e"))
    for group in keys.GROUPS:  # entries waiting for a retry are acknowledged, so not unsettled
        async for raw, _ in redis.zscan_iter(keys.retries(group)):
            stream, _, entry_id = text(raw).rpartition("|")
            if (stream, entry_id) not in traces.entries:
                rows = cast(list[RawEntry], await redis.xrange(stream, entry_id, entry_id))
                if rows:
                    matches(stream, entry_id, rows[0][1].get(b"e"))
    async for dlq_id, fields in _pages(redis, keys.dead_letters(), "-"):
        stream, entry_id = text(fields.get(b"stream", b"")), text(fields.get(b"entry", b""))
        if matches(stream, entry_id, fields.get(b"e")):
            traces.dead_letters.add(dlq_id)


async def _unsettled_from(redis: aioredis.Redis, stream: str) -> str | None:
    """The first entry some group has not acknowledged ("-" if a group does not exist yet, since it
    will read the whole stream); None when there is no stream."""
    try:
        infos = {text(info["name"]): info for info in await redis.xinfo_groups(stream)}
    except ResponseError:
        return None
    bound: tuple[int, int] | None = None
    for group in keys.GROUPS:
        info = infos.get(group)
        if info is None:
            return "-"
        pending = await redis.xpending(stream, group)
        if int(pending["pending"]) > 0:
            need = _id_tuple(text(pending["min"]))
        else:
            ms, seq = _id_tuple(text(info["last-delivered-id"]))
            need = (ms, seq + 1)
        bound = need if bound is None else min(bound, need)
    return "-" if bound is None else f"{bound[0]}-{bound[1]}"


async def _pages(
    redis: aioredis.Redis, stream: str, start: str
) -> AsyncIterator[tuple[str, dict[bytes, bytes]]]:
    """Every entry of ``stream`` from ``start`` on, a page at a time: (entry id, fields)."""
    lower = start
    while True:
        page = cast(list[RawEntry], await redis.xrange(stream, min=lower, max="+", count=PAGE) or [])
        for entry_id, fields in page:
            yield text(entry_id), fields
        if len(page) < PAGE:
            return
        lower = f"({text(page[-1][0])}"


async def delete_entries(redis: aioredis.Redis, entries: Iterable[tuple[str, str]]) -> int:
    ordered = sorted(entries)
    if not ordered:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for stream, entry_id in ordered:
            pipe.xdel(stream, entry_id)
            for group in keys.GROUPS:  # an entry still pending must not stay in the pending list
                pipe.xack(stream, group, entry_id)
        results = await pipe.execute(raise_on_error=False)
    per_entry = 1 + len(keys.GROUPS)
    return sum(int(r) for r in results[::per_entry] if isinstance(r, int))


async def delete_retries(redis: aioredis.Redis, entries: Iterable[tuple[str, str]]) -> int:
    members = sorted(f"{stream}|{entry_id}" for stream, entry_id in entries)
    if not members:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for group in keys.GROUPS:
            pipe.zrem(keys.retries(group), *members)
            pipe.hdel(keys.attempts(group), *members)
        results = await pipe.execute()
    return sum(int(r) for r in results[::2])


async def delete_dead_letters(redis: aioredis.Redis, dead: set[str]) -> int:
    return int(await redis.xdel(keys.dead_letters(), *sorted(dead))) if dead else 0


async def delete_dedup_keys(redis: aioredis.Redis, traces: Traces, partitions: int) -> int:
    tenant = traces.tenant
    names = sorted(
        keys.dedup_window(keys.partition_of(tenant, source, partitions), tenant, source, event_id)
        for source in traces.sources
        for event_id in traces.event_ids
    )
    if not names:
        return 0
    async with redis.pipeline(transaction=False) as pipe:  # one key a command: they span slots
        for name in names:
            pipe.delete(name)
        return sum(int(r) for r in await pipe.execute())


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

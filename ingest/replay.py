"""Replay: hand the events a time range of the streams still holds to consumer groups' handlers again.

A stream entry's id is the time (ms) it was queued, so a range of times is a range of ids
(``<since ms>-0`` to ``<until ms>-<max>``). Re-processing is safe because every handler is
idempotent. Entries already trimmed from a stream are gone: the report gives the earliest time the
streams still cover, so a caller can tell a quiet range from a trimmed one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import redis.asyncio as aioredis
import structlog

from ingest.envelope import decode_envelope, to_event
from ingest.stream import all_streams
from memory.errors import CorruptEnvelope, InvalidArgument
from memory.models import Event
from memory.runtime import Runtime
from memory.service import Rejected

log = structlog.get_logger(__name__)

BATCH = 500
_MAX_SEQ = 2**64 - 1  # the largest sequence part of a stream id

# What a consumer group does with a batch (ingest.worker's handlers have this shape).
Handler = Callable[[Sequence[Event]], Awaitable[Sequence[Rejected]]]
RawEntry = tuple[bytes | str, dict[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    since: datetime
    until: datetime
    read: int  # stream entries in the time range
    matched: int  # of those, decodable events of the chosen source
    replayed: Mapping[str, int]  # group → events its handler applied
    rejected: Mapping[str, int]  # group → events its handler refused (unmappable)
    undecodable: int  # entries whose envelope or payload does not decode
    earliest_available: datetime | None  # the oldest entry any stream still holds

    @property
    def may_be_incomplete(self) -> bool:
        """True when part of the range lies before what the streams still hold (it may be trimmed)."""
        return self.earliest_available is None or self.since < self.earliest_available


async def replay(
    rt: Runtime,
    handlers: Mapping[str, Handler],
    source: str | None,
    since: datetime,
    until: datetime,
    groups: Sequence[str],
    *,
    batch_size: int = BATCH,
) -> ReplayReport:
    """Re-apply the events queued between ``since`` and ``until`` (inclusive) for ``groups``."""
    since, until, groups = _utc(since), _utc(until), list(dict.fromkeys(groups))
    if since > until:
        raise InvalidArgument(f"since ({since.isoformat()}) is after until ({until.isoformat()})")
    missing = [group for group in groups if group not in handlers]
    if missing or not groups:
        raise InvalidArgument(
            f"no handler for group(s) {missing or '(none chosen)'}; known: {sorted(handlers)}"
        )
    replayed, rejected = dict.fromkeys(groups, 0), dict.fromkeys(groups, 0)
    read = matched = undecodable = 0
    streams = all_streams(rt.settings.partitions)
    for stream in streams:
        async for page in _pages(rt.redis, stream, f"{_ms(since)}-0", f"{_ms(until)}-{_MAX_SEQ}", batch_size):
            events, bad = _decode(page, source)
            read, matched, undecodable = read + len(page), matched + len(events), undecodable + bad
            if not events:
                continue
            for group in groups:
                refused = await handlers[group](events)
                rejected[group] += len(refused)
                replayed[group] += len(events) - len(refused)
    report = ReplayReport(since, until, read, matched, replayed, rejected, undecodable,
                          await _earliest(rt.redis, streams))  # fmt: skip
    log.info("replay.done", source=source, since=since.isoformat(), until=until.isoformat(),
             read=read, matched=matched, replayed=replayed, undecodable=undecodable)  # fmt: skip
    return report


async def _pages(
    redis: aioredis.Redis, stream: str, lower: str, upper: str, size: int
) -> AsyncIterator[list[RawEntry]]:
    while True:
        page = _entries_of(await redis.xrange(stream, min=lower, max=upper, count=size))
        if page:
            yield page
        if len(page) < size:
            return
        lower = f"({_text(page[-1][0])}"


def _decode(page: Sequence[RawEntry], source: str | None) -> tuple[list[Event], int]:
    """The page's events of ``source`` (every source when None), and how many did not decode."""
    events: list[Event] = []
    undecodable = 0
    for entry_id, fields in page:
        try:
            event = to_event(decode_envelope(fields.get(b"e", b"")), _text(entry_id))
        except CorruptEnvelope:
            undecodable += 1
            continue
        if source is None or event.source == source:
            events.append(event)
    return events, undecodable


async def _earliest(redis: aioredis.Redis, streams: Sequence[str]) -> datetime | None:
    """The time of the oldest entry any stream still holds (everything before it is trimmed or never was)."""
    firsts = [_entries_of(await redis.xrange(stream, count=1)) for stream in streams]
    times = [int(_text(first[0][0]).split("-")[0]) for first in firsts if first]
    return datetime.fromtimestamp(min(times) / 1000, UTC) if times else None


def _utc(moment: datetime) -> datetime:
    """A time without a zone is taken as UTC (not the machine's local time)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ms(moment: datetime) -> int:
    return max(0, int(moment.timestamp() * 1000))


def _entries_of(reply: object) -> list[RawEntry]:
    """XRANGE's RESP2 reply (redis-py's own hint is a union over protocol versions)."""
    return cast(list[RawEntry], reply or [])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

"""Replay: hand the events a time range of the streams still holds to consumer groups' handlers again.

A stream entry's id is the time (ms) it was queued, so a range of times is a range of ids
(``<since ms>-0`` to ``<until ms>-<max>``). Re-processing is safe because every handler is
idempotent. Entries already trimmed from a stream are gone: the report gives the earliest time the
streams still cover and whether any of the range is known (or, on Redis 6, suspected) to be gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

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
    may_be_incomplete: bool  # entries at or after ``since`` were trimmed or deleted: they are gone


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
    earliest, incomplete = await _coverage(rt.redis, streams, _ms(since))
    report = ReplayReport(since, until, read, matched, replayed, rejected, undecodable, earliest, incomplete)
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


async def _coverage(
    redis: aioredis.Redis, streams: Sequence[str], since_ms: int
) -> tuple[datetime | None, bool]:
    """The oldest entry the streams still hold, and whether entries from ``since_ms`` on may be gone.

    Trimming removes a stream's oldest entries, so a range is cut short when a stream that was
    written to at or after ``since`` now starts after it and has lost entries. Redis 7 counts the
    entries ever added and records the newest id XDEL removed; Redis 6 does neither, so there a
    stream that starts after ``since`` is assumed to have lost some.
    """
    firsts: list[int] = []
    incomplete = False
    for stream in streams:
        try:
            info = await redis.xinfo_stream(stream)
        except ResponseError:  # never created: nothing was ever queued there
            continue
        first = info.get("first-entry")
        first_ms = None if not first else _id_ms(first[0])
        if first_ms is not None:
            firsts.append(first_ms)
        if _id_ms(info["last-generated-id"]) >= since_ms and (first_ms is None or first_ms > since_ms):
            added = info.get("entries-added")
            incomplete |= added is None or int(added) > int(info["length"])
        deleted = info.get("max-deleted-entry-id")
        incomplete |= deleted is not None and _text(deleted) != "0-0" and _id_ms(deleted) >= since_ms
    return (datetime.fromtimestamp(min(firsts) / 1000, UTC) if firsts else None), incomplete


def _id_ms(entry_id: bytes | str) -> int:
    return int(_text(entry_id).split("-")[0])


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

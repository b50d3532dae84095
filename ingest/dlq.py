"""The dead-letter stream (``hl:dlq``): list, show, retry and purge what the workers gave up on.

Each entry carries ``stream`` and ``entry`` (where the event was read from), ``group`` (the consumer
group that failed it), ``error``, ``at_ms``, ``attempts`` and ``e``, the original envelope bytes.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import redis.asyncio as aioredis

from ingest.envelope import Envelope, decode_envelope
from memory import keys
from memory.errors import CorruptEnvelope, InvalidArgument

_PAGE = 200  # DLQ entries read per round trip while filtering by group
_STREAM_ID = re.compile(r"\d+-\d+")
_PARTITION_TAG = re.compile(r"\{p(\d+)\}")

RawEntry = tuple[bytes | str, dict[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered event; the envelope's fields are None when it does not decode."""

    id: str  # the DLQ entry id
    stream: str
    entry: str
    group: str
    error: str
    at: datetime
    attempts: int
    tenant: str | None = None
    source: str | None = None
    event_type: str | None = None
    dedup_key: str | None = None
    received_at: datetime | None = None
    payload: Any = None  # the decoded JSON payload, filled in by show() only


async def list_dead(redis: aioredis.Redis, count: int = 50, group: str | None = None) -> list[DeadLetter]:
    """The newest ``count`` dead letters, newest first, optionally only those ``group`` failed."""
    if count < 1:
        raise InvalidArgument(f"count must be at least 1, got {count}")
    found: list[DeadLetter] = []
    upper = "+"
    size = max(count, _PAGE) if group else count
    while len(found) < count:
        page = _entries_of(await redis.xrevrange(keys.dead_letters(), max=upper, count=size))
        for entry_id, fields in page:
            letter = _letter(entry_id, fields)
            if group is None or letter.group == group:
                found.append(letter)
        if len(page) < size:
            break
        upper = f"({_text(page[-1][0])}"
    return found[:count]


async def show(redis: aioredis.Redis, dlq_id: str) -> DeadLetter | None:
    """One dead letter with its payload decoded (None when there is no such entry)."""
    reply = _entries_of(await redis.xrange(keys.dead_letters(), min=_check_id(dlq_id), max=dlq_id, count=1))
    if not reply:
        return None
    return _letter(reply[0][0], reply[0][1], with_payload=True)


async def retry(
    redis: aioredis.Redis,
    ids: Sequence[str] = (),
    *,
    all: bool = False,
    group: str | None = None,
) -> int:
    """Put dead letters back on their original stream, as new entries; returns how many.

    Every group reads the new entry, not only the one that failed it: that is safe because applying
    an event is idempotent. Entries whose ``stream`` is not an event stream are left in place.
    """
    retried = 0
    async for entry_id, fields in _entries(redis, ids, all):
        stream = _text(fields.get(b"stream", b""))
        if group is not None and _text(fields.get(b"group", b"")) != group:
            continue
        if not _is_events_stream(stream) or b"e" not in fields:
            continue
        # The DLQ and the event streams live in different Cluster slots, so this cannot be one
        # MULTI/EXEC. XADD first, then XDEL: a crash in between leaves the event both re-queued and
        # still dead-lettered (a later retry applies it once more, harmlessly), never lost.
        await redis.xadd(stream, {"e": fields[b"e"]})
        await redis.xdel(keys.dead_letters(), entry_id)
        retried += 1
    return retried


async def purge(
    redis: aioredis.Redis,
    ids: Sequence[str] = (),
    *,
    all: bool = False,
    older_than: timedelta | None = None,
) -> int:
    """Delete dead letters for good (optionally only those older than ``older_than``); returns how many."""
    _check_selection(ids, all)
    cutoff_ms = None if older_than is None else int((time.time() - older_than.total_seconds()) * 1000)
    if all:
        # Exact trims (no "~"), so the count is what was deleted, whatever arrived meanwhile.
        if cutoff_ms is None:
            return int(await redis.xtrim(keys.dead_letters(), maxlen=0, approximate=False))
        return int(await redis.xtrim(keys.dead_letters(), minid=f"{cutoff_ms}-0", approximate=False))
    chosen = list(ids)
    if cutoff_ms is not None:
        chosen = [i for i in chosen if int(i.split("-")[0]) < cutoff_ms]
    if not chosen:
        return 0
    return int(await redis.xdel(keys.dead_letters(), *chosen))


async def _entries(redis: aioredis.Redis, ids: Sequence[str], all: bool) -> AsyncIterator[RawEntry]:
    """The chosen DLQ entries, oldest first, a page at a time (the DLQ may be long)."""
    _check_selection(ids, all)
    for dlq_id in ids:
        reply = await redis.xrange(keys.dead_letters(), min=dlq_id, max=dlq_id, count=1)
        for entry in _entries_of(reply):
            yield entry
    lower = "-"
    while all:
        page = _entries_of(await redis.xrange(keys.dead_letters(), min=lower, count=_PAGE))
        for entry in page:
            yield entry
        if len(page) < _PAGE:
            return
        lower = f"({_text(page[-1][0])}"


def _entries_of(reply: object) -> list[RawEntry]:
    """XRANGE's RESP2 reply (redis-py's own hint is a union over protocol versions)."""
    return cast(list[RawEntry], reply or [])


def _check_selection(ids: Sequence[str], all: bool) -> None:
    """Exactly one of: some ids (each well-formed, checked before anything changes), or all."""
    if all == bool(ids):
        raise InvalidArgument("name the dead letters by id, or choose all of them — not both, not neither")
    for dlq_id in ids:
        _check_id(dlq_id)


def _check_id(dlq_id: str) -> str:
    if not _STREAM_ID.fullmatch(dlq_id):
        raise InvalidArgument(f"not a stream entry id: {dlq_id!r} (expected e.g. 1718000000000-0)")
    return dlq_id


def _is_events_stream(name: str) -> bool:
    """Only ever re-queue into an event stream: the DLQ entry's ``stream`` field is data, not trusted."""
    tag = _PARTITION_TAG.search(name)
    return tag is not None and keys.events_stream(int(tag.group(1))) == name


def _letter(entry_id: bytes | str, fields: dict[bytes, bytes], *, with_payload: bool = False) -> DeadLetter:
    dlq_id = _text(entry_id)
    at_ms = _int(fields.get(b"at_ms")) or int(dlq_id.split("-")[0])
    envelope = _decoded(fields.get(b"e"))
    payload: Any = None
    if envelope is not None and with_payload:
        try:
            payload = orjson.loads(envelope.payload)
        except orjson.JSONDecodeError:
            payload = envelope.payload.decode(errors="replace")
    return DeadLetter(
        id=dlq_id,
        stream=_text(fields.get(b"stream", b"")),
        entry=_text(fields.get(b"entry", b"")),
        group=_text(fields.get(b"group", b"")),
        error=_text(fields.get(b"error", b"")),
        at=datetime.fromtimestamp(at_ms / 1000, tz=UTC),
        # entries dead-lettered before attempts were counted failed on their first attempt
        attempts=_int(fields.get(b"attempts")) or 1,
        tenant=envelope.tenant if envelope else None,
        source=envelope.source if envelope else None,
        event_type=envelope.event_type if envelope else None,
        dedup_key=envelope.dedup_key if envelope else None,
        received_at=envelope.received_at if envelope else None,
        payload=payload,
    )


def _decoded(data: bytes | None) -> Envelope | None:
    if not data:
        return None
    try:
        return decode_envelope(data)
    except CorruptEnvelope:
        return None


def _int(value: bytes | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value

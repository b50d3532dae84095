"""forget(): delete one context everywhere it exists now, and keep an audit row without payload.

What goes, for context C of tenant T:

- **Redis tiers**: C's head, events and warm blob (``HotTier.delete``), and the warm tier's training
  samples taken from C (the per-source sample pools);
- **cold tier**: C's archives in the blob store — the one its head names, and any older one left by
  an earlier demotion (an archive's key carries the date of C's newest event at the time, so every
  candidate key is derived from the dates of C's events);
- **PostgreSQL**: C's ``contexts`` row, its ``events`` rows and the ``ledger`` rows of those events
  (ledger ids are event ids);
- **streams**: every entry that carries one of C's events — those the index and the ledger recorded
  (``stream_id``), and those not settled yet, found by decoding the entries some consumer group has
  not acknowledged, the retry ZSETs' entries and the dead letters. Each deleted entry is also
  acknowledged in every group, so no pending list keeps pointing at it;
- the retry ZSET members and attempt counts of those entries, their dead letters, and the exact
  dedup window keys of C's events.

One ``forget_audit`` row records it: the subject only as a SHA-256 hash, and the counts.

``memory`` does not import ``ingest``, so the caller passes the function that decodes a stream
entry's envelope into an ``Event``.

Before anything is deleted, a tombstone (``memory.tombstones``) marks C forgotten as of now: an
event of C received before that moment - one a worker had already read, one redelivered from a
retry - is dropped by the hot tier's apply script (atomically) and by the index group. A
later event is a new one and starts C afresh.

Limits (not fixable from here):
- the index group checks the tombstone just before its upsert, not inside the same transaction: a
  batch that checked just before the tombstone was set and commits after the rows were deleted
  can leave C's row in PostgreSQL (without a hot tier); forget() again removes it. The ledger
  (audit group) may likewise record such an event's id (never its payload or subject);
- a zstd dictionary trained while C was among the warm tier's samples may hold fragments of C's
  text; only retraining the dictionary (and recompressing the blobs that use it) removes them;
- an entry that ``hookline dlq retry`` re-queued is found only while unsettled: once every group has
  acknowledged it, no table records its new id (the ledger and index keep the first one).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from redis.exceptions import ResponseError

from memory import keys, tombstones
from memory.errors import HooklineError, StoreUnavailable
from memory.ids import context_id as context_id_of
from memory.mappers.base import mapper_for
from memory.models import Event
from memory.runtime import Runtime, pg_connection
from memory.tiers import cold
from memory.tiers.hot import HotTier

# Turns a stream entry's envelope (and the entry's id) into the event; raises HooklineError when
# the entry cannot be decoded (such an entry belongs to no context).
Decode = Callable[[bytes, str], Event]

PAGE = 500  # stream entries, dead letters or samples read per round trip

RawEntry = tuple[bytes, dict[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class ForgetReport:
    context_id: str
    subject_hash: str  # SHA-256 of the subject, "" when nothing that was found named it
    counts: dict[str, int]

    @property
    def found(self) -> bool:
        return any(self.counts.values())


def subject_hash(subject: str | None) -> str:
    return hashlib.sha256(subject.encode()).hexdigest() if subject else ""


@dataclass
class _Traces:
    """What was found of the context, store by store."""

    tenant: str
    context_id: str
    subject: str | None
    event_ids: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    entries: set[tuple[str, str]] = field(default_factory=set)  # (stream, entry id)
    dead_letters: set[str] = field(default_factory=set)  # DLQ entry ids
    archives: set[str] = field(default_factory=set)  # candidate archive keys in the blob store

    def add_event(self, event_id: str, source: str, stream: str | None, entry_id: str | None) -> None:
        self.event_ids.add(event_id)
        if source:
            self.sources.add(source)
        if stream and entry_id:
            self.entries.add((stream, entry_id))


async def forget(
    rt: Runtime, tenant: str, context_id: str, decode: Decode, subject: str | None = None
) -> ForgetReport:
    """Delete ``context_id`` of ``tenant`` from every store; ``subject`` (when the caller named the
    context by it) is only hashed. Raises StoreUnavailable when a store cannot be reached."""
    traces = _Traces(tenant, context_id, subject)
    try:
        # The tombstone first: an event of C already read by a worker is dropped, not applied.
        await tombstones.bury(rt.redis, rt.settings, tenant, context_id, datetime.now(UTC))
        async with pg_connection(rt.db) as conn:
            await _find_in_index(conn, traces, rt.settings.partitions)
        await _find_in_redis_tiers(rt.redis, traces)
        await _find_in_streams(rt.redis, traces, decode, rt.settings.partitions)
        async with pg_connection(rt.db) as conn:
            await _find_in_ledger(conn, traces, rt.settings.partitions)
        counts = {
            # Entries first, so that no worker picks the events up again while the rest goes.
            "stream_entries": await _delete_entries(rt.redis, traces.entries),
            "retries": await _delete_retries(rt.redis, traces.entries),
            "dead_letters": await _delete_dead_letters(rt.redis, traces.dead_letters),
            "dedup_keys": await _delete_dedup_keys(rt.redis, traces, rt.settings.partitions),
            "samples": await _delete_samples(rt.redis, traces),
            "redis_keys": await _delete_tiers(rt.redis, traces),
            "archives": await _delete_archives(rt, traces),
        }
    except aioredis.RedisError as exc:
        raise StoreUnavailable(f"Redis failed during forget: {exc}") from exc
    async with pg_connection(rt.db) as conn:
        counts.update(await _delete_rows(conn, traces, counts))
    return ForgetReport(context_id, subject_hash(traces.subject), counts)


# -- finding ---------------------------------------------------------------------------------


async def _find_in_index(conn: AsyncConnection[Any], traces: _Traces, partitions: int) -> None:
    row = await (
        await conn.execute(
            "SELECT subject, source, archive_key, updated_at FROM contexts WHERE tenant = %s AND id = %s",
            (traces.tenant, traces.context_id),
        )
    ).fetchone()
    if row is not None:
        subject, source, archive_key, updated_at = row
        traces.subject = traces.subject or subject
        traces.sources.add(source)
        traces.archives |= _archive_keys(traces, updated_at)
        if archive_key:
            traces.archives.add(archive_key)
    rows = await (
        await conn.execute(
            "SELECT id, source, stream_id, occurred_at FROM events WHERE tenant = %s AND context_id = %s",
            (traces.tenant, traces.context_id),
        )
    ).fetchall()
    for event_id, source, stream_id, occurred_at in rows:
        stream = keys.events_stream(keys.partition_of(traces.tenant, source, partitions))
        traces.add_event(event_id, source, stream, stream_id)
        traces.archives |= _archive_keys(traces, occurred_at)


def _archive_keys(traces: _Traces, moment: datetime) -> set[str]:
    """Where an archive made when the context's newest event was ``moment`` would be (the lifecycle
    formats the date as PostgreSQL returns it; UTC covers a session in another time zone)."""
    return {cold.archive_key(traces.tenant, traces.context_id, m) for m in (moment, moment.astimezone(UTC))}


async def _find_in_ledger(conn: AsyncConnection[Any], traces: _Traces, partitions: int) -> None:
    """The ledger records the stream entry of events the index has not (or never) seen."""
    if not traces.event_ids:
        return
    rows = await (
        await conn.execute(
            "SELECT id, source, stream_id FROM ledger WHERE tenant = %s AND id = ANY(%s)",
            (traces.tenant, sorted(traces.event_ids)),
        )
    ).fetchall()
    for event_id, source, stream_id in rows:
        stream = keys.events_stream(keys.partition_of(traces.tenant, source, partitions))
        traces.add_event(event_id, source, stream, stream_id)


async def _find_in_redis_tiers(redis: aioredis.Redis, traces: _Traces) -> None:
    head, events, _ = await HotTier(redis).read_raw(traces.tenant, traces.context_id)
    traces.subject = traces.subject or head.get("subject") or None
    if head.get("source"):
        traces.sources.add(head["source"])
    if head.get("archive_key"):
        traces.archives.add(head["archive_key"])
    for event_id, raw in events.items():
        traces.event_ids.add(event_id)
        occurred_ms = orjson.loads(raw).get("occurred_ms")
        if isinstance(occurred_ms, int):
            traces.archives |= _archive_keys(traces, datetime.fromtimestamp(occurred_ms / 1000, tz=UTC))


class _Matcher:
    """Decides whether a stream entry carries one of the context's events (and records it)."""

    def __init__(self, traces: _Traces, decode: Decode) -> None:
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


async def _find_in_streams(redis: aioredis.Redis, traces: _Traces, decode: Decode, partitions: int) -> None:
    matches = _Matcher(traces, decode)
    for partition in range(partitions):
        stream = keys.events_stream(partition)
        start = await _unsettled_from(redis, stream)
        if start is not None:
            async for entry_id, fields in _pages(redis, stream, start):
                matches(stream, entry_id, fields.get(b"e"))
    for group in keys.GROUPS:  # entries waiting for a retry are acknowledged, so not unsettled
        async for raw, _ in redis.zscan_iter(keys.retries(group)):
            stream, _, entry_id = _text(raw).rpartition("|")
            if (stream, entry_id) not in traces.entries:
                rows = cast(list[RawEntry], await redis.xrange(stream, entry_id, entry_id))
                if rows:
                    matches(stream, entry_id, rows[0][1].get(b"e"))
    async for dlq_id, fields in _pages(redis, keys.dead_letters(), "-"):
        stream, entry_id = _text(fields.get(b"stream", b"")), _text(fields.get(b"entry", b""))
        if matches(stream, entry_id, fields.get(b"e")):
            traces.dead_letters.add(dlq_id)


async def _unsettled_from(redis: aioredis.Redis, stream: str) -> str | None:
    """The first entry some group has not acknowledged ("-" if a group does not exist yet, since it
    will read the whole stream); None when there is no stream."""
    try:
        infos = {_text(info["name"]): info for info in await redis.xinfo_groups(stream)}
    except ResponseError:
        return None
    bound: tuple[int, int] | None = None
    for group in keys.GROUPS:
        info = infos.get(group)
        if info is None:
            return "-"
        pending = await redis.xpending(stream, group)
        if int(pending["pending"]) > 0:
            need = _id_tuple(_text(pending["min"]))
        else:
            ms, seq = _id_tuple(_text(info["last-delivered-id"]))
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
            yield _text(entry_id), fields
        if len(page) < PAGE:
            return
        lower = f"({_text(page[-1][0])}"


# -- deleting --------------------------------------------------------------------------------


async def _delete_entries(redis: aioredis.Redis, entries: Iterable[tuple[str, str]]) -> int:
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


async def _delete_retries(redis: aioredis.Redis, entries: Iterable[tuple[str, str]]) -> int:
    members = sorted(f"{stream}|{entry_id}" for stream, entry_id in entries)
    if not members:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for group in keys.GROUPS:
            pipe.zrem(keys.retries(group), *members)
            pipe.hdel(keys.attempts(group), *members)
        results = await pipe.execute()
    return sum(int(r) for r in results[::2])


async def _delete_dead_letters(redis: aioredis.Redis, dead: set[str]) -> int:
    return int(await redis.xdel(keys.dead_letters(), *sorted(dead))) if dead else 0


async def _delete_dedup_keys(redis: aioredis.Redis, traces: _Traces, partitions: int) -> int:
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


async def _delete_samples(redis: aioredis.Redis, traces: _Traces) -> int:
    """The warm tier's training samples are context documents (``{"events": {id: ...}, "head": ...}``,
    cut at 64 KiB): one of the context's is recognised by an event id as a key, or by its subject."""
    needles = [orjson.dumps(event_id) + b":" for event_id in traces.event_ids]
    if traces.subject:
        needles.append(orjson.dumps(traces.subject))
    removed = 0
    for source in sorted(traces.sources):
        pool = keys.zstd_sample_pool(source)
        doomed: list[bytes] = []
        size = int(await redis.llen(pool))
        for start in range(0, size, PAGE):
            for sample in await redis.lrange(pool, start, start + PAGE - 1):
                if isinstance(sample, bytes) and any(needle in sample for needle in needles):
                    doomed.append(sample)
        for sample in doomed:
            removed += int(await redis.lrem(pool, 0, sample))  # type: ignore[arg-type]  # bytes work
    return removed


async def _delete_tiers(redis: aioredis.Redis, traces: _Traces) -> int:
    names = [
        keys.context(traces.tenant, traces.context_id),
        keys.context_events(traces.tenant, traces.context_id),
        keys.context_warm(traces.tenant, traces.context_id),
    ]
    return int(await redis.delete(*names))  # one hash tag: one slot, one command


async def _delete_archives(rt: Runtime, traces: _Traces) -> int:
    deleted = 0
    for key in sorted(traces.archives):
        if key in [found async for found in rt.blobs.list(key)]:  # a prefix listing of one key
            await rt.blobs.delete(key)
            deleted += 1
    return deleted


async def _delete_rows(conn: AsyncConnection[Any], traces: _Traces, counts: dict[str, int]) -> dict[str, int]:
    """The index, the ledger and the audit row, in one transaction (no audit row if nothing was
    found anywhere)."""
    tenant, ctx_id = traces.tenant, traces.context_id
    async with conn.transaction():
        cursor = await conn.execute(
            "DELETE FROM events WHERE tenant = %s AND (context_id = %s OR id = ANY(%s)) RETURNING id",
            (tenant, ctx_id, sorted(traces.event_ids)),
        )
        event_ids = traces.event_ids | {row[0] for row in await cursor.fetchall()}
        rows = {"events": cursor.rowcount}
        cursor = await conn.execute(
            "DELETE FROM ledger WHERE tenant = %s AND id = ANY(%s)", (tenant, sorted(event_ids))
        )
        rows["ledger"] = cursor.rowcount
        cursor = await conn.execute("DELETE FROM contexts WHERE tenant = %s AND id = %s", (tenant, ctx_id))
        rows["contexts"] = cursor.rowcount
        if any(rows.values()) or any(counts.values()):
            await conn.execute(
                "INSERT INTO forget_audit (tenant, context_id, subject_hash, counts) VALUES (%s, %s, %s, %s)",
                (tenant, ctx_id, subject_hash(traces.subject), Jsonb({**counts, **rows})),
            )
    return rows


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

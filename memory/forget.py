"""forget(): delete one context everywhere it exists now, and keep an audit row without payload.

What goes, for context C of tenant T:

- **Redis tiers**: C's head, events and warm blob, and its cached embedding (all in C's slot);
- **warm tier dictionaries**: C's training samples in the per-source sample pools, and every zstd
  dictionary that learned from C (``WarmCodec.scrub``: the source's current one is retrained from
  the cleaned pool, or dropped; the warm blobs compressed with them are recompressed; then they are
  deleted);
- **pre-warming**: C's transition and hour-of-day keys, C as another context's transition, as an
  agent's last read, and its "pre-warmed" mark (``prewarm.forget_context``);
- **cold tier**: C's archives in the blob store — the one its head names, and any older one left by
  an earlier demotion (an archive's key carries the date of C's newest event at the time, so every
  candidate key is derived from the dates of C's events);
- **PostgreSQL**: C's ``contexts`` row (with its embedding), its ``events`` rows, the ``ledger`` rows
  of those events (ledger ids are event ids), its ``context_links``, and the daily ``rollups`` it
  counted in: each is regenerated from what remains, or deleted when nothing does;
- **streams** (``memory.forget_streams``): every entry that carries one of C's events, their retry
  ZSET members and attempt counts, their dead letters, and the exact dedup window keys of C's events.

One ``forget_audit`` row records it: the subject only as a SHA-256 hash, and the counts.

``memory`` does not import ``ingest``, so the caller passes the function that decodes a stream
entry's envelope into an ``Event``.

Before anything is deleted, a tombstone (``memory.tombstones``) marks C forgotten as of now: an
event of C received before that moment - one a worker had already read, one redelivered from a
retry - is dropped by the hot tier's apply script (atomically) and by the index group; an embedding
or a read followed up after the forget is not cached or learned from. A later event is a new one and
starts C afresh.

Limits (not fixable from here):
- the index group checks the tombstone just before its upsert, not inside the same transaction: a
  batch that checked just before the tombstone was set and commits after the rows were deleted
  can leave C's row in PostgreSQL (without a hot tier); forget() again removes it. The ledger
  (audit group) may likewise record such an event's id (never its payload or subject);
- a lifecycle pass that read a sample pool just before C's samples left it may train a dictionary
  from them after the scrub's last look; forget() again removes it (its record names C). A
  demotion that compressed with a dictionary just before the scrub retired it, and reached the
  index only after the scrub's second sweep, keeps a blob that needs it: the dictionary is then
  deleted under that blob (the sweeps make this a window of a few round trips);
- pre-warm transitions recorded before the reverse index existed, and dictionaries trained before
  they recorded their samples (other than a source's current one), are not found;
- an entry that ``hookline dlq retry`` re-queued is found only while unsettled: once every group has
  acknowledged it, no table records its new id (the ledger and index keep the first one).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from memory import keys, links, prewarm, rollups, tombstones
from memory.errors import StoreUnavailable
from memory.forget_streams import (
    Decode,
    Traces,
    delete_dead_letters,
    delete_dedup_keys,
    delete_entries,
    delete_retries,
    find_in_streams,
)
from memory.runtime import Runtime, pg_connection
from memory.tiers import cold
from memory.tiers.hot import HotTier
from memory.tiers.warm import PAGE, WarmCodec, WarmContexts

__all__ = ["Decode", "ForgetReport", "forget", "subject_hash"]


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


async def forget(
    rt: Runtime, tenant: str, context_id: str, decode: Decode, subject: str | None = None
) -> ForgetReport:
    """Delete ``context_id`` of ``tenant`` from every store; ``subject`` (when the caller named the
    context by it) is only hashed. Raises StoreUnavailable when a store cannot be reached.
    Safe to run again: each step deletes what is still there."""
    traces = Traces(tenant, context_id, subject)
    try:
        # The tombstone first: an event of C already read by a worker is dropped, not applied.
        buried_before = await tombstones.bury(rt.redis, rt.settings, tenant, context_id, datetime.now(UTC))
        async with pg_connection(rt.db) as conn:
            await _find_in_index(conn, traces, rt.settings.partitions)
        await _find_in_redis_tiers(rt.redis, traces)
        await find_in_streams(rt.redis, traces, decode, rt.settings.partitions)
        async with pg_connection(rt.db) as conn:
            await _find_in_ledger(conn, traces, rt.settings.partitions)
        counts = {
            # Entries first, so that no worker picks the events up again while the rest goes.
            "stream_entries": await delete_entries(rt.redis, traces.entries),
            "retries": await delete_retries(rt.redis, traces.entries),
            "dead_letters": await delete_dead_letters(rt.redis, traces.dead_letters),
            "dedup_keys": await delete_dedup_keys(rt.redis, traces, rt.settings.partitions),
            "redis_keys": await _delete_tiers(rt.redis, traces),
            "prewarm_keys": await prewarm.forget_context(rt.redis, tenant, context_id),
            **await _scrub_warm_tier(rt, traces),
            "archives": await _delete_archives(rt, traces),
        }
    except aioredis.RedisError as exc:
        raise StoreUnavailable(f"Redis failed during forget: {exc}") from exc
    async with pg_connection(rt.db) as conn:
        counts.update(await _delete_rows(conn, traces, counts))
    report = ForgetReport(context_id, subject_hash(traces.subject), counts)
    if not report.found and not buried_before:
        # Nothing of it exists anywhere: a forget of an id nobody uses leaves nothing behind either.
        try:
            await tombstones.unbury(rt.redis, tenant, context_id)
        except aioredis.RedisError as exc:
            raise StoreUnavailable(f"Redis failed during forget: {exc}") from exc
    return report


# -- finding ---------------------------------------------------------------------------------


async def _find_in_index(conn: AsyncConnection[Any], traces: Traces, partitions: int) -> None:
    row = await (
        await conn.execute(
            "SELECT subject, source, archive_key, updated_at FROM contexts WHERE tenant = %s AND id = %s",
            (traces.tenant, traces.context_id),
        )
    ).fetchone()
    context_source = None
    if row is not None:
        subject, context_source, archive_key, updated_at = row
        traces.subject = traces.subject or subject
        traces.sources.add(context_source)
        traces.archives |= _archive_keys(traces, updated_at)
        if archive_key:
            traces.archives.add(archive_key)
    rows = await (
        await conn.execute(
            "SELECT id, source, stream_id, occurred_at, received_at FROM events "
            "WHERE tenant = %s AND context_id = %s",
            (traces.tenant, traces.context_id),
        )
    ).fetchall()
    for event_id, source, stream_id, occurred_at, received_at in rows:
        stream = keys.events_stream(keys.partition_of(traces.tenant, source, partitions))
        traces.add_event(event_id, source, stream, stream_id)
        traces.archives |= _archive_keys(traces, occurred_at)
        day = received_at.astimezone(UTC).date()  # roll-ups are per UTC day, of the context's source
        traces.days |= {(source, day), (context_source or source, day)}
    traces.days |= await rollups.rows_naming(conn, traces.tenant, traces.context_id)


def _archive_keys(traces: Traces, moment: datetime) -> set[str]:
    """Where an archive made when the context's newest event was ``moment`` would be (the lifecycle
    formats the date as PostgreSQL returns it; UTC covers a session in another time zone)."""
    return {cold.archive_key(traces.tenant, traces.context_id, m) for m in (moment, moment.astimezone(UTC))}


async def _find_in_ledger(conn: AsyncConnection[Any], traces: Traces, partitions: int) -> None:
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


async def _find_in_redis_tiers(redis: aioredis.Redis, traces: Traces) -> None:
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


# -- deleting --------------------------------------------------------------------------------


async def _delete_tiers(redis: aioredis.Redis, traces: Traces) -> int:
    names = [
        keys.context(traces.tenant, traces.context_id),
        keys.context_events(traces.tenant, traces.context_id),
        keys.context_warm(traces.tenant, traces.context_id),
        keys.embedding_context(traces.tenant, traces.context_id),
    ]
    return int(await redis.delete(*names))  # one hash tag: one slot, one command


async def _scrub_warm_tier(rt: Runtime, traces: Traces) -> dict[str, int]:
    """C's training samples, then every dictionary that learned from C (see ``WarmCodec.scrub``)."""
    codec = WarmCodec(rt.redis)
    counts = {"samples": 0, "dictionaries": 0, "recompressed": 0, "dictionaries_kept": 0}
    for source in sorted(traces.sources):
        removed = await codec.remove_samples(source, traces.event_ids, traces.subject)
        counts["samples"] += removed
        scrubbed = await codec.scrub(source, traces.event_ids, removed > 0, _warm_contexts(rt))
        for name, value in scrubbed.items():  # kept: a blob could not be moved yet (run forget again)
            counts[name] += value
    return counts


def _warm_contexts(rt: Runtime) -> WarmContexts:
    async def listing(source: str) -> AsyncIterator[tuple[str, str]]:
        """Every context of ``source`` the index shows warm, a page at a time."""
        after = ("", "")
        while True:
            async with pg_connection(rt.db) as conn:
                rows = await (
                    await conn.execute(
                        "SELECT tenant, id FROM contexts WHERE source = %s AND tier = 'warm' "
                        "AND (tenant, id) > (%s, %s) ORDER BY tenant, id LIMIT %s",
                        (source, *after, PAGE),
                    )
                ).fetchall()
            for tenant, ctx_id in rows:
                yield str(tenant), str(ctx_id)
            if len(rows) < PAGE:
                return
            after = (str(rows[-1][0]), str(rows[-1][1]))

    return listing


async def _delete_archives(rt: Runtime, traces: Traces) -> int:
    deleted = 0
    for key in sorted(traces.archives):
        if key in [found async for found in rt.blobs.list(key)]:  # a prefix listing of one key
            await rt.blobs.delete(key)
            deleted += 1
    return deleted


async def _delete_rows(conn: AsyncConnection[Any], traces: Traces, counts: dict[str, int]) -> dict[str, int]:
    """The index, the ledger, the links, the roll-ups and the audit row, in one transaction (no
    audit row if nothing was found anywhere)."""
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
        rows["links"] = await links.unlink(conn, tenant, ctx_id)
        rows |= await rollups.rewrite(conn, tenant, traces.days)
        if any(rows.values()) or any(counts.values()):
            await conn.execute(
                "INSERT INTO forget_audit (tenant, context_id, subject_hash, counts) VALUES (%s, %s, %s, %s)",
                (tenant, ctx_id, subject_hash(traces.subject), Jsonb({**counts, **rows})),
            )
    return rows

"""The lifecycle manager: hot → warm → cold, back again on demand, and early demotion under memory
pressure.

Every transition writes the new tier, flips the tier, then deletes the old copy, and may be re-run
at any point: the Redis side of each flip is one Lua script guarded by what was read (no event can
slip in between), the archive write is an idempotent overwrite, and PostgreSQL's ``tier`` column is
brought in line with Redis (which holds the data) whenever they disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import psycopg
import redis.asyncio as aioredis
import structlog
from psycopg.rows import dict_row

from memory import keys
from memory.errors import NotFound, StoreUnavailable
from memory.failures import OUTAGES, describe, unit_failed
from memory.metrics import TIER_CONTEXTS, TRANSITIONS, WARM_RATIO
from memory.models import Context
from memory.rollups import missing_days, roll_up
from memory.runtime import Runtime, info_of_every_node, pg_connection
from memory.summarize import ExtractiveSummarizer, make_summarizer
from memory.tiers import cold, document
from memory.tiers.hot import HotTier
from memory.tiers.warm import WarmCodec

log = structlog.get_logger(__name__)

BATCH = 200
# Importance stretches the idle time before a demotion: 0.5 (the default) doubles it, 1.0 triples it.
IMPORTANCE_STRETCH = 2.0
PRESSURE = 0.8  # share of maxmemory above which hot contexts are demoted early
RETRAIN_EVERY = 500  # contexts demoted per source between dictionary retrainings
POOL_SAMPLES = 200  # training set per source (bounded: it lives in Redis)
SAMPLE_BYTES = 16 * 1024


@dataclass
class PassReport:
    to_warm: int = 0
    to_cold: int = 0
    repaired: int = 0
    skipped: int = 0
    dictionaries: list[int] = field(default_factory=list)
    pressure: bool = False
    failed: list[dict[str, str]] = field(default_factory=list)  # contexts skipped: step, id, error
    rollups: int = 0
    expired: int = 0  # deleted from every tier: idle past HOOKLINE_RETENTION
    raw_bytes: int = 0  # of the contexts demoted to warm in this pass
    warm_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# Deletes one context from every store (memory.forget.forget, given the envelope decoder by the
# composition root, since memory cannot import ingest). Without one, retention is not enforced.
Forgetter = Callable[[str, str], Awaitable[object]]


# A context whose step failed waits 15 minutes, doubling with each further failure up to ~16 hours,
# so that a few poison contexts never hold the head of every pass (where they would starve the rest).
_BACKED_OFF = (
    "(lifecycle_failed_at IS NULL OR lifecycle_failed_at < %(now)s "
    "- make_interval(mins => 15 * power(2, least(lifecycle_failures - 1, 6))::int))"
)


class MadeSummary(NamedTuple):
    text: str | None
    by: str | None  # the summarizer's name
    events: int | None  # how many events it covers


def _covering_summary(row: dict[str, Any]) -> bool:
    """The row holds a model's summary (e.g. one a client sampled) that covers every event."""
    return row["summary_by"] is not None and row["summary_events"] == row["event_count"]


class Lifecycle:
    def __init__(self, rt: Runtime, forgetter: Forgetter | None = None) -> None:
        self.rt = rt
        self.forgetter = forgetter
        self.hot = HotTier(rt.redis)
        self.codec = WarmCodec(rt.redis)
        self.summarizer = make_summarizer(rt.settings.summarizer, rt.settings.anthropic_api_key)

    async def run_pass(self, now: datetime | None = None) -> PassReport:
        now = now or datetime.now(UTC)
        report = PassReport()
        pressure = await self._under_pressure()
        report.pressure = pressure
        for row in await self._candidates("hot", self.rt.settings.hot_ttl_s, now, ignore_idle=pressure):
            await self._guarded("to_warm", row, now, report, self._hot_to_warm(row, report))
        for row in await self._candidates("warm", self.rt.settings.warm_ttl_s, now, ignore_idle=False):
            await self._guarded("to_cold", row, now, report, self._warm_to_cold(row, now, report))
        if self.forgetter is not None:
            for row in await self._expired(now):
                if await self._guarded("expire", row, now, report, self.forgetter(row["tenant"], row["id"])):
                    report.expired += 1
        for day in await missing_days(self.rt, now.date()):
            try:
                report.rollups += await roll_up(self.rt, day)
            except OUTAGES:
                raise
            except Exception as exc:  # one day's roll-ups are a unit too; the next pass tries again
                unit_failed("rollup", exc, day=day.isoformat())
                report.failed.append({"step": "rollup", "context_id": "", "error": describe(exc, 300)})
        await self._count_tiers()
        if report.raw_bytes:
            WARM_RATIO.set(report.warm_bytes / report.raw_bytes)
        log.info("lifecycle.pass", **report.as_dict())
        return report

    async def _guarded(
        self, step: str, row: dict[str, Any], now: datetime, report: PassReport, work: Awaitable[object]
    ) -> bool:
        """One context's step, behind its own exception boundary: a context that fails is logged,
        counted, recorded on its row and skipped (for a while: ``_backed_off``), and the pass goes on.
        An outage ends the pass instead. True when the step succeeded."""
        try:
            await work
        except OUTAGES:
            raise
        except Exception as exc:
            unit_failed("lifecycle", exc, step=step, tenant=row["tenant"], context_id=row["id"])
            report.failed.append({"step": step, "context_id": row["id"], "error": describe(exc, 300)})
            await self._record_failure(row["tenant"], row["id"], now, f"{step}: {describe(exc, 500)}")
            return False
        return True

    async def _record_failure(self, tenant: str, ctx_id: str, now: datetime, error: str) -> None:
        sql = """
            UPDATE contexts SET lifecycle_failed_at = %s, lifecycle_error = %s,
                   lifecycle_failures = lifecycle_failures + 1
            WHERE tenant = %s AND id = %s
        """
        async with pg_connection(self.rt.db) as conn:
            await conn.execute(sql, (now, error.replace("\x00", "\ufffd"), tenant, ctx_id))

    async def _count_tiers(self) -> None:
        async with pg_connection(self.rt.db) as conn:
            rows = await (await conn.execute("SELECT tier, count(*) FROM contexts GROUP BY tier")).fetchall()
        counts = {tier: 0 for tier in ("hot", "warm", "cold")} | {tier: int(n) for tier, n in rows}
        for tier, n in counts.items():
            TIER_CONTEXTS.labels(tier=tier).set(n)

    async def _candidates(
        self, tier: str, ttl_s: int, now: datetime, ignore_idle: bool
    ) -> list[dict[str, Any]]:
        idle = "" if ignore_idle else (
            "AND greatest(touched_at, coalesce(last_access_at, touched_at)) "
            "< %(now)s - make_interval(secs => %(ttl)s * (1 + %(stretch)s * importance))"
        )  # fmt: skip
        sql = f"""
            SELECT tenant, id, source, created_at, updated_at, archive_key, event_count, summary_by,
                   summary_events FROM contexts
            WHERE tier = %(tier)s AND NOT pinned {idle} AND {_BACKED_OFF}
            ORDER BY greatest(touched_at, coalesce(last_access_at, touched_at)) LIMIT %(limit)s
        """
        params = {"tier": tier, "now": now, "ttl": ttl_s, "stretch": IMPORTANCE_STRETCH, "limit": BATCH}
        async with pg_connection(self.rt.db) as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return list(await cur.fetchall())

    async def _expired(self, now: datetime) -> list[dict[str, Any]]:
        sql = f"""
            SELECT tenant, id FROM contexts
            WHERE NOT pinned AND greatest(touched_at, coalesce(last_access_at, touched_at))
                  < %(now)s - make_interval(secs => %(retention)s) AND {_BACKED_OFF}
            LIMIT %(limit)s
        """
        params = {"now": now, "retention": self.rt.settings.retention_s, "limit": BATCH}
        async with pg_connection(self.rt.db) as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return list(await cur.fetchall())

    async def _under_pressure(self) -> bool:
        """Some node has used more than PRESSURE of its maxmemory. On Cluster each node holds its
        own share of the contexts and its own limit, so every node is judged: one full node is
        enough (its writes would fail first)."""
        try:
            infos = await info_of_every_node(self.rt.redis, "memory")
        except aioredis.RedisError as exc:
            raise StoreUnavailable(f"cannot read Redis memory info: {exc}") from exc
        for info in infos:
            limit = int(info.get("maxmemory", 0))
            if limit > 0 and int(info.get("used_memory", 0)) > PRESSURE * limit:
                return True
        return False

    async def _hot_to_warm(self, row: dict[str, Any], report: PassReport) -> None:
        tenant, ctx_id, source = row["tenant"], row["id"], row["source"]
        head, events, _ = await self.hot.read_raw(tenant, ctx_id)
        tier = head.get("tier")
        if tier != "hot":  # already moved (a re-run) or gone: make PostgreSQL agree
            report.repaired += await self._set_tier(tenant, ctx_id, tier)
            return
        raw = document.encode(head, events)
        dict_id = await self._dictionary(source, raw, report)
        blob = await self.codec.compress(dict_id, raw)
        if not await self.hot.to_warm(tenant, ctx_id, blob, len(events), dict_id, len(raw)):
            report.skipped += 1  # an event arrived meanwhile: it is not idle after all
            return
        await self._set_tier(tenant, ctx_id, "warm")
        report.to_warm += 1
        report.raw_bytes += len(raw)
        report.warm_bytes += len(blob)
        TRANSITIONS.labels(source="hot", target="warm").inc()

    async def _dictionary(self, source: str, sample: bytes, report: PassReport) -> int:
        """The source's current dictionary, (re)trained from the contexts being demoted."""
        redis = self.rt.redis
        samples_key = keys.zstd_sample_pool(source)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.lpush(samples_key, sample[:SAMPLE_BYTES])
            pipe.ltrim(samples_key, 0, POOL_SAMPLES - 1)
            pipe.incr(keys.zstd_samples_since_training(source))
            _, _, seen = await pipe.execute()
        current = await self.codec.current(source)
        if current == 0 or int(seen) >= RETRAIN_EVERY:
            samples = [s for s in await redis.lrange(samples_key, 0, -1) if isinstance(s, bytes)]
            trained = await self.codec.train(source, samples)
            if trained:
                report.dictionaries.append(trained)
                return trained
        return current

    async def _warm_to_cold(self, row: dict[str, Any], now: datetime, report: PassReport) -> None:
        tenant, ctx_id = row["tenant"], row["id"]
        head, _, blob = await self.hot.read_raw(tenant, ctx_id)
        tier = head.get("tier")
        if tier != "warm" or blob is None:
            report.repaired += await self._set_tier(tenant, ctx_id, tier)
            return
        raw = await self.codec.decompress(int(head.get("warm_dict", 0)), blob)
        key = cold.archive_key(tenant, ctx_id, row["created_at"])
        await cold.archive(self.rt.blobs, key, raw)
        made = None if _covering_summary(row) else await self._summarize(tenant, ctx_id, raw)
        if not await self.hot.to_cold(tenant, ctx_id, hashlib.sha1(blob).hexdigest(), key):
            report.skipped += 1
            return
        await self._set_tier(tenant, ctx_id, "cold", archive_key=key, summary=made)
        previous = row.get("archive_key")
        if previous and previous != key:  # an older archive of this context: superseded
            await self.rt.blobs.delete(previous)
        report.to_cold += 1
        TRANSITIONS.labels(source="warm", target="cold").inc()

    async def _summarize(self, tenant: str, ctx_id: str, raw: bytes) -> MadeSummary:
        """The cold tier's summary; a failing model falls back to the extractive one."""
        head, events = document.decode(raw)
        ctx = document.to_context(tenant, ctx_id, head, events)
        try:
            return MadeSummary(await self.summarizer.summarize(ctx), self.summarizer.name, len(events))
        except StoreUnavailable as exc:
            log.warning("lifecycle.summary_fallback", summarizer=self.summarizer.name, error=str(exc))
            fallback = ExtractiveSummarizer()
            return MadeSummary(await fallback.summarize(ctx), fallback.name, len(events))

    async def _set_tier(
        self,
        tenant: str,
        ctx_id: str,
        tier: str | None,
        archive_key: str | None = None,
        summary: MadeSummary | None = None,
    ) -> int:
        if tier is None:
            return 0  # Redis has no such context: nothing to align with
        sql = """
            UPDATE contexts SET tier = %s, tier_changed_at = now(), archive_key = coalesce(%s, archive_key),
                   summary = coalesce(%s, summary), summary_by = coalesce(%s, summary_by),
                   summary_events = coalesce(%s, summary_events),
                   lifecycle_failed_at = NULL, lifecycle_error = NULL, lifecycle_failures = 0
            WHERE tenant = %s AND id = %s AND tier <> %s
        """
        made = summary or MadeSummary(None, None, None)
        params = (tier, archive_key, made.text, made.by, made.events, tenant, ctx_id, tier)
        async with pg_connection(self.rt.db) as conn:
            cursor = await conn.execute(sql, params)
        return cursor.rowcount

    # -- back up the tiers -----------------------------------------------------------------

    async def promote(self, tenant: str, ctx_id: str) -> str:
        """Bring a warm or cold context back to hot (an event arrived for it). Returns the tier
        it came from, or "hot" if it already was (a concurrent promotion won)."""
        head, _, blob = await self.hot.read_raw(tenant, ctx_id)
        tier = head.get("tier", "hot")
        if tier == "hot":
            return "hot"
        raw = await self._document(tenant, ctx_id, head, blob)
        _, events = document.decode(raw)
        if await self.hot.promote(tenant, ctx_id, tier, events):
            await self._set_tier(tenant, ctx_id, "hot")
            TRANSITIONS.labels(source=tier, target="hot").inc()
        return tier

    async def rewarm(self, tenant: str, ctx_id: str) -> bool:
        """Cold → warm: restore the archive into the warm tier (on access, or predicted access)."""
        head, _, _ = await self.hot.read_raw(tenant, ctx_id)
        if head.get("tier") != "cold":
            return False
        raw = await cold.restore(self.rt.blobs, head["archive_key"])
        dict_id = await self.codec.current(head.get("source", ""))
        blob = await self.codec.compress(dict_id, raw)
        if not await self.hot.cold_to_warm(tenant, ctx_id, blob, dict_id):
            return False
        await self._set_tier(tenant, ctx_id, "warm")
        TRANSITIONS.labels(source="cold", target="warm").inc()
        return True

    async def _document(self, tenant: str, ctx_id: str, head: dict[str, str], blob: bytes | None) -> bytes:
        if head.get("tier") == "warm" and blob is not None:
            return await self.codec.decompress(int(head.get("warm_dict", 0)), blob)
        if head.get("tier") == "cold" and head.get("archive_key"):
            return await cold.restore(self.rt.blobs, head["archive_key"])
        raise NotFound(f"context {ctx_id} has no body in tier {head.get('tier')!r}")

    async def read(
        self, tenant: str, ctx_id: str, restore: bool, with_payloads: bool = False
    ) -> Context | None:
        """Any tier's context from Redis; a cold one is read from its archive only if ``restore``."""
        head, events, blob = await self.hot.read_raw(tenant, ctx_id)
        tier = head.get("tier")
        if tier is None:
            return None
        if tier == "hot":
            return document.to_context(tenant, ctx_id, head, events, with_payloads)
        if tier == "cold" and not restore:
            return None
        raw = await self._document(tenant, ctx_id, head, blob)
        stored_head, stored_events = document.decode(raw)
        return document.to_context(
            tenant, ctx_id, {**stored_head, "tier": tier}, stored_events, with_payloads
        )


async def touch(rt: Runtime, tenant: str, ids: Sequence[str], now: datetime | None = None) -> None:
    """Record accesses, one per id given (an id given twice counts twice): reads keep a context warm
    longer. Best effort: a row the index group holds locked right now (its batch upsert) is skipped
    rather than waited for, so a read never waits behind indexing; those accesses go uncounted."""
    sql = """
        UPDATE contexts SET last_access_at = %s, access_count = access_count + reads.n
        FROM (SELECT id, count(*)::int AS n FROM unnest(%s::text[]) AS id GROUP BY id) AS reads
        WHERE contexts.id = reads.id AND (contexts.tenant, contexts.id) IN (
            SELECT tenant, id FROM contexts WHERE tenant = %s AND id = ANY(%s) FOR UPDATE SKIP LOCKED)
    """
    try:
        async with pg_connection(rt.db) as conn:
            await conn.execute(sql, (now or datetime.now(UTC), list(ids), tenant, list(ids)))
    except (StoreUnavailable, psycopg.Error) as exc:
        log.warning("lifecycle.touch_failed", error=str(exc))


def idle_cutoff(now: datetime, ttl_s: int, importance: float) -> datetime:
    return now - timedelta(seconds=ttl_s * (1 + IMPORTANCE_STRETCH * importance))

"""The memory service: the only API that MCP tools, the CLI and the workers call.

It turns accepted events into contexts (hot tier + PostgreSQL index) and answers reads, always scoped
by the tenant the caller was authenticated as.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
import psycopg
import redis.asyncio as aioredis
import structlog

from memory import keys, links, search, tombstones
from memory.compose import Composition, compose
from memory.embed_cache import embed_contexts, embed_query
from memory.errors import InvalidArgument, NotFound, StoreUnavailable
from memory.failures import OUTAGES, unit_failed
from memory.ids import context_id, head_key
from memory.lifecycle import Lifecycle
from memory.mappers.base import MappingError, mapper_for
from memory.models import Context, ContextEvent, Event, MappedEvent, RecentEvent, SearchHit
from memory.prewarm import HIT_THRESHOLD, Prewarmer
from memory.reads import Read, ReadLog, follow_up
from memory.runtime import Runtime, is_cluster, pg_connection
from memory.scoring import HalfLives
from memory.tiers import index
from memory.tiers.hot import HotTier, HotWrite
from memory.vectors import VectorRefresher

log = structlog.get_logger(__name__)

MAX_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event that can never be applied (it is dead-lettered, not retried)."""

    event: Event
    reason: str


def _aware(moment: datetime | None, fallback: datetime) -> datetime:
    if moment is None:
        return fallback
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _no_nul(text: str) -> str:
    return text.replace("\x00", "\ufffd")


def _storable(mapped: MappedEvent) -> MappedEvent:
    """``mapped`` with NUL replaced in every text that reaches PostgreSQL (the index, the cold
    tier's summaries, roll-ups): PostgreSQL text refuses NUL, which a payload string may carry."""
    return replace(
        mapped,
        subject=_no_nul(mapped.subject),
        kind=_no_nul(mapped.kind),
        title=_no_nul(mapped.title),
        text=_no_nul(mapped.text),
        url=None if mapped.url is None else _no_nul(mapped.url),
        state=None if mapped.state is None else _no_nul(mapped.state),
        actors=tuple(_no_nul(actor) for actor in mapped.actors),
        labels=tuple(_no_nul(label) for label in mapped.labels),
    )


def _check_limit(limit: int) -> int:
    if limit < 1 or limit > MAX_LIMIT:
        raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


class MemoryService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.hot = HotTier(rt.redis)
        self.lifecycle = Lifecycle(rt)
        self.prewarmer = Prewarmer(rt.redis, self.lifecycle)
        self.reads: ReadLog | None = None  # a server's running ReadLog; else reads are followed up inline
        self.vectors: VectorRefresher | None = None  # a worker's running refresher; else embedded inline
        self._vectors: bool | None = None  # does this PostgreSQL have the embedding column?
        self.half_lives = HalfLives(rt.settings.half_lives)

    # -- writes (workers only) -------------------------------------------------------------

    async def apply_events(self, events: Sequence[Event], now: datetime | None = None) -> list[Rejected]:
        """Both writes, hot tier then index (the workers split them between two groups)."""
        rejected = await self.apply_hot(events, now)
        await self.index_events(events)
        return rejected

    async def apply_hot(self, events: Sequence[Event], now: datetime | None = None) -> list[Rejected]:
        """Group ``context``: fold the events into their hot-tier contexts, then announce them.

        Returns the events that cannot be mapped. Raises StoreUnavailable when Redis is down, in
        which case nothing may be acknowledged and the whole batch is retried later.
        """
        plans, rejected = self._plans(events)
        writes = [hot for hot, _ in plans]
        now = now or datetime.now(UTC)
        try:
            results = await self.hot.apply(writes, now)
            # A warm or cold context takes no event until it is hot again (else it would split).
            waiting = [write for write, result in zip(writes, results, strict=True) if result < 0]
            for tenant, ctx_id in sorted({(w.tenant, w.context_id) for w in waiting}):
                await self.lifecycle.promote(tenant, ctx_id)
            if waiting and min(await self.hot.apply(waiting, now)) < 0:
                raise StoreUnavailable("a context was demoted again while being promoted; retry")
        except aioredis.RedisError as exc:
            raise StoreUnavailable(f"hot tier write failed: {exc}") from exc
        # A context forgotten after these events were received (2) is not announced: it is gone.
        await self._announce([write for write, result in zip(writes, results, strict=True) if result != 2])
        return rejected

    async def index_events(self, events: Sequence[Event]) -> list[Rejected]:
        """Group ``index``: the events ledger rows and one upsert per context, in one transaction."""
        plans, rejected = self._plans(events)
        try:
            gone = await tombstones.forgotten_before(
                self.rt.redis, [(hot.tenant, hot.context_id, hot.event.received_at) for hot, _ in plans]
            )
        except aioredis.RedisError as exc:
            raise StoreUnavailable(f"cannot read tombstones: {exc}") from exc
        plans = [p for p in plans if (p[0].tenant, p[0].context_id, p[0].event.received_at) not in gone]
        async with self._conn() as conn:
            await index.upsert(conn, [row for _, row in plans])
            if self.vectors is None:
                await self._embed(conn, sorted({(row.tenant, row.context_id) for _, row in plans}))
        if self.vectors is not None and plans:
            self.vectors.wake()
        return rejected

    async def _embed(self, conn: psycopg.AsyncConnection[Any], contexts: Sequence[tuple[str, str]]) -> None:
        """Refresh the embeddings of the contexts this batch changed (once each: coalesced)."""
        embedder = self.rt.embedder
        if embedder is None or not contexts:
            return
        if self._vectors is None:
            self._vectors = await search.has_vectors(conn)
        if not self._vectors:
            return
        texts = await index.embedding_texts(conn, contexts)
        due = sorted(texts)
        if not due:
            return
        vectors = await embed_contexts(embedder, [(*c, texts[c]) for c in due], background=True)
        await index.store_embeddings(
            conn, [(c, search.to_pgvector(v)) for c, v in zip(due, vectors, strict=True)]
        )
        await links.link_near_duplicates(conn, due)

    async def refresh_embeddings(self, limit: int = 200) -> int:
        """Embed contexts that are due: never embedded, or changed since (a worker's refresher and
        the lifecycle pass call this); returns how many."""
        async with self._conn() as conn:
            if self._vectors is None:
                self._vectors = await search.has_vectors(conn)
            if not self._vectors or self.rt.embedder is None:
                return 0
            stale = await index.stale_embeddings(conn, limit)
            try:
                await self._embed(conn, stale)
            except OUTAGES:
                raise
            except Exception as exc:  # a batch's own failure: find the contexts it was about
                unit_failed("embeddings", exc, contexts=len(stale))
                await self._embed_each(conn, stale)
        return len(stale)

    async def _embed_each(
        self, conn: psycopg.AsyncConnection[Any], contexts: Sequence[tuple[str, str]]
    ) -> None:
        """One context at a time: those that fail on their own are set aside and retried later."""
        for tenant, ctx_id in contexts:
            try:
                await self._embed(conn, [(tenant, ctx_id)])
            except OUTAGES:
                raise
            except Exception as exc:
                unit_failed("embeddings", exc, tenant=tenant, context_id=ctx_id)
                await index.embedding_failed(conn, [(tenant, ctx_id)])

    def _plans(
        self, events: Sequence[Event]
    ) -> tuple[list[tuple[HotWrite, index.IndexWrite]], list[Rejected]]:
        plans: list[tuple[HotWrite, index.IndexWrite]] = []
        rejected: list[Rejected] = []
        for event in events:
            try:
                mapped = mapper_for(event.provider).map(event.event_type, event.payload)
            except MappingError as exc:
                rejected.append(Rejected(event, str(exc)))
                continue
            plans.append(self._plan(event, mapped))
        return plans, rejected

    def _plan(self, event: Event, mapped: MappedEvent) -> tuple[HotWrite, index.IndexWrite]:
        mapped = _storable(mapped)  # the one place mapped events become writes
        event_type = _no_nul(event.event_type)  # the intake refuses these; older entries may hold them
        ctx_id = context_id(event.tenant, mapped.subject)
        occurred = _aware(mapped.occurred_at, event.received_at)
        order = head_key(int(occurred.timestamp() * 1000), event.id)
        context_event = ContextEvent(
            id=event.id,
            event_type=event_type,
            text=mapped.text,
            occurred_at=occurred,
            received_at=event.received_at,
            actors=mapped.actors,
            payload=event.payload,
        )
        head = {
            "source": event.source,
            "subject": mapped.subject,
            "kind": mapped.kind,
            "title": mapped.title,
            "state": mapped.state or "",
            "url": mapped.url or "",
            "labels": orjson.dumps(list(mapped.labels)).decode(),
            "fields": orjson.dumps(mapped.fields, default=str).decode(),
        }
        hot_write = HotWrite(event.tenant, ctx_id, context_event, order, mapped.importance, head)
        index_write = index.IndexWrite(
            tenant=event.tenant,
            context_id=ctx_id,
            event_id=event.id,
            source=event.source,
            event_type=event_type,
            text=mapped.text,
            received_at=event.received_at,
            occurred_at=occurred,
            stream_id=event.stream_id,
            head_key=order,
            subject=mapped.subject,
            kind=mapped.kind,
            title=mapped.title,
            state=mapped.state,
            url=mapped.url,
            importance=mapped.importance,
            labels=mapped.labels,
        )
        return hot_write, index_write

    async def _announce(self, writes: Sequence[HotWrite]) -> None:
        """Tell subscribers which contexts changed. Best effort: the change itself is durable."""
        changed = sorted({(w.tenant, w.context_id) for w in writes})
        redis = self.rt.redis
        try:
            if is_cluster(redis):  # cluster pipelines refuse PUBLISH
                for tenant, ctx_id in changed:
                    await redis.publish(keys.context_updates(tenant), ctx_id)
                await redis.incrby(keys.counter("applied"), len(writes))
                return
            async with redis.pipeline(transaction=False) as pipe:
                for tenant, ctx_id in changed:
                    pipe.publish(keys.context_updates(tenant), ctx_id)
                pipe.incrby(keys.counter("applied"), len(writes))  # hot-tier applications
                await pipe.execute()
        except aioredis.RedisError as exc:
            log.warning("announce.failed", error=str(exc))

    # -- reads (every caller, scoped by tenant) --------------------------------------------

    async def get_context(
        self, tenant: str, ctx_id: str, restore: bool = False, agent: str = "default"
    ) -> Context:
        """The context, whatever its tier. A cold context answers with its summary at once; with
        ``restore`` its full body is brought back from the archive (cold → warm) first."""
        try:
            if restore:
                await self.lifecycle.rewarm(tenant, ctx_id)
            found = await self.lifecycle.read(tenant, ctx_id, restore=False)
        except aioredis.RedisError as exc:
            raise StoreUnavailable(f"cannot read Redis: {exc}") from exc
        if found is None:
            found = await self._from_index(tenant, ctx_id)
        await self._follow_up(Read(tenant, (ctx_id,), datetime.now(UTC), agent))
        return found

    async def related(self, tenant: str, ctx_id: str) -> list[tuple[str, float]]:
        """Near-duplicate contexts linked to this one (semantic dedup links, never merges)."""
        async with self._conn() as conn:
            return await links.related(conn, tenant, ctx_id)

    async def get_contexts(self, tenant: str, ids: Sequence[str], restore: bool = False) -> list[Context]:
        """Batch retrieval (historical analysis); ids that do not exist are left out."""
        found: list[Context] = []
        for ctx_id in ids:
            try:
                found.append(await self.get_context(tenant, ctx_id, restore))
            except NotFound:
                continue
        return found

    async def export_context(self, tenant: str, ctx_id: str, with_payloads: bool = False) -> dict[str, Any]:
        """A context as plain data for export, read from whatever tier holds it, without moving it."""
        found = await self.lifecycle.read(tenant, ctx_id, restore=True, with_payloads=with_payloads)
        ctx = found if found is not None else await self._from_index(tenant, ctx_id)
        return {
            "head": {name: getattr(ctx.head, name) for name in ctx.head.__slots__},
            "labels": list(ctx.labels),
            "fields": ctx.fields,
            "events": [{name: getattr(e, name) for name in e.__slots__} for e in ctx.events],
        }

    async def full_context(self, tenant: str, ctx_id: str) -> Context:
        """Every event of the context, from whatever tier holds it (a cold one from its archive),
        without moving it between tiers or counting as an access."""
        try:
            found = await self.lifecycle.read(tenant, ctx_id, restore=True)
        except aioredis.RedisError as exc:
            raise StoreUnavailable(f"cannot read Redis: {exc}") from exc
        return found if found is not None else await self._from_index(tenant, ctx_id)

    async def keep_summary(self, tenant: str, ctx_id: str, text: str, by: str, events: int) -> bool:
        """Keep a model's summary of the context's first ``events`` events (e.g. one the client's model
        made over MCP sampling). It is kept only if the context still has exactly that many events:
        False means an event arrived meanwhile and the summary is already stale. It stands until
        the next event, and the archiver keeps it instead of summarizing again."""
        if not text.strip():
            raise InvalidArgument("an empty summary cannot be kept")
        sql = """
            UPDATE contexts SET summary = %s, summary_by = %s, summary_events = %s
            WHERE tenant = %s AND id = %s AND event_count = %s
        """
        async with self._conn() as conn:
            cursor = await conn.execute(sql, (text, by, events, tenant, ctx_id, events))
        return cursor.rowcount == 1

    async def _from_index(self, tenant: str, ctx_id: str) -> Context:
        """A cold context's summary (or one Redis lost): its row and event lines from PostgreSQL."""
        async with self._conn() as conn:
            found = await index.get_summary(conn, tenant, ctx_id)
        if found is None:
            raise NotFound(f"no context {ctx_id!r}")
        summary, body = found
        events = tuple(
            ContextEvent(id="", event_type="", text=line, occurred_at=summary.updated_at,
                         received_at=summary.updated_at)
            for line in body.splitlines()
        )  # fmt: skip
        return Context(head=summary, events=events)

    async def search_context(
        self,
        tenant: str,
        query: str,
        limit: int = 10,
        source: str | None = None,
        since: datetime | None = None,
        now: datetime | None = None,
        tier: str | None = None,
    ) -> list[SearchHit]:
        """Hybrid search (full text + vectors, fused by rank), ranked by relevance, recency,
        importance and access; every hit carries its score breakdown."""
        _check_limit(limit)
        if len(query) > 2000:
            raise InvalidArgument("query is longer than 2000 characters")
        if tier is not None and tier not in ("hot", "warm", "cold"):
            raise InvalidArgument("tier must be hot, warm or cold")
        now = now or datetime.now(UTC)
        text_rows, vector_rows, found_in = await self._candidates(
            tenant, query, search.Filters(source, since, tier)
        )
        hits = search.rank(text_rows, vector_rows, query, now, limit, found_in, self.half_lives)
        likely = [hit.context.id for hit in hits if hit.context.tier == "cold" and hit.score > HIT_THRESHOLD]
        if likely:  # a strong cold hit is probably read next: have its body ready
            await self._follow_up(Read(tenant, tuple(likely), now))
        return hits

    async def _follow_up(self, read: Read) -> None:
        """The access count and pre-warming a read leaves behind: queued when a ReadLog runs."""
        if self.reads is not None:
            self.reads.record(read)
        else:
            await follow_up(self.rt, self.prewarmer, [read])

    async def _candidates(
        self, tenant: str, query: str, filters: search.Filters
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, search.Origin]]:
        """Full-text and vector candidates (with their origins) at once, each on a pooled connection
        of its own: the full-text query runs while the query is embedded and HNSW is searched."""
        text: list[dict[str, Any]] = []
        vector: list[dict[str, Any]] = []
        found_in: dict[str, search.Origin] = {}

        async def by_text() -> None:
            async with self._conn() as conn:
                text.extend(await search.text_candidates(conn, tenant, query, filters))
                found_in.update(await search.origins(conn, tenant, [row["id"] for row in text]))

        async def by_vector() -> None:
            query_vector = await self._query_vector(tenant, query)
            if query_vector:
                async with self._conn() as conn:
                    vector.extend(await search.vector_candidates(conn, tenant, query_vector, filters))
                    found_in.update(await search.origins(conn, tenant, [row["id"] for row in vector]))

        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(by_text, name="search-text")
                await by_vector()
        except BaseExceptionGroup as group:
            # The error itself (StoreUnavailable, ConfigError), as a sequential search raised it.
            raise group.exceptions[0] from None
        return text, vector, found_in

    async def _query_vector(self, tenant: str, query: str) -> list[float] | None:
        embedder = self.rt.embedder
        if embedder is None or not query.strip():
            return None
        if self._vectors is None:
            async with self._conn() as conn:
                self._vectors = await search.has_vectors(conn)
        if not self._vectors:
            return None
        return await embed_query(embedder, tenant, query)

    async def compose_context(self, tenant: str, query: str, max_tokens: int) -> Composition:
        """The most useful context for ``query`` within ``max_tokens``: the best in full, the rest as
        summaries, every piece citing its context id."""
        if max_tokens < 50 or max_tokens > 200_000:
            raise InvalidArgument("max_tokens must be between 50 and 200000")
        hits = await self.search_context(tenant, query, limit=20)
        full = {}
        for hit in hits[:5]:
            full[hit.context.id] = await self.get_context(tenant, hit.context.id)
        return compose(hits, full, max_tokens)

    async def recent_events(
        self,
        tenant: str,
        limit: int = 20,
        source: str | None = None,
        since: datetime | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[RecentEvent]:
        _check_limit(limit)
        async with self._conn() as conn:
            return await index.recent_events(conn, tenant, limit, source, since, before)

    def _conn(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return pg_connection(self.rt.db)

"""The PostgreSQL index: the events ledger and one row per context (metadata + full-text tsvector).

Every context has a row here whatever its tier, so search never has to look in Redis.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from memory.models import ContextSummary, RecentEvent

# How many of a context's newest event lines feed its full-text body.
BODY_EVENTS = 200
EMBED_EVERY_S = 60


@dataclass(frozen=True, slots=True)
class IndexWrite:
    tenant: str
    context_id: str
    event_id: str
    source: str
    event_type: str
    text: str
    received_at: datetime
    occurred_at: datetime
    stream_id: str
    head_key: str
    subject: str
    kind: str
    title: str
    state: str | None
    url: str | None
    importance: float
    labels: tuple[str, ...]


_EVENT_COLUMNS = (
    "tenant", "event_id", "context_id", "source", "event_type", "text",
    "received_at", "occurred_at", "stream_id",
)  # fmt: skip

# The batch's events in one statement; the ones new here come back (a redelivered one is skipped).
_INSERT_EVENTS = """
INSERT INTO events (tenant, id, context_id, source, event_type, text, received_at, occurred_at, stream_id)
SELECT * FROM unnest(%(tenant)s::text[], %(event_id)s::text[], %(context_id)s::text[], %(source)s::text[],
                     %(event_type)s::text[], %(text)s::text[], %(received_at)s::timestamptz[],
                     %(occurred_at)s::timestamptz[], %(stream_id)s::text[])
ON CONFLICT (tenant, id) DO NOTHING
RETURNING tenant, context_id
"""

# The context's newest event lines, and its newest line (the summary unless a model's stands).
_BODY = f"""coalesce((SELECT string_agg(r.text, E'\\n' ORDER BY r.occurred_at, r.id) FROM (
           SELECT text, occurred_at, id FROM events e
           WHERE e.tenant = %(tenant)s AND e.context_id = %(context_id)s
           ORDER BY occurred_at DESC, id DESC LIMIT {BODY_EVENTS}) r), '')"""
_NEWEST = """coalesce((SELECT text FROM events e WHERE e.tenant = %(tenant)s AND e.context_id = %(context_id)s
                 ORDER BY occurred_at DESC, id DESC LIMIT 1), '')"""

# An existing row is updated, and only a missing one inserted: an INSERT ... ON CONFLICT would compute
# the proposed row's tsvector (every body line) before finding the conflict, which doubled the cost.
# The count grows by the events new in this batch (the advisory lock keeps the two in step).
_UPSERT_CONTEXT = f"""
WITH updated AS (
    UPDATE contexts AS c SET
        source = CASE WHEN %(head_key)s > c.head_key THEN %(source)s ELSE c.source END,
        kind = CASE WHEN %(head_key)s > c.head_key THEN %(kind)s ELSE c.kind END,
        title = CASE WHEN %(head_key)s > c.head_key THEN %(title)s ELSE c.title END,
        state = CASE WHEN %(head_key)s > c.head_key THEN %(state)s ELSE c.state END,
        url = CASE WHEN %(head_key)s > c.head_key THEN %(url)s ELSE c.url END,
        labels = CASE WHEN %(head_key)s > c.head_key THEN %(labels)s ELSE c.labels END,
        head_key = greatest(c.head_key, %(head_key)s),
        importance = greatest(c.importance, %(importance)s),
        created_at = least(c.created_at, %(created_at)s),
        updated_at = greatest(c.updated_at, %(updated_at)s),
        touched_at = now(),
        event_count = c.event_count + %(added)s,
        body = {_BODY},
        -- A model's summary (summary_by set) stands while it covers every event; else the newest line.
        summary = CASE WHEN c.summary_by IS NOT NULL AND c.summary_events = c.event_count + %(added)s
                       THEN c.summary ELSE {_NEWEST} END,
        summary_by = CASE WHEN c.summary_events = c.event_count + %(added)s THEN c.summary_by END,
        summary_events = CASE WHEN c.summary_events = c.event_count + %(added)s THEN c.summary_events END
    WHERE c.tenant = %(tenant)s AND c.id = %(context_id)s
    RETURNING 1
)
INSERT INTO contexts (tenant, id, source, subject, kind, title, state, url, importance, labels,
                      head_key, created_at, updated_at, event_count, body, summary)
SELECT %(tenant)s, %(context_id)s, %(source)s, %(subject)s, %(kind)s, %(title)s, %(state)s, %(url)s,
       %(importance)s, %(labels)s, %(head_key)s, %(created_at)s, %(updated_at)s,
       (SELECT count(*) FROM events e WHERE e.tenant = %(tenant)s AND e.context_id = %(context_id)s),
       {_BODY}, {_NEWEST}
WHERE NOT EXISTS (SELECT 1 FROM updated)
"""


_SUMMARY_COLUMNS = (
    "id, tenant, source, subject, kind, title, summary, tier, state, url, importance, event_count, "
    "created_at, updated_at, summary_by"
)


def _context_rows(writes: Sequence[IndexWrite]) -> list[dict[str, Any]]:
    """One upsert per context: the batch's newest head, greatest importance, widest time span."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for w in writes:
        key = (w.tenant, w.context_id)
        row = rows.get(key)
        if row is None or w.head_key > row["head_key"]:
            merged = {
                "tenant": w.tenant, "context_id": w.context_id, "source": w.source, "subject": w.subject,
                "kind": w.kind, "title": w.title, "state": w.state, "url": w.url,
                "labels": list(w.labels), "head_key": w.head_key,
                "importance": max(w.importance, row["importance"]) if row else w.importance,
                "created_at": min(w.occurred_at, row["created_at"]) if row else w.occurred_at,
                "updated_at": max(w.occurred_at, row["updated_at"]) if row else w.occurred_at,
            }  # fmt: skip
            rows[key] = merged
        else:
            row["importance"] = max(row["importance"], w.importance)
            row["created_at"] = min(row["created_at"], w.occurred_at)
            row["updated_at"] = max(row["updated_at"], w.occurred_at)
    return [rows[key] for key in sorted(rows)]  # sorted: advisory locks in one global order


async def upsert(conn: AsyncConnection[Any], writes: Sequence[IndexWrite]) -> None:
    """Record the events in the ledger and refresh their contexts' rows, in one transaction. A
    context none of whose events is new (a redelivered batch) is left as it is."""
    if not writes:
        return
    contexts = _context_rows(writes)
    # Texts are NUL-free already: MemoryService._plan, where mapped events become writes, sees to it.
    columns = {name: [getattr(w, name) for w in writes] for name in _EVENT_COLUMNS}
    async with conn.transaction(), conn.cursor() as cur:
        # Two workers refreshing one context's body must not interleave.
        await cur.executemany(
            "SELECT pg_advisory_xact_lock(hashtextextended(%(tenant)s || '/' || %(context_id)s, 0))",
            contexts,
        )
        await cur.execute(_INSERT_EVENTS, columns)
        added = Counter((str(tenant), str(ctx_id)) for tenant, ctx_id in await cur.fetchall())
        for row in contexts:
            row["added"] = added[(row["tenant"], row["context_id"])]
        await cur.executemany(_UPSERT_CONTEXT, [row for row in contexts if row["added"]])


def _summary(row: dict[str, Any]) -> ContextSummary:
    return ContextSummary(**{name: row[name] for name in ContextSummary.__slots__})


@dataclass(frozen=True, slots=True)
class TextMatch:
    context: ContextSummary
    rank: float
    body: str


async def search_text(
    conn: AsyncConnection[Any],
    tenant: str,
    query: str,
    limit: int,
    source: str | None = None,
    since: datetime | None = None,
) -> list[TextMatch]:
    """Full-text candidates: any query term matches (OR), ranked by ts_rank_cd; newest first if
    the query has no searchable words."""
    filters = ["tenant = %(tenant)s"]
    params: dict[str, Any] = {"tenant": tenant, "query": query, "limit": limit}
    if source is not None:
        filters.append("source = %(source)s")
        params["source"] = source
    if since is not None:
        filters.append("updated_at >= %(since)s")
        params["since"] = since
    where = " AND ".join(filters)
    sql = f"""
        WITH q AS (
            SELECT nullif(replace(plainto_tsquery('english', %(query)s)::text, '&', '|'), '')::tsquery AS t
        )
        SELECT {_SUMMARY_COLUMNS}, body,
               CASE WHEN q.t IS NULL THEN 0 ELSE ts_rank_cd(tsv, q.t, 32) END AS rank
        FROM contexts, q
        WHERE {where} AND (q.t IS NULL OR tsv @@ q.t)
        ORDER BY rank DESC, updated_at DESC
        LIMIT %(limit)s
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        rows = await cur.fetchall()
    return [TextMatch(_summary(row), float(row["rank"]), row["body"]) for row in rows]


async def get_summary(
    conn: AsyncConnection[Any], tenant: str, context_id: str
) -> tuple[ContextSummary, str] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_SUMMARY_COLUMNS}, body FROM contexts WHERE tenant = %s AND id = %s",
            (tenant, context_id),
        )
        row = await cur.fetchone()
    return None if row is None else (_summary(row), row["body"])


async def recent_events(
    conn: AsyncConnection[Any],
    tenant: str,
    limit: int,
    source: str | None = None,
    since: datetime | None = None,
    before: tuple[datetime, str] | None = None,
) -> list[RecentEvent]:
    filters = ["tenant = %(tenant)s"]
    params: dict[str, Any] = {"tenant": tenant, "limit": limit}
    if source is not None:
        filters.append("source = %(source)s")
        params["source"] = source
    if since is not None:
        filters.append("received_at >= %(since)s")
        params["since"] = since
    if before is not None:
        filters.append("(received_at, id) < (%(before_at)s, %(before_id)s)")
        params["before_at"], params["before_id"] = before
    sql = f"""
        SELECT id, context_id, source, event_type, received_at, text FROM events
        WHERE {" AND ".join(filters)} ORDER BY received_at DESC, id DESC LIMIT %(limit)s
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        rows = await cur.fetchall()
    return [RecentEvent(**row) for row in rows]


async def embedding_texts(
    conn: AsyncConnection[Any], contexts: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """What each context's embedding is made of (title, subject, summary and its newest event lines),
    for the contexts that are due: never embedded, or not in the last ``EMBED_EVERY_S`` seconds (a
    busy context is re-embedded at most that often; the lifecycle pass catches up the rest)."""
    texts: dict[tuple[str, str], str] = {}
    sql = f"""
        SELECT title, subject, summary, body FROM contexts
        WHERE tenant = %s AND id = %s
          AND (embedded_at IS NULL OR embedded_at < now() - interval '{EMBED_EVERY_S} seconds')
    """
    async with conn.cursor() as cur:
        for tenant, ctx_id in contexts:
            await cur.execute(sql, (tenant, ctx_id))
            row = await cur.fetchone()
            if row is not None:
                title, subject, summary, body = row
                # The newest eight distinct lines: a context's events often repeat one line.
                tail = "\n".join(list(dict.fromkeys(reversed(body.splitlines())))[:8][::-1])
                texts[(tenant, ctx_id)] = f"{title}\n{subject}\n{summary}\n{tail}"
    return texts


async def store_embeddings(conn: AsyncConnection[Any], rows: Sequence[tuple[tuple[str, str], str]]) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            "UPDATE contexts SET embedding = %s::vector, embedded_at = now(), embed_failed_at = NULL, "
            "embed_failures = 0 WHERE tenant = %s AND id = %s",
            [(vector, tenant, ctx_id) for (tenant, ctx_id), vector in rows],
        )


async def embedding_failed(conn: AsyncConnection[Any], contexts: Sequence[tuple[str, str]]) -> None:
    """These contexts' embeddings failed on their own: they wait (15 minutes, doubling with each
    failure) before they are due again, so that the rest is embedded meanwhile."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "UPDATE contexts SET embed_failed_at = now(), embed_failures = embed_failures + 1 "
            "WHERE tenant = %s AND id = %s",
            list(contexts),
        )


async def stale_embeddings(conn: AsyncConnection[Any], limit: int) -> list[tuple[str, str]]:
    """Contexts due for an embedding: never embedded first, then those changed since their embedding
    (and not re-embedded in the last minute), oldest change first."""
    rows = await (
        await conn.execute(
            f"""
            SELECT tenant, id FROM contexts
            WHERE (embedded_at IS NULL OR embedded_at < touched_at)
              AND (embedded_at IS NULL OR embedded_at < now() - interval '{EMBED_EVERY_S} seconds')
              AND (embed_failed_at IS NULL OR embed_failed_at
                   < now() - make_interval(mins => 15 * power(2, least(embed_failures - 1, 6))::int))
            ORDER BY embedded_at IS NOT NULL, touched_at LIMIT %s
            """,
            (limit,),
        )
    ).fetchall()
    return [(str(row[0]), str(row[1])) for row in rows]

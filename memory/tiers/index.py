"""The PostgreSQL index: the events ledger and one row per context (metadata + full-text tsvector).

Every context has a row here whatever its tier, so search never has to look in Redis.
"""

from __future__ import annotations

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


_INSERT_EVENT = """
INSERT INTO events (tenant, id, context_id, source, event_type, text, received_at, occurred_at, stream_id)
VALUES (%(tenant)s, %(event_id)s, %(context_id)s, %(source)s, %(event_type)s, %(text)s,
        %(received_at)s, %(occurred_at)s, %(stream_id)s)
ON CONFLICT (tenant, id) DO NOTHING
"""

_UPSERT_CONTEXT = f"""
INSERT INTO contexts AS c (tenant, id, source, subject, kind, title, state, url, importance, labels,
                           head_key, created_at, updated_at, event_count, body, summary)
SELECT %(tenant)s, %(context_id)s, %(source)s, %(subject)s, %(kind)s, %(title)s, %(state)s, %(url)s,
       %(importance)s, %(labels)s, %(head_key)s, %(created_at)s, %(updated_at)s,
       (SELECT count(*) FROM events e WHERE e.tenant = %(tenant)s AND e.context_id = %(context_id)s),
       coalesce((SELECT string_agg(r.text, E'\\n' ORDER BY r.occurred_at, r.id) FROM (
           SELECT text, occurred_at, id FROM events e
           WHERE e.tenant = %(tenant)s AND e.context_id = %(context_id)s
           ORDER BY occurred_at DESC, id DESC LIMIT {BODY_EVENTS}) r), ''),
       coalesce((SELECT text FROM events e WHERE e.tenant = %(tenant)s AND e.context_id = %(context_id)s
                 ORDER BY occurred_at DESC, id DESC LIMIT 1), '')
ON CONFLICT (tenant, id) DO UPDATE SET
    source = CASE WHEN excluded.head_key > c.head_key THEN excluded.source ELSE c.source END,
    kind = CASE WHEN excluded.head_key > c.head_key THEN excluded.kind ELSE c.kind END,
    title = CASE WHEN excluded.head_key > c.head_key THEN excluded.title ELSE c.title END,
    state = CASE WHEN excluded.head_key > c.head_key THEN excluded.state ELSE c.state END,
    url = CASE WHEN excluded.head_key > c.head_key THEN excluded.url ELSE c.url END,
    labels = CASE WHEN excluded.head_key > c.head_key THEN excluded.labels ELSE c.labels END,
    head_key = greatest(c.head_key, excluded.head_key),
    importance = greatest(c.importance, excluded.importance),
    created_at = least(c.created_at, excluded.created_at),
    updated_at = greatest(c.updated_at, excluded.updated_at),
    touched_at = now(),
    event_count = excluded.event_count,
    body = excluded.body,
    -- A model's summary (summary_by set) stands while it covers every event; else the newest line.
    summary = CASE WHEN c.summary_by IS NOT NULL AND c.summary_events = excluded.event_count
                   THEN c.summary ELSE excluded.summary END,
    summary_by = CASE WHEN c.summary_events = excluded.event_count THEN c.summary_by END,
    summary_events = CASE WHEN c.summary_events = excluded.event_count THEN c.summary_events END
"""

_SUMMARY_COLUMNS = (
    "id, tenant, source, subject, kind, title, summary, tier, state, url, importance, event_count, "
    "created_at, updated_at"
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
            rows[key] = {name: _clean(value) for name, value in merged.items()}
        else:
            row["importance"] = max(row["importance"], w.importance)
            row["created_at"] = min(row["created_at"], w.occurred_at)
            row["updated_at"] = max(row["updated_at"], w.occurred_at)
    return [rows[key] for key in sorted(rows)]  # sorted: advisory locks in one global order


async def upsert(conn: AsyncConnection[Any], writes: Sequence[IndexWrite]) -> None:
    """Record the events in the ledger and refresh their contexts' rows, in one transaction."""
    if not writes:
        return
    contexts = _context_rows(writes)
    async with conn.transaction(), conn.cursor() as cur:
        # Two workers refreshing one context's body must not interleave.
        await cur.executemany(
            "SELECT pg_advisory_xact_lock(hashtextextended(%(tenant)s || '/' || %(context_id)s, 0))",
            contexts,
        )
        await cur.executemany(_INSERT_EVENT, [_as_dict(w) for w in writes])
        await cur.executemany(_UPSERT_CONTEXT, contexts)


def _as_dict(write: IndexWrite) -> dict[str, Any]:
    return {name: _clean(getattr(write, name)) for name in IndexWrite.__slots__}


def _clean(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL, which JSON strings may carry as an escape."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


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
            "UPDATE contexts SET embedding = %s::vector, embedded_at = now() WHERE tenant = %s AND id = %s",
            [(vector, tenant, ctx_id) for (tenant, ctx_id), vector in rows],
        )


async def stale_embeddings(conn: AsyncConnection[Any], limit: int) -> list[tuple[str, str]]:
    """Contexts changed since their embedding was made (and not re-embedded in the last minute)."""
    rows = await (
        await conn.execute(
            f"""
            SELECT tenant, id FROM contexts
            WHERE embedded_at IS NOT NULL AND embedded_at < touched_at
              AND embedded_at < now() - interval '{EMBED_EVERY_S} seconds'
            ORDER BY touched_at LIMIT %s
            """,
            (limit,),
        )
    ).fetchall()
    return [(str(row[0]), str(row[1])) for row in rows]

"""Hybrid search: PostgreSQL full text and pgvector (HNSW, cosine), fused by reciprocal rank, then
ranked by ``memory.scoring``. Every hit carries its score breakdown.

Without a query vector (no embedder, or a PostgreSQL without pgvector) the full-text ranking is the
only one fused; an empty query lists the newest contexts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from memory.models import ContextSummary, SearchHit
from memory.scoring import Signals, reciprocal_rank_fusion, score

CANDIDATES = 50
RRF_K = 10  # small k keeps rank gaps larger than the recency/importance nudges (eval: 0.79 -> 0.83)
# A vector neighbour counts as a match above an absolute floor (MiniLM: unrelated texts score about
# 0.0-0.15) and within a share of the best neighbour's similarity (so a query with strong matches
# does not drag in the weak ones). bench/eval_retrieval.py: a fixed 0.3 floor cut 30 of 75 answers.
MIN_SIMILARITY = 0.15
RELATIVE_SIMILARITY = 0.6
TEXT_MATCHES_RANKED = 2000  # full-text ranking cost grows with matches: rank the newest this many
HNSW_EF_SEARCH = 100  # must be at least the candidate count, or HNSW returns fewer (default 40)

_COLUMNS = (
    "id, tenant, source, subject, kind, title, summary, tier, state, url, importance, event_count, "
    "created_at, updated_at, body, pinned, access_count, last_access_at"
)


@dataclass(frozen=True, slots=True)
class Filters:
    source: str | None = None
    since: datetime | None = None
    tier: str | None = None

    def sql(self, params: dict[str, Any]) -> str:
        clauses = ["tenant = %(tenant)s"]
        if self.source is not None:
            clauses.append("source = %(source)s")
            params["source"] = self.source
        if self.since is not None:
            clauses.append("updated_at >= %(since)s")
            params["since"] = self.since
        if self.tier is not None:
            clauses.append("tier = %(tier)s")
            params["tier"] = self.tier
        return " AND ".join(clauses)


async def _rows(conn: AsyncConnection[Any], sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return list(await cur.fetchall())


async def text_candidates(
    conn: AsyncConnection[Any], tenant: str, query: str, filters: Filters, limit: int = CANDIDATES
) -> list[dict[str, Any]]:
    """Any query term matches (OR), ranked by ts_rank_cd; newest first for a query without words."""
    params: dict[str, Any] = {"tenant": tenant, "query": query, "limit": limit}
    where = filters.sql(params)
    sql = f"""
        WITH q AS (
            SELECT nullif(replace(plainto_tsquery('english', %(query)s)::text, '&', '|'), '')::tsquery AS t
        )
        SELECT {_COLUMNS}, CASE WHEN q.t IS NULL THEN 0 ELSE ts_rank_cd(tsv, q.t, 32) END AS rank
        FROM (
            SELECT contexts.* FROM contexts, q
            WHERE {where} AND (q.t IS NULL OR tsv @@ q.t)
            ORDER BY updated_at DESC LIMIT {TEXT_MATCHES_RANKED}
        ) contexts, q
        ORDER BY rank DESC, updated_at DESC
        LIMIT %(limit)s
    """
    return await _rows(conn, sql, params)


async def vector_candidates(
    conn: AsyncConnection[Any],
    tenant: str,
    vector: Sequence[float],
    filters: Filters,
    limit: int = CANDIDATES,
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"tenant": tenant, "limit": limit, "vec": to_pgvector(vector)}
    where = filters.sql(params)
    sql = f"""
        SELECT {_COLUMNS}, 1 - (embedding <=> %(vec)s::vector) AS similarity
        FROM contexts WHERE {where} AND embedding IS NOT NULL
        ORDER BY embedding <=> %(vec)s::vector LIMIT %(limit)s
    """
    async with conn.transaction():
        await conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(HNSW_EF_SEARCH),))
        rows = await _rows(conn, sql, params)
    if not rows:
        return []
    floor = max(MIN_SIMILARITY, RELATIVE_SIMILARITY * max(row["similarity"] for row in rows))
    return [row for row in rows if row["similarity"] >= floor]


def to_pgvector(vector: Sequence[float]) -> str:
    return "[" + ",".join(f"{x:.7f}" for x in vector) + "]"


async def has_vectors(conn: AsyncConnection[Any]) -> bool:
    row = await (
        await conn.execute(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_name = 'contexts' AND column_name = 'embedding'"
        )
    ).fetchone()
    return row is not None


def _summary(row: dict[str, Any]) -> ContextSummary:
    return ContextSummary(**{name: row[name] for name in ContextSummary.__slots__})


def rank(
    text_rows: list[dict[str, Any]], vector_rows: list[dict[str, Any]], query: str, now: datetime, limit: int
) -> list[SearchHit]:
    rows = {row["id"]: row for row in vector_rows} | {row["id"]: row for row in text_rows}
    rankings = [
        [(row["id"], float(row["rank"])) for row in text_rows if row["rank"] > 0 or not query.strip()]
    ]
    if vector_rows:
        rankings.append([(row["id"], float(row["similarity"])) for row in vector_rows])
    fused = reciprocal_rank_fusion(rankings, RRF_K)
    best_possible = len(rankings) / (RRF_K + 1)
    hits = []
    for ctx_id, value in fused.items():
        row = rows[ctx_id]
        signals = Signals(
            relevance=value / best_possible,
            updated_at=row["updated_at"],
            kind=row["kind"],
            importance=row["importance"],
            pinned=row["pinned"],
            access_count=row["access_count"],
            last_access=row["last_access_at"],
        )
        total, breakdown = score(signals, now)
        if "rank" in row:
            breakdown["text_rank"] = round(float(row["rank"]), 6)
        if "similarity" in row:
            breakdown["similarity"] = round(float(row["similarity"]), 6)
        hits.append(SearchHit(_summary(row), total, breakdown, snippet(row["body"], query)))
    hits.sort(key=lambda hit: (-hit.score, hit.context.id))
    return hits[:limit]


def snippet(body: str, query: str, width: int = 240) -> str:
    terms = [term.lower() for term in query.split() if len(term) > 2]
    lines = body.splitlines()
    for line in reversed(lines):
        lowered = line.lower()
        if any(term in lowered for term in terms):
            return line[:width]
    return lines[-1][:width] if lines else ""

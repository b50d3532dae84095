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
from memory.scoring import HalfLives, Signals, reciprocal_rank_fusion, score

CANDIDATES = 50
RRF_K = 10  # small k keeps rank gaps larger than the recency/importance nudges (eval: 0.79 -> 0.83)
# A vector neighbour counts as a match above an absolute floor (MiniLM: unrelated texts score about
# 0.0-0.15) and within a share of the best neighbour's similarity (so a query with strong matches
# does not drag in the weak ones). bench/eval_retrieval.py: a fixed 0.3 floor cut 30 of 75 answers.
MIN_SIMILARITY = 0.15
RELATIVE_SIMILARITY = 0.6
TEXT_MATCHES_RANKED = 2000  # full-text ranking cost grows with matches: rank the newest this many
# ts_rank_cd (cover density: the terms' proximity counts) ranks better than ts_rank (eval: hybrid
# recall@5 0.91 against 0.89) but costs about ten times as much a row: ts_rank picks the best this many
# of the newest matches, and ts_rank_cd orders those.
COVER_DENSITY_RANKED = 200
HNSW_EF_SEARCH = 100  # must be at least the candidate count, or HNSW returns fewer (default 40)

_COLUMNS = (
    "id, tenant, source, subject, kind, title, summary, tier, state, url, importance, event_count, "
    "created_at, updated_at, summary_by, body, pinned, access_count, last_access_at"
)
_CONTEXT_COLUMNS = ", ".join(f"contexts.{name.strip()}" for name in _COLUMNS.split(","))


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
    # Never prepared: a prepared statement may be given a generic plan, made without seeing the
    # query's terms, and the right plan for full text depends on how many rows they match.
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params, prepare=False)
        return list(await cur.fetchall())


# The OR of the query's terms; NULL when it has none (only stop words, or no words). Inlined rather
# than a CTE, so that the planner sees a constant: it can then use the GIN index and estimate the
# number of matches (a CTE column hid both, and a seq scan of every row was the plan).
_OR_QUERY = "nullif(replace(plainto_tsquery('english', %(query)s)::text, '&', '|'), '')::tsquery"


async def _walks(conn: AsyncConnection[Any], where: str, params: dict[str, Any]) -> bool:
    """Whether to find the newest matches by walking the contexts newest first, rather than reading
    every match from the GIN index and sorting them.

    A walk reads about TEXT_MATCHES_RANKED * rows / matches contexts, the GIN index ``matches``, so
    the walk wins above sqrt(TEXT_MATCHES_RANKED * rows) matches. PostgreSQL's planner weighs the two
    itself, but it costs the walk's per-row match test as almost free, and it overestimates an OR of
    terms that occur together (1,800 matches taken for 7,125): it walked all 100,000 rows for such a
    query (167 ms, where reading the matches takes 28). Its estimates are good enough for this
    threshold; one EXPLAIN (planning only, about a millisecond) gives both counts."""
    sql = f"""
        EXPLAIN (FORMAT JSON)
        SELECT 1 FROM contexts WHERE {where} AND tsv @@ {_OR_QUERY}
        UNION ALL SELECT 1 FROM contexts WHERE {where}
    """
    row = await (await conn.execute(sql, params, prepare=False)).fetchone()
    plan = row[0][0]["Plan"] if row else {}
    counts = [part.get("Plan Rows", 0) for part in plan.get("Plans", [])]
    if len(counts) != 2:  # not the plan expected: the planner decides
        return True
    matches, rows = counts
    return bool(matches * matches >= TEXT_MATCHES_RANKED * rows)


async def text_candidates(
    conn: AsyncConnection[Any], tenant: str, query: str, filters: Filters, limit: int = CANDIDATES
) -> list[dict[str, Any]]:
    """Any query term matches (OR), ranked by ts_rank_cd (among the best ``COVER_DENSITY_RANKED`` by
    ts_rank); newest first for a query without words.

    Only the newest ``TEXT_MATCHES_RANKED`` matches are ranked, reading just what ranking needs
    (id, updated_at, tsv); the wide columns are read for the ``limit`` rows kept. How the newest
    matches are found depends on how many there are (``_walks``)."""
    params: dict[str, Any] = {"tenant": tenant, "query": query, "limit": limit}
    where = filters.sql(params)
    if await _walks(conn, where, params):
        matched = f"""
            SELECT id, updated_at, tsv FROM contexts
            WHERE {where} AND tsv @@ {_OR_QUERY}
            ORDER BY updated_at DESC LIMIT {TEXT_MATCHES_RANKED}"""
    else:  # every match from the GIN index (a CTE without ORDER BY cannot be walked), sorted; each
        # match carries its row's address, not its tsvector, which is read for the newest only
        matched = f"""
            WITH every AS MATERIALIZED (
                SELECT ctid AS at, updated_at FROM contexts WHERE {where} AND tsv @@ {_OR_QUERY}
            ), latest AS (
                SELECT at, updated_at FROM every ORDER BY updated_at DESC LIMIT {TEXT_MATCHES_RANKED}
            )
            SELECT contexts.id, contexts.updated_at, contexts.tsv FROM latest
            JOIN contexts ON contexts.ctid = latest.at"""
    sql = f"""
        WITH matched AS ({matched}
        ), rough AS (
            SELECT id, updated_at, tsv FROM matched
            ORDER BY ts_rank(tsv, {_OR_QUERY}, 32) DESC, updated_at DESC LIMIT {COVER_DENSITY_RANKED}
        ), ranked AS (
            SELECT id, updated_at, ts_rank_cd(tsv, {_OR_QUERY}, 32) AS rank FROM rough
            ORDER BY rank DESC, updated_at DESC LIMIT %(limit)s
        ), newest AS (
            SELECT id, updated_at, 0::real AS rank FROM contexts
            WHERE {where} AND {_OR_QUERY} IS NULL
            ORDER BY updated_at DESC LIMIT %(limit)s
        ), found AS (
            SELECT * FROM ranked UNION ALL SELECT * FROM newest
        )
        SELECT {_CONTEXT_COLUMNS}, found.rank FROM found
        JOIN contexts ON contexts.tenant = %(tenant)s AND contexts.id = found.id
        ORDER BY found.rank DESC, found.updated_at DESC
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


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a context's newest event came from: what its recency half-life depends on."""

    provider: str
    event_type: str


async def origins(conn: AsyncConnection[Any], tenant: str, ids: Sequence[str]) -> dict[str, Origin]:
    """Each context's provider (its source's, else the source name) and newest event type: one
    index probe per context, so only for the candidates."""
    if not ids:
        return {}
    sql = """
        SELECT c.id, coalesce(s.provider, c.source) AS provider, coalesce(e.event_type, '') AS event_type
        FROM contexts c
        LEFT JOIN sources s ON s.name = c.source AND s.tenant = c.tenant
        LEFT JOIN LATERAL (
            SELECT event_type FROM events
            WHERE events.tenant = c.tenant AND events.context_id = c.id
            ORDER BY occurred_at DESC, id DESC LIMIT 1
        ) e ON true
        WHERE c.tenant = %(tenant)s AND c.id = ANY(%(ids)s)
    """
    rows = await _rows(conn, sql, {"tenant": tenant, "ids": list(dict.fromkeys(ids))})
    return {row["id"]: Origin(row["provider"], row["event_type"]) for row in rows}


def _summary(row: dict[str, Any]) -> ContextSummary:
    return ContextSummary(**{name: row[name] for name in ContextSummary.__slots__})


def rank(
    text_rows: list[dict[str, Any]],
    vector_rows: list[dict[str, Any]],
    query: str,
    now: datetime,
    limit: int,
    found_in: dict[str, Origin] | None = None,
    half_lives: HalfLives | None = None,
) -> list[SearchHit]:
    """Fuse, score and order the candidates; ``found_in`` (from ``origins``) picks each context's
    half-life, else its source name stands for the provider."""
    found_in, half_lives = found_in or {}, half_lives or HalfLives()
    rows = {row["id"]: row for row in vector_rows}
    for row in text_rows:  # found by both: the breakdown shows its text rank and its similarity
        rows[row["id"]] = rows.get(row["id"], {}) | row
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
        origin = found_in.get(ctx_id) or Origin(row["source"], "")
        signals = Signals(
            relevance=value / best_possible,
            updated_at=row["updated_at"],
            kind=row["kind"],
            importance=row["importance"],
            half_life_h=half_lives.hours(origin.provider, origin.event_type),
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

"""Retrieval quality: recall@5 and MRR of keyword, vector and hybrid search on real GitHub payloads.

The corpus is GitHub's webhook examples (@octokit/webhooks-examples, 329 payloads): each example is
one event through MemoryService.apply_events with the default mappers (tenant "eval"), so contexts,
full-text index and embeddings are what production builds. Many examples share a subject (most are
about Codertocat/Hello-World): the corpus has ~60 contexts.

The questions (bench/eval_queries.json) are phrased as an agent would ask them, each with the
subjects that answer it. Three modes rank the corpus:

- keyword: memory.search.text_candidates in its own order (ts_rank_cd, any term matches);
- vector: memory.search.vector_candidates in its own order (HNSW, cosine);
- hybrid: MemoryService.search_context (both lists fused by RRF, then memory.scoring).

recall@k = |expected in the top k| / min(k, |expected|), averaged over the queries; MRR = 1/rank of
the first expected subject (0 when none is returned). A query is "lexical" when an expected context's
tsvector matches the query's OR-tsquery, i.e. full text can find it at all.

The experiments change nothing in memory/ (they patch it in this process only):

- the vector similarity floor (memory.search.MIN_SIMILARITY) patched away, beside the expected
  contexts' own similarities, to show what the floor cuts;
- ablations: memory.search.rank on the same candidates with one knob changed (fusion vs scoring);
- full text AND-first (the OR of the terms only when the AND finds fewer than 5);
- mapping: the corpus ingested again (tenant "eval-enriched") with the fallback mapper's text
  extended by GitHub's own description of the event type and the payload's short text fields, to
  test "the text is too thin".

``--min-similarity X`` runs everything with the floor at X (``0`` for none).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from psycopg import AsyncConnection
from psycopg.rows import dict_row

import memory.service
from mcp_server.logs import configure_logging
from memory import scoring, search
from memory.mappers.base import Mapper, mapper_for
from memory.mappers.github import EVENT_TYPES
from memory.models import Event, MappedEvent
from memory.runtime import Runtime, open_runtime
from memory.service import MAX_LIMIT, MemoryService
from memory.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"  # db 14 is reserved for benches: it is flushed
DEFAULT_QUERIES = ROOT / "bench/eval_queries.json"
TENANT, ENRICHED, SOURCE, PROVIDER = "eval", "eval-enriched", "github", "github"
BATCH = 100  # events per apply_events call, as a worker's batch
K = 5
HYBRID = "hybrid + scoring (search_context)"

Score = Callable[[scoring.Signals, datetime], tuple[float, dict[str, float]]]
Patch = tuple[object, str, object]


@dataclass(frozen=True)
class Query:
    text: str
    style: str
    expected: frozenset[str]


@dataclass(frozen=True)
class Candidates:
    text: list[dict[str, Any]]
    vector: list[dict[str, Any]]
    query_vector: list[float]
    origins: dict[str, search.Origin]  # each candidate's provider and newest event type (half-lives)


Modes = dict[str, list[list[str]]]  # mode -> per query, the subjects in ranked order


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=Path, default=DEFAULT_QUERIES)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="only the default db is flushed")
    parser.add_argument("--database-url", default="", help="default: embedded PostgreSQL in a temp dir")
    parser.add_argument("--verbose", action="store_true", help="every query's ranks, not only the misses")
    parser.add_argument(
        "--min-similarity",
        type=float,
        help="override memory.search.MIN_SIMILARITY (the vector floor) throughout",
    )
    return parser.parse_args()


# -- the corpus and the questions ------------------------------------------------------------------


def load_groups() -> list[dict[str, Any]]:
    """The examples index (installed into .tools by bench/setup_examples.sh when missing)."""
    sys.path.insert(0, str(ROOT))  # the tests package is not installed
    from tests.fixtures.github_examples import examples_path

    path = examples_path(os.environ)
    if not path.exists():
        subprocess.run(["bash", str(ROOT / "bench/setup_examples.sh")], check=True, stdout=sys.stderr)
    groups: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return groups


def load_queries(path: Path, subjects: set[str]) -> list[Query]:
    """The questions; every expected subject must be one the mapper gives some example."""
    raw = json.loads(path.read_text(encoding="utf-8"))["queries"]
    queries = [Query(q["query"], q["style"], frozenset(q["expected"])) for q in raw]
    unknown = sorted({s for q in queries for s in q.expected} - subjects)
    if unknown:
        sys.exit(f"{path}: expected subjects that no example maps to: {unknown}")
    return queries


async def ingest(
    service: MemoryService, tenant: str, examples: Sequence[tuple[str, Any]], at: datetime
) -> None:
    batch = [Event(f"ex{i:03d}", tenant, SOURCE, PROVIDER, t, at, p) for i, (t, p) in enumerate(examples)]
    for i in range(0, len(batch), BATCH):
        rejected = await service.apply_events(batch[i : i + BATCH])
        if rejected:
            raise RuntimeError(f"{len(rejected)} events were rejected: {rejected[0].reason}")
    async with service.rt.db.connection() as conn:
        await conn.execute("VACUUM ANALYZE events, contexts")


async def corpus(rt: Runtime, tenant: str) -> dict[str, dict[str, Any]]:
    """Each context's row by subject."""
    async with rt.db.connection() as conn:
        cur = await conn.execute(
            "SELECT subject, kind, importance, updated_at, embedding IS NOT NULL FROM contexts "
            "WHERE tenant = %s",
            (tenant,),
        )
        rows = await cur.fetchall()
    names = ("kind", "importance", "updated_at", "embedded")
    return {str(row[0]): dict(zip(names, row[1:], strict=True)) for row in rows}


async def lexical(rt: Runtime, query: Query) -> bool:
    """Can full text find an expected context at all (does its tsvector match the OR-tsquery)?"""
    async with rt.db.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM contexts WHERE tenant = %s AND subject = ANY(%s) AND tsv @@ "
            "nullif(replace(plainto_tsquery('english', %s)::text, '&', '|'), '')::tsquery",
            (TENANT, list(query.expected), query.text),
        )
        row = await cur.fetchone()
    return bool(row and row[0])


# -- the mapping experiment ------------------------------------------------------------------------

FACT_KEYS = frozenset(
    {"summary", "description", "environment", "state", "severity", "name", "title", "page_name", "task",
     "context", "status", "conclusion", "note", "body", "message"}
)  # fmt: skip
NOT_THE_ITEM = frozenset({"repository", "sender", "organization", "installation", "enterprise"})


def first_sentence(markdown: str) -> str:
    plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown).replace("`", "").replace("\\_", "_")
    return plain.split(". ")[0].strip().rstrip(".")


def facts(value: object, depth: int = 0) -> Iterator[str]:
    """Short text fields of the payload (not of the repository, sender, ...), first lines only."""
    if depth > 4:
        return
    items = (
        value.items() if isinstance(value, dict) else enumerate(value[:3]) if isinstance(value, list) else ()
    )
    for key, item in items:
        if key in NOT_THE_ITEM:
            continue
        if isinstance(item, str) and key in FACT_KEYS and len(item) > 1 and not item.startswith("http"):
            yield item.splitlines()[0][:120]
        elif isinstance(item, dict | list):
            yield from facts(item, depth + 1)


@dataclass(frozen=True)
class EnrichedMapper:
    """The GitHub mapper, with fallback events' text extended (what a richer mapper could say)."""

    inner: Mapper
    descriptions: dict[str, str]

    def map(self, event_type: str, payload: dict[str, Any]) -> MappedEvent:
        mapped = self.inner.map(event_type, payload)
        if event_type in EVENT_TYPES:
            return mapped
        found = list(dict.fromkeys(facts(payload)))[:10]
        extra = " - ".join(part for part in (self.descriptions.get(event_type, ""), "; ".join(found)) if part)
        return dataclasses.replace(mapped, text=f"{mapped.text} ({extra})" if extra else mapped.text)


def enriched(groups: Sequence[dict[str, Any]]) -> Callable[[str], Mapper]:
    mapper = EnrichedMapper(
        mapper_for(PROVIDER), {g["name"]: first_sentence(g["description"]) for g in groups}
    )
    return lambda provider: mapper if provider.strip().lower() == PROVIDER else mapper_for(provider)


# -- ranking ---------------------------------------------------------------------------------------


async def candidates(rt: Runtime, tenant: str, query: str) -> Candidates:
    assert rt.embedder is not None
    vector = (await rt.embedder.embed([query]))[0]
    async with rt.db.connection() as conn:
        text_rows = await search.text_candidates(conn, tenant, query, search.Filters())
        vector_rows = await search.vector_candidates(conn, tenant, vector, search.Filters())
        found_in = await search.origins(conn, tenant, [r["id"] for r in (*text_rows, *vector_rows)])
    return Candidates(text_rows, vector_rows, vector, found_in)


async def evaluate(
    rt: Runtime, service: MemoryService, tenant: str, queries: Sequence[Query], now: datetime
) -> tuple[Modes, list[Candidates]]:
    cands = [await candidates(rt, tenant, q.text) for q in queries]
    modes: Modes = {
        # The rows the hybrid fuses: a query without searchable words lists the newest, not matches.
        "keyword (text_candidates)": [[r["subject"] for r in c.text if r["rank"] > 0] for c in cands],
        "vector (vector_candidates)": [[r["subject"] for r in c.vector] for c in cands],
        HYBRID: [],
    }
    for q in queries:
        hits = await service.search_context(tenant, q.text, limit=MAX_LIMIT, now=now)
        modes[HYBRID].append([h.context.subject for h in hits])
    return modes, cands


def rerank(
    cands: Sequence[Candidates], queries: Sequence[Query], now: datetime, patches: list[Patch]
) -> list[list[str]]:
    with ExitStack() as stack:
        for target, name, value in patches:
            stack.enter_context(patched(target, name, value))
        return [
            [h.context.subject for h in search.rank(c.text, c.vector, q.text, now, MAX_LIMIT, c.origins)]
            for c, q in zip(cands, queries, strict=True)
        ]


@contextmanager
def patched(target: object, name: str, value: object) -> Iterator[None]:
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, old)


def relevance_only(signals: scoring.Signals, now: datetime) -> tuple[float, dict[str, float]]:
    return signals.relevance, {}


def without(part: str) -> Score:
    """memory.scoring.score with the recency or the importance factor divided out."""

    def score(signals: scoring.Signals, now: datetime) -> tuple[float, dict[str, float]]:
        total, breakdown = scoring.score(signals, now)
        if part == "recency":
            return total / (
                0.9 + 0.1 * scoring.recency(signals.updated_at, now, signals.half_life_h)
            ), breakdown
        return total / (
            0.9 + 0.2 * scoring.effective_importance(signals.importance, signals.pinned)
        ), breakdown

    return score


def gentle(signals: scoring.Signals, now: datetime) -> tuple[float, dict[str, float]]:
    """Priors as tie-breakers: recency and importance move a score by at most +-10 %."""
    fresh = scoring.recency(signals.updated_at, now, signals.half_life_h)
    importance = scoring.effective_importance(signals.importance, signals.pinned)
    return signals.relevance * (0.9 + 0.1 * fresh) * (0.9 + 0.2 * importance), {}


def weighted_rrf(vector_weight: float) -> Callable[[list[list[tuple[str, float]]], int], dict[str, float]]:
    def fuse(rankings: list[list[tuple[str, float]]], k: int = 60) -> dict[str, float]:
        fused: dict[str, float] = {}
        for n, ranking in enumerate(rankings):
            for rank, (item, _) in enumerate(ranking, start=1):
                fused[item] = fused.get(item, 0.0) + (vector_weight if n else 1.0) / (k + rank)
        return fused

    return fuse


AND_ENOUGH = 5
_or_candidates = search.text_candidates


async def and_first(
    conn: AsyncConnection[Any],
    tenant: str,
    query: str,
    filters: search.Filters,
    limit: int = search.CANDIDATES,
) -> list[dict[str, Any]]:
    """Full text with every term required; the OR of the terms only when that finds fewer than 5."""
    params: dict[str, Any] = {"tenant": tenant, "query": query, "limit": limit}
    where = filters.sql(params)
    sql = f"""
        WITH q AS (SELECT nullif(plainto_tsquery('english', %(query)s)::text, '')::tsquery AS t)
        SELECT {search._COLUMNS}, ts_rank_cd(tsv, q.t, 32) AS rank FROM contexts, q
        WHERE {where} AND tsv @@ q.t ORDER BY rank DESC, updated_at DESC LIMIT %(limit)s
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        rows = list(await cur.fetchall())
    return rows if len(rows) >= AND_ENOUGH else await _or_candidates(conn, tenant, query, filters, limit)


VECTORS_FIRST: list[Patch] = [
    (search, "reciprocal_rank_fusion", weighted_rrf(3.0)),
    (search, "score", relevance_only),
]


def ablations(cands: Sequence[Candidates], queries: Sequence[Query], now: datetime) -> Modes:
    variants: dict[str, list[Patch]] = {
        "rank() as shipped": [],
        "RRF only (score = relevance)": [(search, "score", relevance_only)],
        "no recency (= every context equally fresh)": [(search, "score", without("recency"))],
        "no importance": [(search, "score", without("importance"))],
        "priors as tie-breakers (+-10 %)": [(search, "score", gentle)],
        "RRF k=10": [(search, "RRF_K", 10)],
        "RRF k=10, RRF only": [(search, "RRF_K", 10), (search, "score", relevance_only)],
        "RRF vector weight 3, RRF only": VECTORS_FIRST,
    }
    return {name: rerank(cands, queries, now, patches) for name, patches in variants.items()}


# -- metrics and the report ------------------------------------------------------------------------


def rank_of(ranked: Sequence[str], expected: frozenset[str]) -> int | None:
    return next((n for n, s in enumerate(ranked, start=1) if s in expected), None)


def recall(ranked: Sequence[str], expected: frozenset[str], k: int) -> float:
    return len(set(ranked[:k]) & expected) / min(k, len(expected))


def metrics(ranked: list[list[str]], queries: Sequence[Query], which: Sequence[int]) -> str:
    if not which:
        return f"{'-':>26}"
    r1, r5, r10 = (
        sum(recall(ranked[i], queries[i].expected, k) for i in which) / len(which) for k in (1, K, 10)
    )
    mrr = sum(1 / r for i in which if (r := rank_of(ranked[i], queries[i].expected))) / len(which)
    return f"{r1:>8.2f}{r5:>6.2f}{r10:>6.2f}{mrr:>6.2f}"


def table(title: str, modes: Modes, queries: Sequence[Query], groups: dict[str, list[int]]) -> None:
    print(f"\n{title}")
    print(f"{'':<46}" + "".join(f"{f'{g} ({len(ix)})':>26}" for g, ix in groups.items()))
    print(f"{'mode':<46}" + f"{'R@1   R@5   R@10   MRR':>26}" * len(groups))
    for name, ranked in modes.items():
        print(f"{name:<46}" + "".join(metrics(ranked, queries, ix) for ix in groups.values()))


def relevance_spread(cands: Sequence[Candidates], queries: Sequence[Query], now: datetime) -> str:
    """How far apart RRF puts the fused #1 and #5: the room the priors have to reorder them."""
    ratios = []
    for c, q in zip(cands, queries, strict=True):
        with patched(search, "score", relevance_only):
            hits = search.rank(c.text, c.vector, q.text, now, K, c.origins)
        if len(hits) == K and hits[0].score:
            ratios.append(hits[-1].score / hits[0].score)
    return f"median relevance(#5)/relevance(#1) under RRF k={search.RRF_K}: {statistics.median(ratios):.2f}"


def misses(
    queries: Sequence[Query],
    columns: Modes,
    info: dict[str, dict[str, Any]],
    overlap: list[bool],
    every: bool,
) -> None:
    """The queries the hybrid misses; ``columns`` are short names of the modes whose ranks to show."""
    hybrid = columns["hybrid"]
    chosen = [i for i, q in enumerate(queries) if every or recall(hybrid[i], q.expected, K) < 1]
    which = "every query" if every else f"hybrid misses (recall@{K} < 1): {len(chosen)}"
    print(f"\n{which}; rank of the first expected subject per mode (- = not returned)")
    for i in chosen:
        q = queries[i]
        ranks = "  ".join(
            f"{name} {rank_of(ranked[i], q.expected) or '-'}" for name, ranked in columns.items()
        )
        print(f"- [{q.style}{'' if overlap[i] else ', no shared word'}] {q.text!r}   {ranks}")
        print(f"    expected: {', '.join(sorted(q.expected))}")
        top = [f"{s} ({info[s]['kind']}, imp {info[s]['importance']:.1f})" for s in hybrid[i][:K]]
        print(f"    hybrid top {K}: " + "; ".join(top))


@dataclass
class Results:
    examples: int
    seconds: float  # ingesting the corpus
    received: datetime
    info: dict[str, dict[str, Any]]
    queries: list[Query]
    overlap: list[bool]
    modes: Modes
    cands: list[Candidates]
    rich: Modes
    similarity: list[float]  # per query, the best cosine similarity of an expected context
    floor: float | None  # memory.search.MIN_SIMILARITY, where there is one
    floorless: Modes  # the modes with that floor patched away (empty without a floor)
    strict: Modes  # the modes with full text AND-first


async def expected_similarity(
    rt: Runtime, queries: Sequence[Query], cands: Sequence[Candidates]
) -> list[float]:
    best = []
    async with rt.db.connection() as conn:
        for q, c in zip(queries, cands, strict=True):
            cur = await conn.execute(
                "SELECT max(1 - (embedding <=> %s::vector)) FROM contexts "
                "WHERE tenant = %s AND subject = ANY(%s)",
                (search.to_pgvector(c.query_vector), TENANT, list(q.expected)),
            )
            row = await cur.fetchone()
            best.append(float(row[0]) if row and row[0] is not None else math.nan)
    return best


async def run(args: argparse.Namespace, tmp: Path) -> Results:
    groups = load_groups()
    examples = [(g["name"], example) for g in groups for example in g["examples"]]
    env = {
        "HOOKLINE_DATA_DIR": str(tmp / "data"),
        "HOOKLINE_REDIS_URL": args.redis_url,
        "HOOKLINE_BLOB_URL": (tmp / "blobs").as_uri(),
        "HOOKLINE_LOG_LEVEL": "warning",
        "HOOKLINE_EMBEDDER": "local",
    }
    env |= {"HOOKLINE_DATABASE_URL": args.database_url} if args.database_url else {}
    async with open_runtime(load_settings(env)) as rt:  # applies the migrations (run_migrations)
        if args.redis_url == DEFAULT_REDIS:
            await rt.redis.flushdb()
        async with rt.db.connection() as conn:
            if not await search.has_vectors(conn):
                sys.exit("this PostgreSQL has no pgvector: leave --database-url empty for the embedded one")
            for table_name in ("events", "contexts", "context_links"):
                await conn.execute(f"DELETE FROM {table_name} WHERE tenant = ANY(%s)", ([TENANT, ENRICHED],))
        service = MemoryService(rt)
        # Replayed today: received now; a context dates from its payload's own timestamp if it has one.
        received = datetime.now(UTC).replace(microsecond=0)
        now = received + timedelta(minutes=1)
        start = time.perf_counter()
        await ingest(service, TENANT, examples, received)
        seconds = time.perf_counter() - start
        info = await corpus(rt, TENANT)
        queries = load_queries(args.queries, set(info))
        modes, cands = await evaluate(rt, service, TENANT, queries, now)
        overlap = [await lexical(rt, q) for q in queries]
        similarity = await expected_similarity(rt, queries, cands)
        floor: float | None = getattr(search, "MIN_SIMILARITY", None)
        floorless: Modes = {}
        if floor is not None:
            with patched(search, "MIN_SIMILARITY", -1.0):
                floorless, bare = await evaluate(rt, service, TENANT, queries, now)
            floorless["RRF only (score = relevance)"] = rerank(
                bare, queries, now, [(search, "score", relevance_only)]
            )
        with patched(search, "text_candidates", and_first):
            strict, strict_cands = await evaluate(rt, service, TENANT, queries, now)
        strict["RRF only (score = relevance)"] = rerank(
            strict_cands, queries, now, [(search, "score", relevance_only)]
        )
        with patched(memory.service, "mapper_for", enriched(groups)):
            await ingest(service, ENRICHED, examples, received)
        rich, rich_cands = await evaluate(rt, service, ENRICHED, queries, now)
        variants: list[tuple[str, list[Patch]]] = [
            ("RRF only (score = relevance)", [(search, "score", relevance_only)]),
            ("priors as tie-breakers (+-10 %)", [(search, "score", gentle)]),
            ("RRF vector weight 3, RRF only", VECTORS_FIRST),
        ]
        for name, patches in variants:
            rich[name] = rerank(rich_cands, queries, now, patches)
        if args.redis_url == DEFAULT_REDIS:
            await rt.redis.flushdb()
    return Results(
        len(examples),
        seconds,
        received,
        info,
        queries,
        overlap,
        modes,
        cands,
        rich,
        similarity,
        floor,
        floorless,
        strict,
    )


def report(r: Results, args: argparse.Namespace) -> None:
    fresh = [s for s, row in r.info.items() if row["updated_at"] >= r.received - timedelta(days=1)]
    embedded = sum(row["embedded"] for row in r.info.values())
    print(
        f"\n{os.cpu_count()} cores; {r.examples} examples -> {len(r.info)} contexts ({embedded} embedded, ",
        end="",
    )
    print(f"all-MiniLM-L6-v2 int8) in {r.seconds:.1f} s; {len(r.queries)} queries from {args.queries.name}")
    floor = "none" if r.floor is None else f"{r.floor}"
    print(
        f"RRF k={search.RRF_K}, {search.CANDIDATES} candidates per list, vector similarity floor {floor}; ",
        end="",
    )
    print(f"received = {r.received:%Y-%m-%d %H:%M} UTC, searched 1 min later. {len(fresh)} of {len(r.info)}")
    print("contexts carry no payload timestamp, so they date from receipt and look fresh to the scorer;")
    print("the rest date from 2017-2023.")
    queries, everything = r.queries, list(range(len(r.queries)))
    by_overlap = {
        "all": everything,
        "lexical": [i for i in everything if r.overlap[i]],
        "no shared word": [i for i in everything if not r.overlap[i]],
    }
    styles = sorted({q.style for q in queries})
    by_style = {s: [i for i in everything if queries[i].style == s] for s in styles}
    table("recall@k (|expected in top k| / min(k, |expected|)) and MRR", r.modes, queries, by_overlap)
    table("the same, by the style the question was written in", r.modes, queries, by_style)
    if r.floorless:
        table(
            f"the same without the vector similarity floor ({r.floor} patched away)",
            r.floorless,
            queries,
            by_overlap,
        )
    print(similarity_line(r))
    now = r.received + timedelta(minutes=1)
    ablated = ablations(r.cands, queries, now)
    table(
        "ablations: memory.search.rank on the same candidates, one knob patched", ablated, queries, by_overlap
    )
    print(
        relevance_spread(r.cands, queries, now)
        + "; the priors span x0.9-x1 (recency), x0.9-x1.1 (importance)"
    )
    title = f"full text AND-first: every term required, the OR only when that finds < {AND_ENOUGH}"
    table(title, r.strict, queries, by_overlap)
    title = "mapping experiment: fallback events' text + GitHub's event description + payload text fields"
    table(title, r.rich, queries, by_overlap)
    columns = {
        "keyword": r.modes["keyword (text_candidates)"],
        "vector": r.modes["vector (vector_candidates)"],
        "hybrid": r.modes[HYBRID],
        "RRF-only": ablated["RRF only (score = relevance)"],
        "enriched:vector": r.rich["vector (vector_candidates)"],
        "enriched:RRF-only": r.rich["RRF only (score = relevance)"],
    }
    if r.floorless:
        columns["no-floor:vector"] = r.floorless["vector (vector_candidates)"]
    misses(queries, columns, r.info, r.overlap, args.verbose)


def similarity_line(r: Results) -> str:
    """Where the expected contexts sit in cosine similarity: what a similarity floor would cut."""
    values = [v for v in r.similarity if not math.isnan(v)]
    cut = r.floor if r.floor is not None else 0.3
    paraphrases = [v for v, lexical_ in zip(r.similarity, r.overlap, strict=True) if not lexical_]
    below = sum(v < cut for v in values)
    return (
        f"best expected context's cosine similarity per query: median {statistics.median(values):.2f}, "
        f"10th percentile {pct(values, 10):.2f}; {below} of {len(values)} queries below {cut} "
        f"({sum(v < cut for v in paraphrases)} of {len(paraphrases)} without a shared word)"
    )


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(len(ordered) * p / 100) - 1))]


def main() -> int:
    args = parse_args()
    configure_logging("WARNING", json_logs=False)
    with tempfile.TemporaryDirectory(prefix="hookline-eval-") as tmp, ExitStack() as stack:
        if args.min_similarity is not None and hasattr(search, "MIN_SIMILARITY"):
            stack.enter_context(patched(search, "MIN_SIMILARITY", args.min_similarity))
        results = anyio.run(run, args, Path(tmp))
    report(results, args)
    print(f"\nreproduce: bash bench/setup_examples.sh && {sys.executable} bench/eval_retrieval.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Retrieval quality: recall@5 and MRR of keyword, vector and hybrid search on real GitHub payloads.

The corpus is GitHub's webhook examples (@octokit/webhooks-examples, 329 payloads): each example is
one event through MemoryService.apply_events with the default mappers (tenant "eval"), so the
contexts, their full-text index and their embeddings are exactly what production would build. Many
examples share a subject (most are about Codertocat/Hello-World), so the corpus has ~60 contexts.

The questions (bench/eval_queries.json) are phrased as an agent would ask them, each with the
subjects that answer it. Three modes rank the same corpus:

- keyword: memory.search.text_candidates in its own order (ts_rank_cd, any term matches);
- vector: memory.search.vector_candidates in its own order (HNSW, cosine);
- hybrid: MemoryService.search_context (both, fused by RRF, then memory.scoring).

recall@k = |expected in the top k| / min(k, |expected|), averaged over the queries; MRR = 1/rank of
the first expected subject (0 when none is returned). A query is "lexical" when some expected
context's tsvector matches the query's OR-tsquery, i.e. full text can find it at all.

The ablations re-rank the same candidate lists in-process (memory.search.rank with one knob
changed), to tell fusion from scoring; they change nothing in memory/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from mcp_server.logs import configure_logging
from memory import scoring, search
from memory.models import Event
from memory.runtime import Runtime, open_runtime
from memory.service import MAX_LIMIT, MemoryService
from memory.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"  # db 14 is reserved for benches: it is flushed
DEFAULT_QUERIES = ROOT / "bench/eval_queries.json"
TENANT, SOURCE, PROVIDER = "eval", "github", "github"
BATCH = 100  # events per apply_events call, as a worker's batch
K = 5

Ranker = Callable[[list[dict[str, Any]], list[dict[str, Any]], str], list[str]]


@dataclass(frozen=True)
class Query:
    text: str
    style: str
    expected: frozenset[str]


@dataclass
class Scores:
    """One mode's ranked subjects per query, and the metrics over them."""

    ranked: list[list[str]] = field(default_factory=list)

    def rank_of(self, i: int, expected: frozenset[str]) -> int | None:
        return next((n for n, s in enumerate(self.ranked[i], start=1) if s in expected), None)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=Path, default=DEFAULT_QUERIES)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="only the default db is flushed")
    parser.add_argument("--database-url", default="", help="default: embedded PostgreSQL in a temp dir")
    parser.add_argument("--verbose", action="store_true", help="every query's ranks, not only the misses")
    return parser.parse_args()


# -- the corpus and the questions ------------------------------------------------------------------


def load_examples() -> list[tuple[str, dict[str, Any]]]:
    """Every example (installed into .tools by bench/setup_examples.sh when missing)."""
    sys.path.insert(0, str(ROOT))  # the tests package is not installed
    from tests.fixtures.github_examples import load_examples as load

    try:
        return load()
    except FileNotFoundError:
        subprocess.run(["bash", str(ROOT / "bench/setup_examples.sh")], check=True, stdout=sys.stderr)
        return load()


def load_queries(path: Path, subjects: set[str]) -> list[Query]:
    """The questions; every expected subject must be one the mapper gives some example."""
    raw = json.loads(path.read_text(encoding="utf-8"))["queries"]
    queries = [Query(q["query"], q["style"], frozenset(q["expected"])) for q in raw]
    unknown = sorted({s for q in queries for s in q.expected} - subjects)
    if unknown:
        sys.exit(f"{path}: expected subjects that no example maps to: {unknown}")
    return queries


def events(examples: Sequence[tuple[str, dict[str, Any]]], received: datetime) -> list[Event]:
    return [
        Event(f"ex{i:03d}", TENANT, SOURCE, PROVIDER, event_type, received, payload)
        for i, (event_type, payload) in enumerate(examples)
    ]


async def ingest(service: MemoryService, batch: Sequence[Event]) -> float:
    start = time.perf_counter()
    for i in range(0, len(batch), BATCH):
        rejected = await service.apply_events(batch[i : i + BATCH])
        if rejected:
            raise RuntimeError(f"{len(rejected)} events were rejected: {rejected[0].reason}")
    async with service.rt.db.connection() as conn:
        await conn.execute("VACUUM ANALYZE events, contexts")
    return time.perf_counter() - start


async def corpus(rt: Runtime) -> dict[str, dict[str, Any]]:
    """Every context row by subject (with its embedding text's inputs), after ingestion."""
    async with rt.db.connection() as conn:
        cur = await conn.execute(
            "SELECT subject, id, kind, title, importance, updated_at, embedding IS NOT NULL "
            "FROM contexts WHERE tenant = %s",
            (TENANT,),
        )
        rows = await cur.fetchall()
    names = ("id", "kind", "title", "importance", "updated_at", "embedded")
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


# -- ranking ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidates:
    text: list[dict[str, Any]]
    vector: list[dict[str, Any]]


async def candidates(rt: Runtime, query: str) -> Candidates:
    assert rt.embedder is not None
    vector = (await rt.embedder.embed([query]))[0]
    async with rt.db.connection() as conn:
        text_rows = await search.text_candidates(conn, TENANT, query, search.Filters())
        vector_rows = await search.vector_candidates(conn, TENANT, vector, search.Filters())
    return Candidates(text_rows, vector_rows)


def keyword_order(c: Candidates) -> list[str]:
    # The rows the hybrid fuses: a query without searchable words lists the newest, not matches.
    return [str(row["subject"]) for row in c.text if row["rank"] > 0]


def vector_order(c: Candidates) -> list[str]:
    return [str(row["subject"]) for row in c.vector]


def ranked(c: Candidates, query: str, now: datetime) -> list[str]:
    """memory.search.rank as search_context calls it (with whatever knobs are patched)."""
    return [hit.context.subject for hit in search.rank(c.text, c.vector, query, now, MAX_LIMIT)]


@contextmanager
def patched(target: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, old)


def relevance_only(signals: scoring.Signals, now: datetime) -> tuple[float, dict[str, float]]:
    return signals.relevance, {"relevance": signals.relevance}


def no_recency(signals: scoring.Signals, now: datetime) -> tuple[float, dict[str, float]]:
    total, breakdown = scoring.score(signals, now)
    fresh = scoring.recency(signals.updated_at, now, signals.kind)
    return total / (0.5 + 0.5 * fresh), breakdown


def no_importance(signals: scoring.Signals, now: datetime) -> tuple[float, dict[str, float]]:
    total, breakdown = scoring.score(signals, now)
    importance = scoring.effective_importance(signals.importance, signals.pinned)
    return total / (0.5 + importance), breakdown


def weighted_fusion(vector_weight: float) -> Callable[[list[list[str]], int], dict[str, float]]:
    """RRF with the second ranking (vectors) weighted; rank() normalises by len(rankings)/(k+1)."""

    def fuse(rankings: list[list[str]], k: int = 60) -> dict[str, float]:
        fused: dict[str, float] = {}
        for n, ranking in enumerate(rankings):
            weight = vector_weight if n == 1 else 1.0
            for rank, item in enumerate(ranking, start=1):
                fused[item] = fused.get(item, 0.0) + weight / (k + rank)
        return fused

    return fuse


def ablations(cands: Sequence[Candidates], queries: Sequence[Query], now: datetime) -> dict[str, Scores]:
    """The same candidates re-ranked with one knob of fusion or scoring changed."""
    variants: dict[str, list[tuple[Any, str, Any]]] = {
        "rank() as shipped (no query-embedding path)": [],
        "RRF only (score = relevance)": [(search, "score", relevance_only)],
        "scoring without recency": [(search, "score", no_recency)],
        "scoring without importance": [(search, "score", no_importance)],
        "RRF k=10": [(search, "RRF_K", 10)],
        "RRF vector weight 2": [(search, "reciprocal_rank_fusion", weighted_fusion(2.0))],
        "RRF vector weight 2, RRF only": [
            (search, "reciprocal_rank_fusion", weighted_fusion(2.0)),
            (search, "score", relevance_only),
        ],
    }
    out: dict[str, Scores] = {}
    for name, patches in variants.items():
        scores = Scores()
        with _apply(patches):
            for c, q in zip(cands, queries, strict=True):
                scores.ranked.append(ranked(c, q.text, now))
        out[name] = scores
    return out


@contextmanager
def _apply(patches: Sequence[tuple[Any, str, Any]]) -> Iterator[None]:
    if not patches:
        yield
        return
    (target, name, value), *rest = patches
    with patched(target, name, value), _apply(rest):
        yield


# -- metrics and the report ------------------------------------------------------------------------


def recall(ranked_subjects: Sequence[str], expected: frozenset[str], k: int) -> float:
    return len(set(ranked_subjects[:k]) & expected) / min(k, len(expected))


def mrr(scores: Scores, queries: Sequence[Query], which: Sequence[int]) -> float:
    ranks = [scores.rank_of(i, queries[i].expected) for i in which]
    return sum(1 / r for r in ranks if r) / len(ranks) if ranks else math.nan


def mean_recall(scores: Scores, queries: Sequence[Query], which: Sequence[int], k: int) -> float:
    values = [recall(scores.ranked[i], queries[i].expected, k) for i in which]
    return sum(values) / len(values) if values else math.nan


def table(modes: dict[str, Scores], queries: Sequence[Query], groups: dict[str, list[int]]) -> None:
    head = "".join(f"{f'{g} ({len(ix)})':>26}" for g, ix in groups.items())
    print(f"{'':<44}{head}")
    print(f"{'mode':<44}" + f"{'R@1   R@5   R@10   MRR':>26}" * len(groups))
    for name, scores in modes.items():
        cells = ""
        for ix in groups.values():
            r1, r5, r10 = (mean_recall(scores, queries, ix, k) for k in (1, K, 10))
            cells += f"{r1:>8.2f}{r5:>6.2f}{r10:>6.2f}{mrr(scores, queries, ix):>6.2f}"
        print(f"{name:<44}{cells}")


def show_query(
    i: int, q: Query, modes: dict[str, Scores], info: dict[str, dict[str, Any]], words: bool
) -> None:
    ranks = "  ".join(f"{name.split()[0]} {modes[name].rank_of(i, q.expected) or '-'}" for name in modes)
    print(f"- [{q.style}{', no shared word' if not words else ''}] {q.text!r}   first hit: {ranks}")
    print(f"    expected: {', '.join(sorted(q.expected))}")
    top = modes["hybrid + scoring (search_context)"].ranked[i][:K]
    shown = [f"{s} ({info[s]['kind']}, imp {info[s]['importance']:.1f})" for s in top]
    print(f"    hybrid top {K}: " + "; ".join(shown))


def report(
    queries: Sequence[Query],
    modes: dict[str, Scores],
    extra: dict[str, Scores],
    overlap: list[bool],
    info: dict[str, dict[str, Any]],
    verbose: bool,
) -> None:
    everything = list(range(len(queries)))
    groups = {
        "all": everything,
        "lexical": [i for i in everything if overlap[i]],
        "no shared word": [i for i in everything if not overlap[i]],
    }
    print("\nrecall@k (|expected in top k| / min(k, |expected|)) and MRR, by mode and query group")
    table(modes, queries, groups)
    styles = sorted({q.style for q in queries})
    by_style = {s: [i for i in everything if queries[i].style == s] for s in styles}
    print("\nthe same, by the style the question was written in")
    table(modes, queries, by_style)
    print("\nablations: search.rank on the same candidates with one knob changed (memory/ untouched)")
    table(extra, queries, groups)
    hybrid = modes["hybrid + scoring (search_context)"]
    misses = [i for i in everything if recall(hybrid.ranked[i], queries[i].expected, K) < 1]
    label = "every query" if verbose else f"hybrid misses at {K} (recall@{K} < 1): {len(misses)}"
    print(f"\n{label}; 'first hit' is the rank of the first expected subject in each mode")
    for i in everything if verbose else misses:
        show_query(i, queries[i], modes, info, overlap[i])


async def run(args: argparse.Namespace, tmp: Path) -> None:
    examples = load_examples()
    env = {
        "HOOKLINE_DATA_DIR": str(tmp / "data"),
        "HOOKLINE_REDIS_URL": args.redis_url,
        "HOOKLINE_BLOB_URL": (tmp / "blobs").as_uri(),
        "HOOKLINE_LOG_LEVEL": "warning",
        "HOOKLINE_EMBEDDER": "local",
    }
    env |= {"HOOKLINE_DATABASE_URL": args.database_url} if args.database_url else {}
    settings = load_settings(env)
    async with open_runtime(settings) as rt:  # applies the migrations (run_migrations)
        if args.redis_url == DEFAULT_REDIS:
            await rt.redis.flushdb()
        async with rt.db.connection() as conn:
            await conn.execute("DELETE FROM events WHERE tenant = %s", (TENANT,))
            await conn.execute("DELETE FROM contexts WHERE tenant = %s", (TENANT,))
        if not await _has_vectors(rt):
            sys.exit("this PostgreSQL has no pgvector: leave --database-url empty for the embedded one")
        service = MemoryService(rt)
        # Replayed today: received now; a context dates from its payload's own timestamp if it has one.
        received = datetime.now(UTC).replace(microsecond=0)
        seconds = await ingest(service, events(examples, received))
        info = await corpus(rt)
        queries = load_queries(args.queries, set(info))
        now = received + timedelta(minutes=1)
        print(
            f"{len(examples)} examples -> {len(info)} contexts ({sum(r['embedded'] for r in info.values())} "
            f"embedded) in {seconds:.1f} s; {len(queries)} queries from {args.queries.name}",
            file=sys.stderr,
        )
        cands = [await candidates(rt, q.text) for q in queries]
        modes = {
            "keyword (text_candidates)": Scores([keyword_order(c) for c in cands]),
            "vector (vector_candidates)": Scores([vector_order(c) for c in cands]),
            "hybrid + scoring (search_context)": Scores(),
        }
        for q in queries:
            hits = await service.search_context(TENANT, q.text, limit=MAX_LIMIT, now=now)
            modes["hybrid + scoring (search_context)"].ranked.append([h.context.subject for h in hits])
        overlap = [await lexical(rt, q) for q in queries]
        extra = ablations(cands, queries, now)
        fresh = sorted(s for s, r in info.items() if r["updated_at"] >= received - timedelta(days=1))
        if args.redis_url == DEFAULT_REDIS:
            await rt.redis.flushdb()
    print(f"\n{os.cpu_count()} cores; embedder all-MiniLM-L6-v2 (int8 ONNX); RRF k={search.RRF_K}, ", end="")
    print(f"{search.CANDIDATES} candidates per list; clock: received = now = {received:%Y-%m-%d %H:%M} UTC")
    print(f"{len(fresh)} of {len(info)} contexts have no payload timestamp, so they date from receipt and")
    print(f"look fresh to the scorer: {', '.join(fresh)}")
    report(queries, modes, extra, overlap, info, args.verbose)


async def _has_vectors(rt: Runtime) -> bool:
    async with rt.db.connection() as conn:
        return await search.has_vectors(conn)


def main() -> int:
    args = parse_args()
    configure_logging("WARNING", json_logs=False)
    with tempfile.TemporaryDirectory(prefix="hookline-eval-") as tmp:
        anyio.run(run, args, Path(tmp))
    here = Path(__file__).resolve()
    print(f"\nreproduce: bash {ROOT / 'bench/setup_examples.sh'} && {sys.executable} {here}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Search at scale: local embedding throughput, and hybrid search latency over 100,000 contexts.

1. Throughput. ``--distinct`` (5,000) contexts are built from GitHub's webhook examples
   (@octokit/webhooks-examples): each is a copy of one subject's examples (1-8 of its events, its item
   number - or repository or sender name - changed so that every copy is a subject of its own),
   mapped by the GitHub mapper into the text ``index.embedding_texts`` would embed (title, subject,
   summary, newest body lines). LocalEmbedder (all-MiniLM-L6-v2 int8, 2 threads) embeds them in calls
   of ``--batch`` (32) texts.
2. The corpus. ``--contexts`` (100,000) rows are synthesised from those: copy r of base context j has
   j's texts with its number replaced by a new one, and j's vector plus small Gaussian noise,
   renormalised. They are bulk-inserted straight into ``contexts`` with binary COPY, the full-text
   and HNSW indexes dropped first and rebuilt after (same definitions as the migrations'). So the
   latency figures measure PostgreSQL full text + HNSW + fusion and scoring, not embedding (which
   is timed on its own).
3. Latency. ``--queries`` (200) distinct agent questions - the 75 of bench/eval_queries.json and
   generated ones naming items of the corpus - each run once through MemoryService.search_context
   with its query embedding (cold cache: the real LocalEmbedder path), and once with the vector
   computed beforehand; beside them, the parts (text_candidates, vector_candidates, embedding one
   query) and two baselines: a bare ``SELECT 1`` round trip and a bare HNSW top-50 query.
   Each iteration runs every operation once, in a rotating order, so the machine's noise falls on
   all of them alike.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
import orjson
import psycopg
from pgvector.psycopg import register_vector_async
from tokenizers import Tokenizer

from mcp_server.logs import configure_logging
from memory import search
from memory.embed import LocalEmbedder
from memory.embed_cache import embed_query
from memory.ids import context_id, head_key
from memory.mappers.base import mapper_for
from memory.models import MappedEvent
from memory.runtime import Runtime, open_runtime
from memory.service import MemoryService
from memory.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"  # db 14 is reserved for benches: it is flushed
TENANT, SOURCE, PROVIDER = "bench", "github", "github"
MARKER = 100_000  # base context j carries the number MARKER + j; copy i of the corpus MARKER + i
BULK_INDEXES = ("contexts_tsv", "contexts_embedding")  # dropped for the COPY, rebuilt after
WARMUP = 20
EF_SEARCH = 100  # the experiment's hnsw.ef_search: the default 40 caps a top-50 query at 40 rows

Matrix = npt.NDArray[np.float32]
Op = Callable[[int], Awaitable[object]]

COLUMNS = (
    ("tenant", "text"), ("id", "text"), ("source", "text"), ("subject", "text"), ("kind", "text"),
    ("title", "text"), ("summary", "text"), ("body", "text"), ("state", "text"), ("url", "text"),
    ("importance", "real"), ("event_count", "integer"), ("labels", "text[]"), ("head_key", "text"),
    ("created_at", "timestamptz"), ("updated_at", "timestamptz"), ("embedding", "vector"),
    ("embedded_at", "timestamptz"),
)  # fmt: skip

QUESTIONS = (
    "what happened on pull request #{n}?",
    "is issue {n} still open?",
    "who commented on #{n} and what did they say?",
    "did the checks pass for PR {n}?",
    "summarise the conversation in issue #{n}",
    "which reviewers were requested on pull request {n}?",
    "was #{n} merged or closed?",
    "any failing CI on Hello-World-{n}?",
    "what was released in Hello-World-{n}?",
    "what has Codertocat-{n} been doing lately?",
)


@dataclass(frozen=True)
class Template:
    subject: str
    examples: list[tuple[str, bytes]]  # (event type, compact JSON)
    vary: str  # "number", "repo" or "sender"


@dataclass(frozen=True)
class Base:
    """One distinct context, as its index row would hold it (texts carry ``MARKER + j``)."""

    marker: str
    subject: str
    kind: str
    title: str
    summary: str
    body: str
    state: str | None
    url: str | None
    labels: list[str]
    importance: float
    events: int

    @property
    def embedding_text(self) -> str:  # as memory.tiers.index.embedding_texts builds it
        tail = "\n".join(self.body.splitlines()[-8:])
        return f"{self.title}\n{self.subject}\n{self.summary}\n{tail}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=2_000, help="contexts really embedded")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32, help="texts per embed call")
    parser.add_argument("--noise", type=float, default=0.02, help="per-dimension sd of the perturbation")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="only the default db is flushed")
    parser.add_argument("--database-url", default="", help="default: embedded PostgreSQL in a temp dir")
    args = parser.parse_args()
    if not 1 <= args.distinct <= args.contexts or args.contexts > 900_000 or args.queries < 1:
        parser.error("need 1 <= --distinct <= --contexts <= 900,000 and --queries >= 1")
    return args


# -- the texts -------------------------------------------------------------------------------------


def load_examples() -> list[tuple[str, dict[str, Any]]]:
    """Every example (installed into .tools by bench/setup_examples.sh when missing)."""
    sys.path.insert(0, str(ROOT))  # the tests package is not installed
    from tests.fixtures.github_examples import load_examples as load

    try:
        return load()
    except FileNotFoundError:
        subprocess.run(["bash", str(ROOT / "bench/setup_examples.sh")], check=True, stdout=sys.stderr)
        return load()


def vary(payload: dict[str, Any], how: str, copy: int) -> dict[str, Any]:
    """The payload as it would be for another pull request, issue, repository or sender."""
    if how == "number":
        for item in (payload, *(v for v in payload.values() if isinstance(v, dict))):
            if isinstance(item.get("number"), int):
                item["number"] = copy
    elif how == "repo":
        repo = payload["repository"]
        repo["name"], repo["full_name"] = f"{repo['name']}-{copy}", f"{repo['full_name']}-{copy}"
    else:
        payload["sender"]["login"] = f"{payload['sender']['login']}-{copy}"
    return payload


def varied(examples: Sequence[tuple[str, bytes]], how: str, copy: int) -> list[MappedEvent] | None:
    """The examples mapped once varied, or None unless they all land on one subject naming ``copy``."""
    mapper = mapper_for(PROVIDER)
    try:
        mapped = [mapper.map(t, vary(orjson.loads(raw), how, copy)) for t, raw in examples]
    except (KeyError, TypeError):  # nothing of that name to vary
        return None
    subjects = {m.subject for m in mapped}
    return mapped if len(subjects) == 1 and str(copy) in subjects.pop() else None


def templates(examples: Sequence[tuple[str, dict[str, Any]]]) -> list[Template]:
    groups: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    mapper = mapper_for(PROVIDER)
    for event_type, payload in examples:
        groups[mapper.map(event_type, payload).subject].append((event_type, orjson.dumps(payload)))
    found = []
    for subject, group in groups.items():
        how = next((h for h in ("number", "repo", "sender") if varied(group, h, MARKER - 1)), None)
        if how is not None:
            found.append(Template(subject, group, how))
    return found


def base_contexts(found: Sequence[Template], n: int, rng: random.Random) -> list[Base]:
    """``n`` copies of templates (weighted by their number of examples), 1-8 events each."""
    bases = []
    for j in range(n):
        template = rng.choices(found, weights=[len(t.examples) for t in found])[0]
        picks = rng.sample(template.examples, min(len(template.examples), rng.randint(1, 8)))
        mapped = varied(picks, template.vary, MARKER + j)
        assert mapped is not None, template.subject
        mapped.sort(key=lambda m: m.occurred_at.timestamp() if m.occurred_at else 0.0)
        head = mapped[-1]
        bases.append(
            Base(
                marker=str(MARKER + j),
                subject=head.subject,
                kind=head.kind,
                title=head.title,
                summary=head.text,
                body="\n".join(m.text for m in mapped),
                state=head.state,
                url=head.url,
                labels=list(head.labels),
                importance=max(m.importance for m in mapped),
                events=len(mapped),
            )
        )
    return bases


def questions(n: int, corpus_size: int, rng: random.Random) -> list[str]:
    """The eval questions, then generated ones naming items of the corpus; all distinct."""
    path = ROOT / "bench/eval_queries.json"
    found = list(dict.fromkeys(q["query"] for q in json.loads(path.read_text())["queries"]))[:n]
    while len(found) < n:
        text = rng.choice(QUESTIONS).format(n=MARKER + rng.randrange(corpus_size))
        if text not in found:
            found.append(text)
    return found


# -- throughput ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    texts: int
    seconds: float
    chars: float  # mean per text
    tokens: float  # mean per text, after the embedder's 256-token cut
    load: tuple[float, float]  # 1-minute load average before and after


async def throughput(embedder: LocalEmbedder, texts: Sequence[str], batch: int) -> tuple[Matrix, Throughput]:
    await embedder.embed(list(texts[:batch]))  # loads the model: not timed
    vectors: list[list[float]] = []
    before, start = os.getloadavg()[0], time.perf_counter()
    for i in range(0, len(texts), batch):
        vectors.extend(await embedder.embed(list(texts[i : i + batch])))
    seconds = time.perf_counter() - start
    tokenizer = Tokenizer.from_str((importlib.resources.files("memory") / "data/tokenizer.json").read_text())
    tokenizer.no_padding()
    tokens = statistics.mean(min(256, len(e.ids)) for e in tokenizer.encode_batch(list(texts)))
    chars = statistics.mean(len(t) for t in texts)
    stats = Throughput(len(texts), seconds, chars, tokens, (before, os.getloadavg()[0]))
    return np.asarray(vectors, dtype=np.float32), stats


# -- the corpus ------------------------------------------------------------------------------------


def corpus_vectors(base: Matrix, n: int, noise: float, seed: int) -> Iterator[Matrix]:
    """Copy r >= 1 of base vector j is j plus N(0, noise^2) per dimension, renormalised; chunks of
    len(base) rows, in corpus order (row i = copy i // len(base) of base i % len(base))."""
    rng = np.random.default_rng(seed)
    yield base
    for start in range(len(base), n, len(base)):
        rows = base[: min(len(base), n - start)]
        moved = rows + rng.standard_normal(rows.shape, dtype=np.float32) * np.float32(noise)
        yield (moved / np.linalg.norm(moved, axis=1, keepdims=True)).astype(np.float32)


def rows(bases: Sequence[Base], n: int, now: datetime, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    """The context rows but their vectors, in corpus order; ages spread over 30 days."""
    for i in range(n):
        b = bases[i % len(bases)]
        new = str(MARKER + i)

        def fix(text: str, old: str = b.marker, new: str = new) -> str:
            return text.replace(old, new).replace("\x00", "\ufffd")

        subject = fix(b.subject)
        updated = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        created = updated - timedelta(seconds=rng.uniform(0, 10 * 86400))
        yield (
            TENANT, context_id(TENANT, subject), SOURCE, subject, b.kind, fix(b.title), fix(b.summary),
            fix(b.body), b.state, b.url, b.importance, b.events, b.labels,
            head_key(int(updated.timestamp() * 1000), f"bench{i}"), created, updated,
        )  # fmt: skip


async def load(
    rt: Runtime, bases: Sequence[Base], vectors: Matrix, args: argparse.Namespace
) -> dict[str, float]:
    """COPY the corpus into ``contexts`` (bulk indexes dropped, then rebuilt); seconds per step."""
    now, rng, steps = datetime.now(UTC), random.Random(args.seed), {}
    async with await psycopg.AsyncConnection.connect(rt.database_url, autocommit=True) as conn:
        await register_vector_async(conn)
        cur = await conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'contexts' AND indexname = ANY(%s)",
            (list(BULK_INDEXES),),
        )
        definitions = {str(name): str(sql) for name, sql in await cur.fetchall()}
        for table in ("events", "contexts", "context_links"):
            await conn.execute(f"DELETE FROM {table} WHERE tenant = %s", (TENANT,))
        for name in definitions:
            await conn.execute(f"DROP INDEX {name}")
        start = time.perf_counter()
        names = ", ".join(name for name, _ in COLUMNS)
        async with (
            conn.cursor() as cur,
            cur.copy(f"COPY contexts ({names}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types([kind for _, kind in COLUMNS])
            chunks = corpus_vectors(vectors, args.contexts, args.noise, args.seed)
            chunk: Matrix = np.empty((0, vectors.shape[1]), dtype=np.float32)
            for i, row in enumerate(rows(bases, args.contexts, now, rng)):
                if i % len(bases) == 0:
                    chunk = next(chunks)
                await copy.write_row((*row, chunk[i % len(bases)], now))
        steps["COPY"] = time.perf_counter() - start
        await conn.execute("SET maintenance_work_mem = '1GB'")  # the HNSW graph is built in memory
        for name, sql in definitions.items():
            start = time.perf_counter()
            await conn.execute(sql)
            steps[f"CREATE INDEX {name}"] = time.perf_counter() - start
        start = time.perf_counter()
        await conn.execute("VACUUM ANALYZE contexts")
        steps["VACUUM ANALYZE"] = time.perf_counter() - start
    return steps


# -- latency ---------------------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(len(ordered) * p / 100) - 1))]


def operations(service: MemoryService, texts: Sequence[str], vectors: Sequence[list[float]]) -> dict[str, Op]:
    rt = service.rt
    literal = [search.to_pgvector(v) for v in vectors]
    filters = search.Filters()

    async def select_one(_: int) -> object:
        async with rt.db.connection() as conn:
            return await (await conn.execute("SELECT 1")).fetchone()

    async def bare_hnsw(i: int) -> object:
        async with rt.db.connection() as conn:
            sql = "SELECT id FROM contexts ORDER BY embedding <=> %s::vector LIMIT 50"
            return await (await conn.execute(sql, (literal[i],))).fetchall()

    async def text_only(i: int) -> object:
        async with rt.db.connection() as conn:
            return await search.text_candidates(conn, TENANT, texts[i], filters)

    async def vector_only(i: int) -> object:
        async with rt.db.connection() as conn:
            return await search.vector_candidates(conn, TENANT, vectors[i], filters)

    async def hybrid_given_vector(i: int) -> object:
        async def known(tenant: str, query: str) -> list[float]:
            return vectors[i]

        service._query_vector = known  # type: ignore[method-assign]  # the vector is computed already
        try:
            return await service.search_context(TENANT, texts[i], limit=10)
        finally:
            del service._query_vector

    async def hybrid(i: int) -> object:
        return await service.search_context(TENANT, texts[i], limit=10)

    assert rt.embedder is not None
    embedder = rt.embedder
    return {
        "baseline SELECT 1 (pool round trip)": select_one,
        "baseline bare HNSW top-50 (no filter)": bare_hnsw,
        "search.text_candidates (full text, 50)": text_only,
        "search.vector_candidates (HNSW, 50)": vector_only,
        "search_context, query vector given": hybrid_given_vector,
        "search_context incl. query embedding": hybrid,
        "embedding one query (cached embedder, miss)": lambda i: embed_query(
            embedder, TENANT, f"{texts[i]} ?"
        ),
    }


# What search.text_candidates does, with its OR-of-the-terms tsquery; search._COLUMNS is what it reads.
OR_QUERY = "nullif(replace(plainto_tsquery('english', %(query)s)::text, '&', '|'), '')::tsquery"
AND_TERMS = "experiment: full text, AND of the terms"
AND_ENOUGH = 5  # AND-first falls back to the OR when the AND finds fewer
EXPERIMENTS = {
    AND_TERMS: f"""
        WITH q AS (SELECT nullif(plainto_tsquery('english', %(query)s)::text, '')::tsquery AS t)
        SELECT {search._COLUMNS}, ts_rank_cd(tsv, q.t, 32) AS rank FROM contexts, q
        WHERE tenant = %(tenant)s AND tsv @@ q.t ORDER BY rank DESC, updated_at DESC LIMIT 50""",
    "experiment: full text, OR, 1,000 newest ranked": f"""
        WITH q AS (SELECT {OR_QUERY} AS t),
        m AS (SELECT id FROM contexts, q WHERE tenant = %(tenant)s AND tsv @@ q.t
              ORDER BY updated_at DESC LIMIT 1000)
        SELECT {search._COLUMNS}, ts_rank_cd(tsv, q.t, 32) AS rank FROM contexts JOIN m USING (id), q
        WHERE tenant = %(tenant)s ORDER BY rank DESC, updated_at DESC LIMIT 50""",
}


def experiments(rt: Runtime, texts: Sequence[str], vectors: Sequence[list[float]]) -> dict[str, Op]:
    """Variants of the two candidate queries (in this file only), for what a change would buy."""

    def sql_op(sql: str) -> Op:
        async def op(i: int) -> object:
            async with rt.db.connection() as conn:
                return await (await conn.execute(sql, {"tenant": TENANT, "query": texts[i]})).fetchall()

        return op

    async def wider_hnsw(i: int) -> object:
        async with rt.db.connection() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL hnsw.ef_search = {EF_SEARCH}")
            return await search.vector_candidates(conn, TENANT, vectors[i], search.Filters())

    async def and_first(i: int) -> object:
        async with rt.db.connection() as conn:
            sql, params = EXPERIMENTS[AND_TERMS], {"tenant": TENANT, "query": texts[i]}
            found = await (await conn.execute(sql, params)).fetchall()
            if len(found) >= AND_ENOUGH:
                return found
            return await search.text_candidates(conn, TENANT, texts[i], search.Filters())

    ops = {name: sql_op(sql) for name, sql in EXPERIMENTS.items()}
    ops[f"experiment: full text AND, the OR if < {AND_ENOUGH} found"] = and_first
    return ops | {f"experiment: vector_candidates, ef_search {EF_SEARCH}": wider_hnsw}


async def measure(ops: dict[str, Op], count: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds per call; query i (after ``warmup`` untimed ones) runs through every op once, in
    a rotating order. Every query text is new to the embedding cache when it is first timed."""
    names, times = list(ops), {name: list[float]() for name in ops}
    for i in range(count):
        turn = i % len(names)
        for name in names[turn:] + names[:turn]:
            start = time.perf_counter_ns()
            await ops[name](i)
            if i >= warmup:
                times[name].append((time.perf_counter_ns() - start) / 1e6)
    return times


async def matches(rt: Runtime, texts: Sequence[str], any_term: bool) -> list[int]:
    """How many contexts each query's OR-tsquery (or AND-tsquery) matches: what ts_rank_cd ranks."""
    counts = []
    tsquery = OR_QUERY if any_term else "plainto_tsquery('english', %(query)s)"
    async with rt.db.connection() as conn:
        for text in texts:
            cur = await conn.execute(
                f"SELECT count(*) FROM contexts WHERE tenant = %(tenant)s AND tsv @@ {tsquery}",
                {"tenant": TENANT, "query": text},
            )
            row = await cur.fetchone()
            counts.append(int(row[0]) if row else 0)
    return counts


async def rows_returned(rt: Runtime, vectors: Sequence[list[float]], ef_search: int | None) -> list[int]:
    """How many rows vector_candidates (LIMIT 50) gives, at the default or a given hnsw.ef_search."""
    found = []
    for vector in vectors:
        async with rt.db.connection() as conn, conn.transaction():
            if ef_search is not None:
                await conn.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
            found.append(len(await search.vector_candidates(conn, TENANT, vector, search.Filters())))
    return found


async def describe(rt: Runtime) -> str:
    async with rt.db.connection() as conn:
        cur = await conn.execute(
            "SELECT current_setting('server_version'), (SELECT extversion FROM pg_extension "
            "WHERE extname = 'vector'), current_setting('hnsw.ef_search'), "
            "pg_size_pretty(pg_relation_size('contexts_embedding')), "
            "pg_size_pretty(pg_relation_size('contexts_tsv')), "
            "pg_size_pretty(pg_total_relation_size('contexts')), current_setting('shared_buffers')"
        )
        row = await cur.fetchone()
    assert row is not None
    pg, vector, ef, hnsw, gin, total, shared = row
    return (
        f"PostgreSQL {pg}, pgvector {vector} (hnsw.ef_search {ef}), shared_buffers {shared}; "
        f"contexts {total} with indexes (HNSW {hnsw}, GIN {gin})"
    )


# -- the run ---------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, tmp: Path) -> None:
    rng = random.Random(args.seed)
    started = time.perf_counter()
    found = templates(load_examples())
    bases = base_contexts(found, args.distinct, rng)
    texts = [b.embedding_text for b in bases]
    assert len(set(texts)) == len(texts), "the base texts are not distinct"
    embedder = LocalEmbedder(threads=2, batch_size=args.batch)
    print(f"embedding {len(texts):,} distinct context texts ...", file=sys.stderr, flush=True)
    base_vectors, embed = await throughput(embedder, texts, args.batch)
    asked = questions(args.queries + WARMUP, args.contexts, rng)
    rng.shuffle(asked)
    # The "vector given" runs' vectors (this embedder is not the runtime's, whose cache stays cold).
    query_matrix, short = await throughput(embedder, asked, args.batch)
    query_vectors: list[list[float]] = query_matrix.tolist()

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
        print(f"loading {args.contexts:,} contexts ...", file=sys.stderr, flush=True)
        steps = await load(rt, bases, base_vectors, args)
        service = MemoryService(rt)
        if rt.embedder is not None:
            await rt.embedder.embed(["warm up the model"])
        print(f"timing {args.queries} queries ...", file=sys.stderr, flush=True)
        ops = operations(service, asked, query_vectors) | experiments(rt, asked, query_vectors)
        times = await measure(ops, len(asked), WARMUP)
        counts = await matches(rt, asked[WARMUP:], any_term=True)
        strict = await matches(rt, asked[WARMUP:], any_term=False)
        returned = (
            await rows_returned(rt, query_vectors[WARMUP:], None),
            await rows_returned(rt, query_vectors[WARMUP:], EF_SEARCH),
        )
        info = await describe(rt)
        if args.redis_url == DEFAULT_REDIS:
            await rt.redis.flushdb()

    matched = (counts, strict)
    report(args, len(found), texts, (embed, short), steps, times, matched, returned, asked[WARMUP:], info)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def report(
    args: argparse.Namespace,
    n_templates: int,
    texts: Sequence[str],
    embedding: tuple[Throughput, Throughput],
    steps: dict[str, float],
    times: dict[str, list[float]],
    matched: tuple[list[int], list[int]],
    returned: tuple[list[int], list[int]],
    asked: Sequence[str],
    info: str,
) -> None:
    print(f"\n{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {info}")
    print(f"\nembedding (all-MiniLM-L6-v2 int8, 2 onnxruntime threads), calls of {args.batch} texts:")
    what = (f"context texts ({n_templates} templates)", "query texts")
    for name, e in zip(what, embedding, strict=True):
        rate = e.texts / e.seconds
        print(
            f"  {e.texts:,} distinct {name}, mean {e.chars:.0f} chars / {e.tokens:.0f} tokens (256 max): "
            f"{rate:,.1f} texts/s, {rate * e.tokens:,.0f} tokens/s ({e.seconds:.1f} s; load average "
            f"{e.load[0]:.1f} before, {e.load[1]:.1f} after)"
        )
    copies = math.ceil(args.contexts / args.distinct)
    print(
        f"corpus: {args.contexts:,} contexts = {args.distinct:,} embedded x {copies} copies (numbers varied, "
        f"vectors + N(0, {args.noise}^2) noise, renormalised), COPY'd: "
        + ", ".join(f"{name} {s:.1f} s" for name, s in steps.items())
    )
    print(
        f"\n{args.queries} distinct queries (each op once per query, rotating order); milliseconds. The "
        "search figures measure PostgreSQL FTS + HNSW + fusion/scoring; embedding the query is its own row."
    )
    select_one = statistics.median(times["baseline SELECT 1 (pool round trip)"])
    hnsw = statistics.median(times["baseline bare HNSW top-50 (no filter)"])
    print(f"{'operation':<46}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'p50/SELECT 1':>14}{'p50/HNSW':>10}")
    for name, values in times.items():
        p50 = statistics.median(values)
        print(
            f"{name:<46}{p50:>8.2f}{pct(values, 95):>8.2f}{pct(values, 99):>8.2f}{max(values):>8.2f}"
            f"{p50 / select_one:>13.1f}x{p50 / hnsw:>9.1f}x"
        )
    full = times["search_context incl. query embedding"]
    given = times["search_context, query vector given"]
    for name, values in (("incl. query embedding", full), ("query vector given", given)):
        verdict = "meets" if pct(values, 95) <= 50 else "misses"
        print(f"target p95 <= 50 ms, search_context {name}: {pct(values, 95):.1f} ms -> {verdict} it")
    counts, strict = matched
    enough = sum(n >= AND_ENOUGH for n in strict)
    print(
        f"\nAND of the terms: median {statistics.median(strict):,.0f} matches, >= {AND_ENOUGH} for {enough} "
        f"of {len(strict)} queries (the others would fall back to the OR)"
    )
    print(
        f"full-text matches per query (rows ts_rank_cd ranks): median {statistics.median(counts):,.0f}, "
        f"p95 {pct(counts, 95):,}, max {max(counts):,} of {args.contexts:,}"
    )
    plain, wide = returned
    print(
        f"vector_candidates (LIMIT {search.CANDIDATES}) returned {min(plain)}-{max(plain)} rows at the "
        f"default hnsw.ef_search, {min(wide)}-{max(wide)} at ef_search {EF_SEARCH}"
    )
    slowest = sorted(range(len(given)), key=lambda i: -given[i])[:5]
    print("slowest queries (search_context, vector given): " + "; ".join(
        f"{given[i]:.0f} ms {asked[i]!r} ({counts[i]:,} matches)" for i in slowest
    ))  # fmt: skip
    if len(given) >= 10:
        ranked = sorted(zip(counts, given, strict=True))
        few, many = ranked[: len(ranked) // 2], ranked[len(ranked) // 2 :]
        low, high = statistics.median(g for _, g in few), statistics.median(g for _, g in many)
        print(f"median latency, queries matching <= {few[-1][0]:,} rows: {low:.1f} ms; more: {high:.1f} ms")


def main() -> int:
    args = parse_args()
    configure_logging("WARNING", json_logs=False)
    with tempfile.TemporaryDirectory(prefix="hookline-search-") as tmp:
        anyio.run(run, args, Path(tmp))
    command = " ".join([sys.executable, "bench/search.py", *sys.argv[1:]])
    print(f"reproduce: bash bench/setup_examples.sh && {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

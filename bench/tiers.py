"""Tiers: bytes per context and read latency in each tier, transition rates, warm compression.

N contexts are built from GitHub's real webhook examples (@octokit/webhooks-examples): the examples
are grouped by the subject the mapper gives them, and each context is a copy of one group (a few of
its events, with the item number - or, for subjects without one, the repository or sender name -
changed so that every copy is a subject of its own). They go in through MemoryService.apply_events,
then the lifecycle moves them hot -> warm -> cold with a clock set far enough ahead, and every tier is
measured on the way: its size, and get_context timed in-process beside raw Redis reads of values of
the same size (the baseline, which keeps the figures comparable on a busy machine).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import orjson
import zstandard

from mcp_server.logs import configure_logging
from memory import keys
from memory.lifecycle import Lifecycle, PassReport, touch
from memory.mappers.base import mapper_for
from memory.models import Event
from memory.runtime import Runtime, open_runtime
from memory.service import MemoryService
from memory.settings import load_settings
from memory.tiers import cold, document, warm

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"  # db 14 is reserved for benches: it is flushed
TENANT, SOURCE, PROVIDER = "bench", "gh", "github"
HOT_TTL, WARM_TTL = timedelta(hours=2), timedelta(hours=24)
NUMBER_BASE = 100_000  # item numbers of the copies: far from the examples' own
BASELINE = "bench:baseline"  # the baseline's own keys (not Hookline's)
BATCH = 100  # events per apply_events call, as a worker's batch

Op = Callable[[str], Awaitable[object]]


@dataclass(frozen=True)
class Template:
    """The examples the mapper puts in one context, and how to make a new subject of a copy."""

    subject: str
    examples: list[tuple[str, bytes]]  # (event type, compact JSON)
    vary: str  # "number", "repo" or "sender"


@dataclass
class Sizes:
    kind: str
    events: int
    raw: int  # document.encode(head, events), what the warm tier compresses
    hot_mem: int  # MEMORY USAGE of the ctx and events hashes
    warm: int = 0  # STRLEN of the warm key
    warm_mem: int = 0  # MEMORY USAGE of the warm key and the ctx hash
    warm_dict: int = 0
    plain: int = 0  # zstd level 9 without a dictionary, on the same document
    archive: int = 0  # the cold archive in the blob store
    cold_mem: int = 0  # MEMORY USAGE of the ctx hash left in Redis


@dataclass(frozen=True)
class Drain:
    moved: int
    passes: int
    seconds: float
    dictionaries: list[int]
    skipped: int
    repaired: int
    longest: float  # seconds of the slowest pass


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, default=1000, help="contexts to build (default 1,000)")
    parser.add_argument("--iterations", type=int, default=2000, help="timed reads per measurement")
    parser.add_argument("--restores", type=int, default=300, help="cold contexts read with restore=True")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="only the default db is flushed")
    parser.add_argument("--database-url", default="", help="default: embedded PostgreSQL in a temp dir")
    args = parser.parse_args()
    if min(args.contexts, args.iterations, args.restores) < 1:
        parser.error("--contexts, --iterations and --restores must be at least 1")
    return args


# -- the workload ----------------------------------------------------------------------------------


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
                item["number"] = NUMBER_BASE + copy
    elif how == "repo":
        repo = payload["repository"]
        repo["name"], repo["full_name"] = f"{repo['name']}-{copy}", f"{repo['full_name']}-{copy}"
    else:
        payload["sender"]["login"] = f"{payload['sender']['login']}-{copy}"
    return payload


def subjects(examples: Sequence[tuple[str, bytes]], how: str, copy: int) -> set[str]:
    """The subjects the mapper gives the examples once varied (none if they cannot be)."""
    mapper = mapper_for(PROVIDER)
    found = set()
    for event_type, raw in examples:
        try:
            found.add(mapper.map(event_type, vary(orjson.loads(raw), how, copy)).subject)
        except (KeyError, TypeError):  # nothing of that name to vary
            return set()
    return found


def templates(examples: Sequence[tuple[str, dict[str, Any]]]) -> tuple[list[Template], int]:
    """The examples grouped by subject; a group is kept if some variation gives each copy one
    subject of its own. Returns the templates and the number of examples left out."""
    groups: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    mapper = mapper_for(PROVIDER)
    for event_type, payload in examples:
        groups[mapper.map(event_type, payload).subject].append((event_type, orjson.dumps(payload)))
    found, dropped = [], 0
    for subject, group in groups.items():
        for how in ("number", "repo", "sender"):
            one, two = subjects(group, how, 1), subjects(group, how, 2)
            if len(one) == 1 and len(two) == 1 and len({subject, *one, *two}) == 3:
                found.append(Template(subject, group, how))
                break
        else:
            dropped += len(group)
    return found, dropped


def plan(found: Sequence[Template], contexts: int, rng: random.Random) -> list[Event]:
    """``contexts`` copies of templates (weighted by their number of examples), 3-12 events each
    (fewer when the group has fewer examples), shuffled as deliveries of many subjects interleave."""
    events = []
    received = datetime.now(UTC)
    for copy in range(1, contexts + 1):
        template = rng.choices(found, weights=[len(t.examples) for t in found])[0]
        picks = rng.sample(template.examples, min(len(template.examples), rng.randint(3, 12)))
        for n, (event_type, raw) in enumerate(picks):
            payload = vary(orjson.loads(raw), template.vary, copy)
            events.append(Event(f"gh:{copy}:{n}", TENANT, SOURCE, PROVIDER, event_type, received, payload))
    rng.shuffle(events)
    return events


# -- measuring -------------------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(len(ordered) * p / 100) - 1))] if ordered else 0.0


async def measure(ops: dict[str, Op], ids: Sequence[str], iterations: int) -> dict[str, list[float]]:
    """Milliseconds per call of each op, interleaved (each iteration runs every op once, in a rotating
    order) so that the machine's noise falls on all of them alike."""
    names = list(ops)
    for ctx_id in ids[:20]:  # warm up scripts, dictionaries and pools
        for name in names:
            await ops[name](ctx_id)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(iterations):
        ctx_id, turn = ids[i % len(ids)], i % len(names)
        for name in names[turn:] + names[:turn]:
            start = time.perf_counter_ns()
            await ops[name](ctx_id)
            times[name].append((time.perf_counter_ns() - start) / 1e6)
    return times


async def each_once(op: Op, ids: Sequence[str]) -> list[float]:
    times = []
    for ctx_id in ids:
        start = time.perf_counter_ns()
        await op(ctx_id)
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def get_in(service: MemoryService, tier: str, restore: bool = False) -> Op:
    async def op(ctx_id: str) -> object:
        found = await service.get_context(TENANT, ctx_id, restore=restore)
        if found.head.tier != tier:
            raise AssertionError(f"{ctx_id} answered from tier {found.head.tier!r}, not {tier!r}")
        return found

    return op


async def drain(lifecycle: Lifecycle, now: datetime, field: str) -> Drain:
    """Passes at ``now`` until one moves nothing (a pass takes at most 200 contexts per tier)."""
    reports: list[PassReport] = []
    durations: list[float] = []
    start = time.perf_counter()
    while not reports or getattr(reports[-1], field) or reports[-1].skipped or reports[-1].repaired:
        began = time.perf_counter()
        reports.append(await lifecycle.run_pass(now))
        durations.append(time.perf_counter() - began)
        if len(reports) > 1000:
            raise RuntimeError(f"the lifecycle does not settle: {reports[-1].as_dict()}")
    seconds = time.perf_counter() - start
    moved = sum(getattr(r, field) for r in reports)
    other = "to_cold" if field == "to_warm" else "to_warm"
    if any(getattr(r, other) for r in reports):
        raise RuntimeError(f"a pass at {now} also moved contexts {other}: the clock is wrong")
    trained = [d for r in reports for d in r.dictionaries]
    return Drain(
        moved,
        len(reports),
        seconds,
        trained,
        sum(r.skipped for r in reports),
        sum(r.repaired for r in reports),
        max(durations),
    )


async def memory(rt: Runtime, *names: str) -> int:
    async with rt.redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.memory_usage(name, samples=0)
        return sum(int(n or 0) for n in await pipe.execute())


# -- the run ---------------------------------------------------------------------------------------


async def ingest(service: MemoryService, events: Sequence[Event]) -> float:
    start = time.perf_counter()
    for i in range(0, len(events), BATCH):
        rejected = await service.apply_events(events[i : i + BATCH])
        if rejected:
            raise RuntimeError(f"{len(rejected)} events were rejected: {rejected[0].reason}")
    elapsed = time.perf_counter() - start
    # What autovacuum would soon do after a bulk load: measure reads in the steady state, not during it.
    async with service.rt.db.connection() as conn:
        await conn.execute("VACUUM ANALYZE events, contexts")
    return elapsed


async def context_ids(rt: Runtime) -> list[str]:
    async with rt.db.connection() as conn:
        cur = await conn.execute("SELECT id FROM contexts WHERE tenant = %s ORDER BY id", (TENANT,))
        return [str(row[0]) for row in await cur.fetchall()]


async def hot_sizes(service: MemoryService, ids: Sequence[str]) -> tuple[dict[str, Sizes], dict[str, bytes]]:
    sizes, docs = {}, {}
    for ctx_id in ids:
        head, events, _ = await service.hot.read_raw(TENANT, ctx_id)
        docs[ctx_id] = raw = document.encode(head, events)
        mem = await memory(service.rt, keys.context(TENANT, ctx_id), keys.context_events(TENANT, ctx_id))
        sizes[ctx_id] = Sizes(head.get("kind", "?"), len(events), len(raw), mem)
        sizes[ctx_id].plain = len(zstandard.ZstdCompressor(level=warm.LEVEL).compress(raw))
    return sizes, docs


async def copy_baseline(service: MemoryService, sample: Sequence[str], docs: dict[str, bytes]) -> None:
    """Values of the same size as each sampled context's, for the raw Redis baseline."""
    for ctx_id in sample:
        head, events, _ = await service.hot.read_raw(TENANT, ctx_id)
        async with service.rt.redis.pipeline(transaction=False) as pipe:
            pipe.set(f"{BASELINE}:{ctx_id}:doc", docs[ctx_id])
            pipe.hset(f"{BASELINE}:{ctx_id}:head", items=[x for pair in head.items() for x in pair])
            pipe.hset(f"{BASELINE}:{ctx_id}:events", items=[x for pair in events.items() for x in pair])
            await pipe.execute()


def hot_ops(service: MemoryService) -> dict[str, Op]:
    redis = service.rt.redis

    async def read_shape(ctx_id: str) -> object:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(f"{BASELINE}:{ctx_id}:head")
            pipe.hgetall(f"{BASELINE}:{ctx_id}:events")
            pipe.get(f"{BASELINE}:{ctx_id}:none")
            return await pipe.execute()

    return {
        "baseline GET (string of the document's size)": lambda c: redis.get(f"{BASELINE}:{c}:doc"),
        "baseline HGETALL (copy of the events hash)": lambda c: redis.hgetall(f"{BASELINE}:{c}:events"),
        "baseline read_raw's pipeline on copies": read_shape,
        "hot  HotTier.read_raw": lambda c: service.hot.read_raw(TENANT, c),
        "hot  Lifecycle.read (-> Context)": lambda c: service.lifecycle.read(TENANT, c, restore=False),
        "hot  get_context": get_in(service, "hot"),
        "hot  touch (get_context's access UPDATE)": lambda c: touch(service.rt, TENANT, [c]),
    }


async def warm_sizes(
    rt: Runtime, sizes: dict[str, Sizes], docs: dict[str, bytes], codec: warm.WarmCodec
) -> int:
    """Fill in the warm figures; returns how many warm blobs decompress to the hot document."""
    same = 0
    for ctx_id, size in sizes.items():
        blob = await rt.redis.get(keys.context_warm(TENANT, ctx_id))
        dict_id = await rt.redis.hget(keys.context(TENANT, ctx_id), "warm_dict")
        assert isinstance(blob, bytes), f"{ctx_id} has no warm blob"
        size.warm, size.warm_dict = len(blob), int(dict_id or 0)
        size.warm_mem = await memory(rt, keys.context_warm(TENANT, ctx_id), keys.context(TENANT, ctx_id))
        same += await codec.decompress(size.warm_dict, blob) == docs[ctx_id]
        await rt.redis.set(f"{BASELINE}:{ctx_id}:blob", blob)
    return same


def warm_ops(service: MemoryService) -> dict[str, Op]:
    redis, codec = service.rt.redis, service.lifecycle.codec

    async def raw_read(ctx_id: str) -> bytes:
        head, _, blob = await service.hot.read_raw(TENANT, ctx_id)
        assert blob is not None
        return await codec.decompress(int(head["warm_dict"]), blob)

    return {
        "baseline GET (string of the warm blob's size)": lambda c: redis.get(f"{BASELINE}:{c}:blob"),
        "warm read_raw + zstd decompress": raw_read,
        "warm Lifecycle.read (-> Context)": lambda c: service.lifecycle.read(TENANT, c, restore=False),
        "warm get_context": get_in(service, "warm"),
    }


async def cold_sizes(rt: Runtime, sizes: dict[str, Sizes], docs: dict[str, bytes]) -> int:
    same = 0
    for ctx_id, size in sizes.items():
        key = await rt.redis.hget(keys.context(TENANT, ctx_id), "archive_key")
        assert isinstance(key, bytes), f"{ctx_id} has no archive"
        archived = await rt.blobs.get(key.decode())
        size.archive = len(archived)
        size.cold_mem = await memory(rt, keys.context(TENANT, ctx_id))
        same += await cold.restore(rt.blobs, key.decode()) == docs[ctx_id]
    return same


def cold_ops(service: MemoryService) -> dict[str, Op]:
    async def select_one(_: str) -> object:
        async with service.rt.db.connection() as conn:
            return await (await conn.execute("SELECT 1")).fetchone()

    return {"baseline PostgreSQL SELECT 1": select_one, "cold get_context (summary)": get_in(service, "cold")}


@dataclass(frozen=True)
class Pool:
    """The source's zstd sample pool (kept in Redis for the next retraining)."""

    samples: int
    data: int  # bytes of the samples
    memory: int  # MEMORY USAGE of the pool key
    training_s: float  # one retraining on it, as a pass does it


async def sample_pool(rt: Runtime) -> Pool:
    """Measure the pool, then retrain on it the way a pass does (inside run_pass, on the event loop)."""
    name = keys.zstd_sample_pool(SOURCE)
    pool = [s for s in await rt.redis.lrange(name, 0, -1) if isinstance(s, bytes)]
    used = await memory(rt, name)
    start = time.perf_counter()
    await warm.WarmCodec(rt.redis).train(SOURCE, pool)
    return Pool(len(pool), sum(len(s) for s in pool), used, time.perf_counter() - start)


async def check_empty(rt: Runtime, args: argparse.Namespace) -> None:
    """Flush the bench db; refuse anyone else's data (a pass would demote their contexts too)."""
    if args.redis_url == DEFAULT_REDIS:
        await rt.redis.flushdb()
    elif await rt.redis.dbsize():
        sys.exit(f"{args.redis_url} is not empty: give an empty database (only {DEFAULT_REDIS} is flushed)")
    async with rt.db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM contexts WHERE tenant <> %s", (TENANT,))
        if (row := await cur.fetchone()) and row[0]:
            sys.exit("the database holds other tenants' contexts: give an empty one")
        await conn.execute("DELETE FROM events WHERE tenant = %s", (TENANT,))
        await conn.execute("DELETE FROM contexts WHERE tenant = %s", (TENANT,))


async def describe(rt: Runtime, args: argparse.Namespace) -> str:
    info = await rt.redis.info("server")
    async with rt.db.connection() as conn:
        cur = await conn.execute(
            "SELECT current_setting('server_version'), current_setting('fsync'), "
            "current_setting('synchronous_commit')"
        )
        pg = await cur.fetchone()
    pg_info = f"PostgreSQL {pg[0]} (fsync {pg[1]}, synchronous_commit {pg[2]})" if pg else "PostgreSQL"
    return f"Redis {info['redis_version']} at {args.redis_url}; {pg_info} at {rt.database_url}"


async def run(args: argparse.Namespace, tmp: Path) -> None:
    rng = random.Random(args.seed)
    examples = load_examples()
    found, dropped = templates(examples)
    events = plan(found, args.contexts, rng)
    env = {
        "HOOKLINE_DATA_DIR": str(tmp / "data"),
        "HOOKLINE_REDIS_URL": args.redis_url,
        "HOOKLINE_BLOB_URL": (tmp / "blobs").as_uri(),
        "HOOKLINE_LOG_LEVEL": "warning",
        "HOOKLINE_HOT_TTL": f"{HOT_TTL.seconds}s",
        "HOOKLINE_WARM_TTL": f"{WARM_TTL.days}d",
    }
    env |= {"HOOKLINE_DATABASE_URL": args.database_url} if args.database_url else {}
    settings = load_settings(env)
    started = time.perf_counter()
    async with open_runtime(settings) as rt:
        print(f"runtime open in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        await check_empty(rt, args)
        service = MemoryService(rt)

        async def no_prewarm(tenant: str, agent: str, ctx_id: str) -> list[str]:
            return []

        # The bench reads the same sample in the same order many times: the pre-warmer would learn
        # that pattern and warm the "cold" contexts ahead of their reads, measuring warm reads.
        service.prewarmer.after_read = no_prewarm  # type: ignore[method-assign]
        ingest_s = await ingest(service, events)
        now = datetime.now(UTC)
        ids = await context_ids(rt)
        sample = rng.sample(ids, min(len(ids), 200))
        print(
            f"ingested {len(events):,} events into {len(ids):,} contexts in {ingest_s:.1f} s", file=sys.stderr
        )
        if len(ids) != args.contexts:
            raise RuntimeError(f"{args.contexts} contexts were planned but {len(ids)} were made")

        sizes, docs = await hot_sizes(service, ids)
        await copy_baseline(service, sample, docs)
        latency = await measure(hot_ops(service), sample, args.iterations)

        # Hot contexts idle at most 2 h x 3 (importance 1.0); warm ones at least 24 h: 7 h moves only hot.
        to_warm = await drain(service.lifecycle, now + 3 * HOT_TTL + timedelta(hours=1), "to_warm")
        warm_same = await warm_sizes(rt, sizes, docs, service.lifecycle.codec)
        latency |= await measure(warm_ops(service), sample, args.iterations)

        to_cold = await drain(service.lifecycle, now + 3 * WARM_TTL + timedelta(days=1), "to_cold")
        cold_same = await cold_sizes(rt, sizes, docs)
        latency |= await measure(cold_ops(service), sample, args.iterations)
        # Each restore moves its context to warm: one call per cold context.
        restored = rng.sample(ids, min(len(ids), args.restores))
        latency["cold get_context(restore=True)"] = await each_once(get_in(service, "warm", True), restored)
        pool = await sample_pool(rt)
        dict_ids = {s.warm_dict for s in sizes.values()} | set(to_warm.dictionaries)
        dict_sizes = {d: int(await rt.redis.strlen(keys.zstd_dictionary(d))) for d in dict_ids if d}
        runtime_info = await describe(rt, args)
        if args.redis_url == DEFAULT_REDIS:
            await rt.redis.flushdb()  # tens of MB (the sample pool, the baseline copies): not left behind

    print_report(args, len(examples), len(found), dropped, len(events), ingest_s, runtime_info)
    print_sizes(sizes)
    print_mix(sizes)
    print_dictionaries(sizes, dict_sizes, to_warm, pool)
    print(
        f"lossless: {warm_same}/{len(sizes)} warm blobs and {cold_same}/{len(sizes)} archives decode to "
        "the hot document byte for byte"
    )
    print_transitions(to_warm, to_cold, pool)
    print_latency(latency)


# -- the report ------------------------------------------------------------------------------------


def kb(n: float) -> str:
    return f"{n / 1024:,.1f}"


def saving(part: int, whole: int) -> str:
    return f"{100 * (1 - part / whole):.1f}%" if whole else "-"


def print_report(
    args: argparse.Namespace,
    n_examples: int,
    n_templates: int,
    dropped: int,
    n_events: int,
    ingest_s: float,
    runtime_info: str,
) -> None:
    print(f"\n{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {runtime_info}")
    print(
        f"{n_examples} GitHub examples -> {n_templates} subject groups (examples of {dropped} left out: "
        "their subject cannot be varied)"
    )
    print(
        f"{args.contexts:,} contexts, {n_events:,} events (source {SOURCE!r}, tenant {TENANT!r}); "
        f"apply_events {n_events / ingest_s:,.0f} events/s in batches of {BATCH}"
    )


def print_sizes(sizes: dict[str, Sizes]) -> None:
    rows = [
        ("hot", "raw document (document.encode of read_raw)", [s.raw for s in sizes.values()]),
        ("hot", "MEMORY USAGE ctx + events hashes", [s.hot_mem for s in sizes.values()]),
        ("warm", "STRLEN warm key", [s.warm for s in sizes.values()]),
        ("warm", "MEMORY USAGE warm key + ctx hash", [s.warm_mem for s in sizes.values()]),
        (
            "cold",
            f"archive in the blob store (zstd {cold.LEVEL}, no dict)",
            [s.archive for s in sizes.values()],
        ),
        ("cold", "MEMORY USAGE ctx hash left in Redis", [s.cold_mem for s in sizes.values()]),
    ]
    print(f"\nbytes per context{'':<34}{'mean':>10}{'median':>10}{'p99':>10}{'total MB':>10}")
    for tier, what, values in rows:
        print(
            f"{tier:<5} {what:<45}{statistics.mean(values):>10,.0f}{statistics.median(values):>10,.0f}"
            f"{pct(values, 99):>10,.0f}{sum(values) / 2**20:>10.1f}"
        )


def print_mix(sizes: dict[str, Sizes]) -> None:
    by_kind: dict[str, list[Sizes]] = defaultdict(list)
    for size in sizes.values():
        by_kind[size.kind].append(size)
    rows = [(f"all (source {SOURCE!r})", list(sizes.values()))]
    rows += sorted(by_kind.items(), key=lambda kv: -len(kv[1]))
    print(f"\nwarm saving 1 - warm/raw (goal >= 85%), by context kind{'':<8}raw KB  warm KB   plain zstd9")
    print(
        f"{'kind':<24}{'contexts':>9}{'events':>8}{'mean':>9}{'mean':>9}{'saving':>9}{'saving':>9}"
        f"{'cold KB':>9}"
    )
    for kind, group in rows:
        raw, warm_b = sum(s.raw for s in group), sum(s.warm for s in group)
        plain, archive = sum(s.plain for s in group), sum(s.archive for s in group)
        events = sum(s.events for s in group) / len(group)
        print(
            f"{kind:<24}{len(group):>9,}{events:>8.1f}{kb(raw / len(group)):>9}{kb(warm_b / len(group)):>9}"
            f"{saving(warm_b, raw):>9}{saving(plain, raw):>9}{kb(archive / len(group)):>9}"
        )


def print_dictionaries(
    sizes: dict[str, Sizes], dict_sizes: dict[int, int], to_warm: Drain, pool: Pool
) -> None:
    print(
        f"\nzstd dictionaries of source {SOURCE!r}, in the order the hot->warm passes trained them; "
        "warm blobs by the dictionary they were compressed with:"
    )
    print(
        f"{'dict id':>12}{'dict KB':>9}{'contexts':>10}{'raw KB':>10}{'warm KB':>10}{'saving':>9}"
        f"{'plain zstd9':>12}"
    )
    by_dict: dict[int, list[Sizes]] = defaultdict(list)
    for size in sizes.values():
        by_dict[size.warm_dict].append(size)
    order = [0, *to_warm.dictionaries]
    for dict_id, group in sorted(
        by_dict.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99
    ):
        raw, warm_b, plain = (sum(getattr(s, f) for s in group) for f in ("raw", "warm", "plain"))
        name = str(dict_id) if dict_id else "0 (none)"
        print(
            f"{name:>12}{kb(dict_sizes.get(dict_id, 0)):>9}{len(group):>10,}{kb(raw):>10}{kb(warm_b):>10}"
            f"{saving(warm_b, raw):>9}{saving(plain, raw):>12}"
        )
    warm_total = sum(s.warm for s in sizes.values())
    print(
        f"the training pool {keys.zstd_sample_pool(SOURCE)} keeps {pool.samples} samples "
        f"({pool.data / 2**20:.1f} MB, MEMORY USAGE {pool.memory / 2**20:.1f} MB) in Redis; "
        f"all warm blobs together: {warm_total / 2**20:.1f} MB"
    )


def print_transitions(to_warm: Drain, to_cold: Drain, pool: Pool) -> None:
    print(
        f"\n{'transition':<12}{'contexts':>9}{'passes':>8}{'seconds':>9}{'per s':>8}{'ms each':>9}"
        f"{'longest pass s':>16}  notes"
    )
    for name, d in (("hot->warm", to_warm), ("warm->cold", to_cold)):
        notes = f"{len(d.dictionaries)} dictionary trainings" if name == "hot->warm" else "file:// archive"
        notes += f", {d.skipped} skipped, {d.repaired} repaired" if d.skipped or d.repaired else ""
        rate, each = d.moved / d.seconds, 1000 * d.seconds / max(1, d.moved)
        print(
            f"{name:<12}{d.moved:>9,}{d.passes:>8}{d.seconds:>9.2f}{rate:>8,.0f}{each:>9.2f}"
            f"{d.longest:>16.2f}  {notes}"
        )
    print(
        f"a retraining on the pool as it stands ({pool.samples} samples, {pool.data / 2**20:.1f} MB) "
        f"takes {pool.training_s:.2f} s, synchronously inside run_pass"
    )


GOALS = {"hot  HotTier.read_raw": 1.0, "warm read_raw + zstd decompress": 5.0}
BASE_OF = {
    "hot  HotTier.read_raw": "baseline read_raw's pipeline on copies",
    "hot  Lifecycle.read (-> Context)": "baseline read_raw's pipeline on copies",
    "hot  get_context": "baseline read_raw's pipeline on copies",
    "warm read_raw + zstd decompress": "baseline GET (string of the warm blob's size)",
    "warm Lifecycle.read (-> Context)": "baseline GET (string of the warm blob's size)",
    "warm get_context": "baseline GET (string of the warm blob's size)",
    "cold get_context (summary)": "baseline PostgreSQL SELECT 1",
}


def print_latency(latency: dict[str, list[float]]) -> None:
    print(
        "\nlatency in-process, ms (x base: the ratio to the baseline named in BASE_OF, same run, interleaved)"
    )
    print(f"{'read':<48}{'n':>6}{'p50':>8}{'p99':>8}{'p50 x base':>12}{'p99 x base':>12}  goal")
    for name, values in latency.items():
        base = latency.get(BASE_OF.get(name, ""), [])
        ratios = "".join(
            f"{pct(values, p) / pct(base, p):>11.1f}x" if base else f"{'':>12}" for p in (50, 99)
        )
        goal = GOALS.get(name)
        verdict = f"p99 < {goal:g} ms: {'met' if pct(values, 99) < goal else 'MISSED'}" if goal else ""
        print(f"{name:<48}{len(values):>6}{pct(values, 50):>8.2f}{pct(values, 99):>8.2f}{ratios}  {verdict}")


def main() -> int:
    args = parse_args()
    configure_logging("WARNING", json_logs=False)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hookline-tiers-") as tmp:
        anyio.run(run, args, Path(tmp))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    print(f"reproduce: {' '.join([sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

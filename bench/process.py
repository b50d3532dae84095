"""Stream processing: group throughput with one and two worker processes, recovery after ``kill -9``,
and end-to-end latency from POST to a context readable over MCP, at a steady rate.

1. throughput: the streams are pre-filled with N envelopes through the real producer (the
   dedup + XADD script), then ``hookline serve --roles worker`` processes start; each consumer
   group is timed from its first progress until it has read and acknowledged everything.
2. recovery: the same backlog, one worker process, ``kill -9`` once a tenth is applied and a batch
   is in hand, an immediate restart; timed until the dead worker's in-flight entries are done and
   until the whole backlog is drained. Then the exactly-once check (ledger = events = hot tier = N).
3. latency: an api process and a worker process (the layout to deploy for latency); signed
   deliveries at a steady rate over raw HTTP/1.1 keep-alive connections; every k-th delivery opens
   a fresh issue, and its latency is from the POST until MCP ``get_context`` over streamable HTTP
   returns the event (the poll is triggered by the context-update pub/sub message, so the server is
   not flooded with polls), split at that message (the worker's part). Run first without an
   embedder (the baseline: nothing but the pipeline competes for the cores), then with
   ``--embedder``; each reports the CPU each process took and how long the backlog took to drain.

Stores: an embedded Redis (AOF on, unix socket) and an embedded PostgreSQL (pgvector) in a temp dir,
fresh for every phase; or ``--redis-url`` (its database is flushed before every phase, so not db 14
while another bench uses it).

Run it as a module from the repository root, ``.venv/bin/python -m bench.process`` (run as a file,
bench/ingest.py would shadow the ``ingest`` package).
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import anyio
import httpx2
import orjson
import psycopg
import redis.asyncio as aioredis
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import ResponseError

from ingest import envelope
from ingest.stream import StreamProducer, Submission
from memory import keys
from memory.embedded import EmbeddedPostgres, EmbeddedRedis
from memory.ids import context_id
from memory.runtime import run_migrations
from memory.sources import SourceStore

BIN = Path(sys.executable).parent
PARTITIONS = 4
SOURCES = ("bench-a", "bench-b", "bench-c", "bench-d")
TENANT = "default"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="backlog for throughput and recovery")
    parser.add_argument("--subjects", type=int, default=24, help="contexts the backlog is spread over")
    parser.add_argument("--rate", type=float, default=2_000, help="events/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=15, help="length of the latency phase")
    parser.add_argument("--sample-every", type=int, default=100, help="latency sample: every k-th event")
    parser.add_argument("--connections", type=int, default=48, help="HTTP connections in the latency phase")
    parser.add_argument("--embedder", default="local", help="HOOKLINE_EMBEDDER of the workers")
    parser.add_argument("--redis-url", default="", help="default: an embedded Redis; a given one is flushed")
    parser.add_argument("--phases", default="throughput,recovery,latency")
    parser.add_argument(
        "--layouts", default="two,split,apart",
        help="latency layouts: two (api + one worker process), split (api, a context worker, an "
        "index+audit worker whose autogroup is niced to 10), apart (split with intake and mcp processes)",
    )  # fmt: skip
    return parser.parse_args()


# -- stores and processes ------------------------------------------------------------------------


@dataclass
class Stack:
    root: Path
    redis_url: str
    database_url: str
    embedder: str
    secret: str = field(default_factory=lambda: secrets.token_hex(8))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
        env |= {
            "HOOKLINE_DATA_DIR": str(self.root / "data"),
            "HOOKLINE_REDIS_URL": self.redis_url,
            "HOOKLINE_DATABASE_URL": self.database_url,
            "HOOKLINE_PARTITIONS": str(PARTITIONS),
            "HOOKLINE_EMBEDDER": self.embedder,
            "HOOKLINE_LOG_LEVEL": "warning",
            "HOOKLINE_AUTH": "none",  # loopback only: the MCP client of the latency phase sends no token
            "PYTHONWARNINGS": "ignore",
        }
        return env | {f"HOOKLINE_{k.upper()}": v for k, v in extra.items()}


@contextlib.contextmanager
def stack(work: Path, phase: str, args: argparse.Namespace, embedder: str | None = None) -> Iterator[Stack]:
    """Fresh stores for one phase: an embedded PostgreSQL, and an embedded Redis (or an emptied one)."""
    root = work / phase
    root.mkdir()
    embedded = EmbeddedRedis(root)
    if args.redis_url:
        import redis

        with redis.Redis.from_url(args.redis_url) as client:
            client.flushdb()
    redis_url = args.redis_url or embedded.acquire()
    postgres = EmbeddedPostgres(root)
    try:
        url = postgres.acquire()
        run_migrations(url)
        yield Stack(root, redis_url, url, args.embedder if embedder is None else embedder)
    finally:
        postgres.release()
        if not args.redis_url:
            embedded.release()


class Server:
    def __init__(
        self, name: str, roles: str, env: dict[str, str], log_dir: Path, extra: tuple[str, ...] = ()
    ) -> None:
        self.name, self.roles, self.env, self.log = name, roles, env, log_dir / f"{name}.log"
        self.extra = extra
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start and wait for /readyz; returns the seconds it took."""
        started = time.monotonic()
        self.port = free_port()
        argv = [str(BIN / "hookline"), "serve", "--roles", self.roles, "--port", str(self.port), *self.extra]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        while True:
            url = f"http://127.0.0.1:{self.port}/readyz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
                return time.monotonic() - started
            if self.proc.poll() is not None or time.monotonic() - started > 90:
                sys.exit(f"{self.name} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            server.stop()


def free_port() -> int:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


# -- events --------------------------------------------------------------------------------------


def payload(i: int, issue: int, source: str, run: str) -> bytes:
    repo = f"octo/{source}"
    return orjson.dumps({
        "action": "created",
        "issue": {"number": issue, "title": f"Flaky build number {issue}", "state": "open"},
        "comment": {"id": i, "body": f"comment {i} of run {run}", "user": {"login": f"dev{i % 7}"}},
        "repository": {"full_name": repo},
        "sender": {"login": f"dev{i % 7}"},
    })  # fmt: skip


def subject_of(i: int, subjects: int) -> tuple[str, int]:
    """Round-robin over the sources, ``subjects`` issues in all."""
    source = SOURCES[i % len(SOURCES)]
    per_source = max(1, subjects // len(SOURCES))
    return source, (i // len(SOURCES)) % per_source + 1


async def prefill(st: Stack, count: int, subjects: int) -> float:
    """XADD ``count`` envelopes through the producer's dedup + XADD script; returns events/s."""
    redis = aioredis.Redis.from_url(st.redis_url)
    producer = StreamProducer(redis)
    run = secrets.token_hex(4)
    started = time.monotonic()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="producer")
        for chunk in range(0, count, 500):
            async with anyio.create_task_group() as batch:
                for i in range(chunk, min(count, chunk + 500)):
                    batch.start_soon(producer.submit, submission(i, subjects, run))
        tasks.cancel_scope.cancel()
    elapsed = time.monotonic() - started
    await redis.aclose()
    return count / elapsed


def submission(i: int, subjects: int, run: str) -> Submission:
    source, issue = subject_of(i, subjects)
    delivery = f"{run}-{i}"
    partition = keys.partition_of(TENANT, source, PARTITIONS)
    data = envelope.encode(
        envelope.Envelope(TENANT, source, "github", "issue_comment", delivery, f"{source}:{delivery}",
                          datetime.now(UTC), payload(i, issue, source, run))
    )  # fmt: skip
    return Submission(
        keys.dedup_window(partition, TENANT, source, f"{source}:{delivery}"), 3600,
        keys.events_stream(partition), keys.accepted_counter(partition), data,
    )  # fmt: skip


async def add_sources(st: Stack) -> None:
    pool = AsyncConnectionPool(
        st.database_url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)
    for name in SOURCES:
        await SourceStore(pool).add(name, "github", [st.secret], TENANT)
    await pool.close()


# -- progress ------------------------------------------------------------------------------------


async def remaining(redis: aioredis.Redis) -> dict[str, int]:
    """Per group: entries not yet read plus entries read and not acknowledged (missing group: all)."""
    left = dict.fromkeys(keys.GROUPS, 0)
    for partition in range(PARTITIONS):
        stream = keys.events_stream(partition)
        length = int(await redis.xlen(stream))
        try:
            infos = {_text(i["name"]): i for i in await redis.xinfo_groups(stream)}
        except ResponseError:
            infos = {}
        for group in keys.GROUPS:
            info = infos.get(group)
            if info is None:
                left[group] += length
                continue
            lag = info.get("lag")
            if lag is None:  # Redis < 7: count what follows the last delivered entry
                after = f"({_text(info['last-delivered-id'])}"
                lag = len(cast(list[Any], await redis.xrange(stream, after, "+")))
            left[group] += int(lag) + int(info["pending"])
    return left


async def time_drain(redis: aioredis.Redis, total: int, within: float = 900) -> dict[str, float]:
    """Per group, seconds from its first progress until nothing is left; polled every 50 ms."""
    first: dict[str, float] = {}
    done: dict[str, float] = {}
    deadline = time.monotonic() + within
    while len(done) < len(keys.GROUPS):
        now = time.monotonic()
        if now > deadline:
            sys.exit(f"not drained within {within} s: {await remaining(redis)}")
        for group, left in (await remaining(redis)).items():
            if left < total and group not in first:
                first[group] = now
            if left == 0 and group not in done:
                done[group] = now
        await anyio.sleep(0.05)
    return {group: done[group] - first.get(group, done[group]) for group in keys.GROUPS}


async def check_exactly_once(st: Stack, expected: int) -> str:
    async with await psycopg.AsyncConnection.connect(st.database_url) as conn:
        ledger = (await (await conn.execute("SELECT count(*) FROM ledger")).fetchone() or [0])[0]
        events = (await (await conn.execute("SELECT count(*) FROM events")).fetchone() or [0])[0]
    redis = aioredis.Redis.from_url(st.redis_url)
    hot = 0
    async for key in redis.scan_iter(match=f"{keys.ROOT}:{{c:*}}:ctx", count=1000):
        hot += int(await redis.hget(key, "event_count") or 0)
    await redis.aclose()
    ok = ledger == events == hot == expected
    return (
        f"{'OK' if ok else 'MISMATCH'}: ledger {ledger}, events {events}, hot tier {hot}, expected {expected}"
    )


# -- phases --------------------------------------------------------------------------------------


@dataclass
class Figures:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (what, value, note)

    def add(self, what: str, value: str, note: str = "") -> None:
        self.rows.append((what, value, note))
        print(f"  {what}: {value} {note}", flush=True)


async def throughput(work: Path, args: argparse.Namespace, processes: int, figures: Figures) -> None:
    with stack(work, f"throughput-{processes}", args) as st:
        rate = await prefill(st, args.events, args.subjects)
        figures.add("pre-fill through the dedup + XADD script", f"{rate:,.0f} events/s")
        servers = [Server(f"worker-{n}", "worker", st.env(), st.root) for n in range(processes)]
        redis = aioredis.Redis.from_url(st.redis_url)
        with running(*servers):
            async with anyio.create_task_group() as tasks:
                for server in servers:
                    tasks.start_soon(anyio.to_thread.run_sync, server.start)
                timing = await time_drain(redis, args.events)
        await redis.aclose()
        for group in keys.GROUPS:
            figures.add(f"{processes} worker process(es), group {group}",
                        f"{args.events / max(timing[group], 1e-9):,.0f} events/s",
                        f"({args.events:,} in {timing[group]:.1f} s)")  # fmt: skip
        figures.add(f"{processes} worker process(es), check", await check_exactly_once(st, args.events))


async def recovery(work: Path, args: argparse.Namespace, figures: Figures, elsewhere: bool) -> None:
    """``elsewhere``: the worker comes back under another worker id (as on another host), so it
    cannot take the dead one's consumer names back and XAUTOCLAIM must reclaim its entries."""
    how = "restarted elsewhere" if elsewhere else "restarted in place"
    with stack(work, f"recovery-{'elsewhere' if elsewhere else 'in-place'}", args) as st:
        await prefill(st, args.events, args.subjects)
        worker = Server("worker", "worker", st.env(worker_id="bench-a"), st.root)
        redis = aioredis.Redis.from_url(st.redis_url)
        with running(worker):
            await anyio.to_thread.run_sync(worker.start)
            while True:  # a tenth applied, and a batch in hand
                left = await remaining(redis)
                if max(left.values()) < args.events * 0.9 and await in_flight(redis):
                    break
                await anyio.sleep(0.02)
            worker.kill()
            killed = time.monotonic()
            held = await pending_ids(redis)
            backlog = max((await remaining(redis)).values())
            if elsewhere:
                worker.env = st.env(worker_id="bench-b")
            restart_s = await anyio.to_thread.run_sync(worker.start)
            await poll(lambda: done_with(redis, held))
            in_flight_s = time.monotonic() - killed
            await poll(lambda: drained(redis))
            drained_s = time.monotonic() - killed
        await redis.aclose()
        held_n = sum(len(v) for v in held.values())
        figures.add(f"kill -9, {how}: worker ready after", f"{restart_s:.1f} s")
        figures.add(f"kill -9, {how}: in-flight entries done after", f"{in_flight_s:.1f} s",
                    f"({held_n} entries in hand; target <= 30 s)")  # fmt: skip
        figures.add(f"kill -9, {how}: backlog drained after", f"{drained_s:.1f} s",
                    f"(backlog {backlog:,} at the kill)")  # fmt: skip
        figures.add(f"kill -9, {how}: check", await check_exactly_once(st, args.events))


async def poll(condition: Callable[[], Awaitable[bool]], within: float = 900) -> None:
    """Until ``condition`` holds, checking every 50 ms (the other processes do the work)."""
    with anyio.fail_after(within):
        while not await condition():  # noqa: ASYNC110 - the condition lives in another process
            await anyio.sleep(0.05)


async def drained(redis: aioredis.Redis) -> bool:
    return max((await remaining(redis)).values()) == 0


async def done_with(redis: aioredis.Redis, held: dict[tuple[str, str], set[str]]) -> bool:
    return not await still_pending(redis, held)


async def in_flight(redis: aioredis.Redis) -> int:
    total = 0
    for partition in range(PARTITIONS):
        with contextlib.suppress(ResponseError):
            total += sum(int(i["pending"]) for i in await redis.xinfo_groups(keys.events_stream(partition)))
    return total


async def pending_ids(redis: aioredis.Redis) -> dict[tuple[str, str], set[str]]:
    held: dict[tuple[str, str], set[str]] = {}
    for partition in range(PARTITIONS):
        stream = keys.events_stream(partition)
        for group in keys.GROUPS:
            rows = await redis.xpending_range(stream, group, "-", "+", 100_000)
            held[(stream, group)] = {_text(row["message_id"]) for row in rows}
    return held


async def still_pending(redis: aioredis.Redis, held: dict[tuple[str, str], set[str]]) -> bool:
    for (stream, group), ids in held.items():
        if ids:
            lo, hi = min(ids, key=_order), max(ids, key=_order)
            rows = await redis.xpending_range(stream, group, lo, hi, len(ids) + 1000)
            if any(_text(row["message_id"]) in ids for row in rows):
                return True
    return False


def _order(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


# -- latency -------------------------------------------------------------------------------------


class Http:
    """A minimal HTTP/1.1 keep-alive client: a Python client of that speed is what lets 2,000
    requests/s leave this process without taking a core."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def connect(self) -> tuple[anyio.abc.SocketStream, BufferedByteReceiveStream]:
        stream = await anyio.connect_tcp("127.0.0.1", self.port)
        return stream, BufferedByteReceiveStream(stream)

    @staticmethod
    async def post(conn: tuple[anyio.abc.SocketStream, BufferedByteReceiveStream], request: bytes) -> int:
        stream, reader = conn
        await stream.send(request)
        head = await reader.receive_until(b"\r\n\r\n", 65536)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await reader.receive_exactly(length)
        return int(head[9:12])


def request(source: str, secret: str, delivery: str, body: bytes) -> bytes:
    signature = hmac.new(secret.encode(), body, "sha256").hexdigest()
    return (
        f"POST /hooks/{source} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-GitHub-Event: issue_comment\r\nX-GitHub-Delivery: {delivery}\r\n"
        f"X-Hub-Signature-256: sha256={signature}\r\n\r\n"
    ).encode() + body


@dataclass
class Latency:
    posts: list[float] = field(default_factory=list)  # POST answer times (s)
    visible: list[float] = field(default_factory=list)  # POST start -> event in MCP get_context (s)
    announced: list[float] = field(default_factory=list)  # POST start -> the update that showed it (s)
    codes: dict[int, int] = field(default_factory=dict)
    late_s: float = 0.0  # how far the sender fell behind its schedule at worst
    unseen: int = 0


def nice_autogroup(server: Server, nice: int) -> None:
    """Lower a process's CPU share: each server runs in its own session, hence its own autogroup,
    whose weight (not the process's nice value) decides its share against the other sessions."""
    with contextlib.suppress(OSError):  # no autogroup scheduling here: the layout runs unniced
        Path(f"/proc/{server.pid}/autogroup").write_text(str(nice))


async def latency(work: Path, args: argparse.Namespace, figures: Figures, embedder: str, layout: str) -> None:
    """``two``: one ``api`` process (intake and MCP) and one ``worker`` process (the three groups;
    ``context`` first, see ingest/worker.py), the embedder in the worker. ``split``: the ``context``
    group in a worker process of its own, ``index`` and ``audit`` (the embedder) in another, whose
    share of the CPU is lowered, so that embedding waits for the hot tier rather than the reverse.
    ``apart``: as ``split``, with the api's halves apart too: an ``intake`` process takes the POSTs
    and an ``mcp`` process answers the reads, so that no read queues behind deliveries."""
    what = f"{layout}, embedder {embedder!r}"
    with stack(work, f"latency-{layout}-{embedder.replace('/', '_')}", args, embedder) as st:
        await add_sources(st)
        if layout == "apart":
            front = [Server("intake", "intake", st.env(), st.root), Server("mcp", "mcp", st.env(), st.root)]
        else:
            front = [Server("api", "api", st.env(), st.root)]
        if layout in ("split", "apart"):
            workers = [
                Server("context-worker", "worker", st.env(), st.root, ("--groups", "context")),
                Server("index-worker", "worker", st.env(), st.root, ("--groups", "index,audit")),
            ]
        else:
            workers = [Server("worker", "worker", st.env(), st.root)]
        servers = (*front, *workers)
        with running(*servers):
            for server in servers:
                await anyio.to_thread.run_sync(server.start)
            if layout in ("split", "apart"):
                nice_autogroup(workers[-1], 10)
            before = cpu_seconds(st.root, *servers)
            result = await measure(st, front[0].port, front[-1].port, args)
            used = {name: end - before[name] for name, end in cpu_seconds(st.root, *servers).items()}
            redis = aioredis.Redis.from_url(st.redis_url)
            left = await remaining(redis)
            caught_up = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await poll(lambda: drained(redis), within=300)
            catch_up_s = time.monotonic() - caught_up
            await redis.aclose()
    total = int(args.rate * args.seconds)
    sent = sum(result.codes.values())
    answers = dict(sorted(result.codes.items()))
    figures.add(f"{what}: steady {args.rate:,.0f} events/s for {args.seconds:.0f} s", f"{sent:,} sent",
                f"(answers {answers}; the sender at worst {result.late_s:.2f} s behind)")  # fmt: skip
    figures.add(f"{what}: POST answer p50 / p99",
                f"{pct(result.posts, 50):.1f} / {pct(result.posts, 99):.1f} ms")  # fmt: skip
    figures.add(f"{what}: POST -> context update published p50 / p99",
                f"{pct(result.announced, 50):.1f} / {pct(result.announced, 99):.1f} ms",
                "(the worker's part: stream read, hot tier, pub/sub)")  # fmt: skip
    figures.add(
        f"{what}: POST -> readable over MCP get_context p50 / p99",
        f"{pct(result.visible, 50):.1f} / {pct(result.visible, 99):.1f} ms",
        f"({len(result.visible)} samples, {result.unseen} not seen within 30 s; max "
        f"{max(result.visible, default=0) * 1000:.0f} ms)",
    )
    cores = (os.cpu_count() or 1) * args.seconds
    figures.add(f"{what}: CPU during the run", ", ".join(f"{k} {v:.1f} s" for k, v in used.items()),
                f"(of {cores:.0f} core-seconds)")  # fmt: skip
    figures.add(f"{what}: backlog right after the run", str(left),
                f"(of {total:,}; drained {catch_up_s:.1f} s later, 300 s at most)")  # fmt: skip


def cpu_seconds(root: Path, *servers: Server) -> dict[str, float]:
    """CPU time (user + system) of each server process, of this one (the load generator), and of the
    stores: the embedded Redis and PostgreSQL (its postmaster and every child) of the phase's root."""
    used = {"load generator": time.process_time()}
    for server in servers:
        used[server.name] = _cpu(server.pid)
    redis, postgres = 0.0, 0.0
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            if str(root) in cmdline and "redis-server" in cmdline:
                redis += _cpu(int(entry.name))
    postmasters = {pid for pid in parents if _cmdline_has(pid, f"-D {root}/")}
    for pid, parent in parents.items():
        if pid in postmasters or parent in postmasters:
            with contextlib.suppress(OSError):
                postgres += _cpu(pid)
    return used | {"redis": redis, "postgres": postgres}


def _cmdline_has(pid: int, text: str) -> bool:
    with contextlib.suppress(OSError):
        return text in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return False


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(st: Stack, port: int, mcp_port: int, args: argparse.Namespace) -> Latency:
    """Deliveries POSTed to ``port``, read over MCP from ``mcp_port`` (the same process, or not)."""
    out = Latency()
    http = Http(port)
    run = secrets.token_hex(4)
    total = int(args.rate * args.seconds)
    waiting: dict[str, anyio.Event] = {}  # context id of a sample -> set when an update names it
    pool_send, pool_receive = anyio.create_memory_object_stream[Any](args.connections)
    for _ in range(args.connections):
        await pool_send.send(await http.connect())
    redis = aioredis.Redis.from_url(st.redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.context_updates(TENANT))
    mcp_http = httpx2.AsyncClient(timeout=30)
    async with (
        mcp_http,
        Client(streamable_http_client(f"http://127.0.0.1:{mcp_port}/mcp", http_client=mcp_http)) as mcp,
    ):

        async def listen() -> None:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    event = waiting.get(_text(message["data"]))
                    if event is not None:
                        event.set()

        async def watch(ctx: str, event_id: str, started: float) -> None:
            with anyio.move_on_after(30) as scope:
                while True:
                    await waiting[ctx].wait()
                    waiting[ctx] = anyio.Event()
                    notified = time.monotonic()
                    result = await mcp.call_tool("get_context", {"id": ctx})
                    found = cast(dict[str, Any], result.structured_content or {})
                    if any(e["id"] == event_id for e in found.get("events", [])):
                        out.visible.append(time.monotonic() - started)
                        out.announced.append(notified - started)
                        break
            if scope.cancelled_caught:
                out.unseen += 1
            waiting.pop(ctx, None)

        async def one(i: int, tasks: anyio.abc.TaskGroup) -> None:
            conn = await pool_receive.receive()
            sample = i % args.sample_every == 0
            source, issue = subject_of(i, args.subjects)
            if sample:  # a fresh issue: its context is small, and holds this one event
                issue = 100_000 + i
            delivery = f"{run}-{i}"
            started = time.monotonic()
            ctx = context_id(TENANT, f"github:octo/{source}#issue/{issue}")
            if sample:
                waiting[ctx] = anyio.Event()
            code = await Http.post(conn, request(source, st.secret, delivery, payload(i, issue, source, run)))
            out.posts.append(time.monotonic() - started)
            out.codes[code] = out.codes.get(code, 0) + 1
            await pool_send.send(conn)
            if sample and code == 202:
                tasks.start_soon(watch, ctx, f"{source}:{delivery}", started)
            elif sample:
                waiting.pop(ctx, None)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(listen, name="updates")
            async with anyio.create_task_group() as senders:
                start = time.monotonic()
                for i in range(total):
                    delay = start + i / args.rate - time.monotonic()
                    if delay > 0:
                        await anyio.sleep(delay)
                    out.late_s = max(out.late_s, -delay)
                    senders.start_soon(one, i, senders)
            tasks.cancel_scope.cancel()
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await redis.aclose()
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- main ----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> Figures:
    figures = Figures()
    phases = {p.strip() for p in args.phases.split(",")}
    with tempfile.TemporaryDirectory(prefix="hlbp", dir="/tmp") as tmp:
        work = Path(tmp)
        print(f"bench dir {work}; embedder {args.embedder!r}; backlog {args.events:,} events over "
              f"{args.subjects} contexts", flush=True)  # fmt: skip
        if "throughput" in phases:
            for processes in (1, 2):
                print(f"throughput, {processes} worker process(es) ...", flush=True)
                await throughput(work, args, processes, figures)
        if "recovery" in phases:
            for elsewhere in (False, True):
                print(f"recovery after kill -9 ({'elsewhere' if elsewhere else 'in place'}) ...", flush=True)
                await recovery(work, args, figures, elsewhere)
        if "latency" in phases:
            # The baseline, in the same run: no embedder, so no embedding competes for the cores.
            for layout in (part.strip() for part in args.layouts.split(",") if part.strip()):
                for embedder in dict.fromkeys(("none", args.embedder)):
                    what = f"{layout}, embedder {embedder!r}"
                    print(f"latency at {args.rate:,.0f} events/s, {what} ...", flush=True)
                    await latency(work, args, figures, embedder, layout)
    return figures


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: servers and PostgreSQL stop
    figures = anyio.run(run, args, backend_options={"use_uvloop": True})
    width = max(len(what) for what, _, _ in figures.rows)
    print(f"\n{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; embedder {args.embedder!r}; "
          f"{args.subjects} contexts; Redis {args.redis_url or 'embedded'}; embedded PostgreSQL")  # fmt: skip
    for what, value, note in figures.rows:
        print(f"{what:<{width}}  {value:>24}  {note}")
    root = Path(__file__).resolve().parents[1]
    print(f"reproduce: cd {root} && {' '.join([sys.executable, '-m', 'bench.process', *sys.argv[1:]])}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)

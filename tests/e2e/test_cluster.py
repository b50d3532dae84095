"""Redis Cluster: a real three-node cluster (the machine's redis-server), the intake's dedup script,
the workers and the hot tier all work across slots."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import orjson
import pytest

from ingest.accept import Acceptor
from ingest.stream import StreamProducer
from ingest.worker import Worker, WorkerConfig
from memory.ledger import Ledger
from memory.models import Source
from memory.runtime import open_runtime
from memory.service import MemoryService
from tests.conftest import make_settings
from tests.fixtures.github_examples import load_fixture
from tests.helpers import free_port, wait_until


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    server = shutil.which("redis-server")
    cli = shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.fail("redis-server and redis-cli are needed (Debian package redis-server)")
    ports = [_cluster_port() for _ in range(3)]
    processes: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="hlcl", dir="/tmp") as root:
        try:
            for port in ports:
                directory = Path(root) / str(port)
                directory.mkdir()
                process = subprocess.Popen(
                    [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-config-file", str(directory / "nodes.conf"), "--dir", str(directory),
                     "--save", "", "--appendonly", "no"],
                    stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                processes.append(process)
                _wait_for_line(process, "Ready to accept connections")
            nodes = [f"127.0.0.1:{port}" for port in ports]
            done = subprocess.run([cli, "--cluster", "create", *nodes, "--cluster-yes"], capture_output=True)
            if done.returncode != 0:
                pytest.fail(f"could not create the cluster: {done.stderr!r}")
            for process in processes:
                _wait_for_line(process, "Cluster state changed: ok")
                assert process.stdout is not None
                process.stdout.close()  # redis-server ignores SIGPIPE: later log lines just go nowhere
            yield f"redis+cluster://127.0.0.1:{ports[0]}"
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=10)
                if process.stdout is not None:
                    process.stdout.close()


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too: an ephemeral port
    above 55535 would put the bus past 65535, and redis-server refuses to start."""
    for _ in range(1000):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    pytest.fail("no free port pair for a cluster node")


def _wait_for_line(process: subprocess.Popen[str], marker: str) -> None:
    """Read the server's log until it says ``marker`` (its own signal that it is ready)."""
    assert process.stdout is not None
    for line in process.stdout:
        if marker in line:
            return
    pytest.fail(f"redis-server exited before logging {marker!r}")


async def test_intake_dedup_workers_and_hot_tier_across_cluster_slots(
    cluster_url: str, tmp_root: Path, machine_database_url: str, tenant: str
) -> None:
    settings = make_settings(tmp_root, cluster_url, machine_database_url, HOOKLINE_EMBEDDER="none")
    async with open_runtime(settings, migrate=False) as rt:
        producer = StreamProducer(rt.redis)
        acceptor = Acceptor(settings, producer, Ledger(rt.db))
        service = MemoryService(rt)
        worker = Worker(
            rt.redis, service.apply_events, settings.partitions, WorkerConfig(block_ms=20), "cl-0"
        )
        sources = [Source(f"gh{n}", tenant, "github", ("x",)) for n in range(4)]  # spread over partitions
        body = orjson.dumps(load_fixture("push"))
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(producer.run, name="producer")
            tasks.start_soon(worker.run, name="worker")
            accepted = []
            for source in sources:
                for _ in range(3):
                    delivery = uuid.uuid4().hex
                    _, duplicate = await acceptor.accept(source, "push", delivery, orjson.loads(body), body)
                    assert duplicate is False
                    accepted.append(delivery)
                _, again = await acceptor.accept(source, "push", accepted[-1], orjson.loads(body), body)
                assert again is True

            async def applied() -> bool:
                return len(await service.recent_events(tenant, limit=100)) == len(accepted)

            await wait_until(applied, within=30)
            worker.stop()
            tasks.cancel_scope.cancel()
        ctx_id = (await service.recent_events(tenant, limit=1))[0].context_id
        ctx = await service.get_context(tenant, ctx_id)
        assert ctx.head.tier == "hot" and ctx.head.event_count == len(accepted)

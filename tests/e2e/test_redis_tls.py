"""Redis as deployers run it: TLS everywhere, passwords, Sentinel and Cluster. Real redis-server
processes (the machine's, built with TLS), with a CA and certificates made for the module; servers ask
for a client certificate (``tls-auth-clients yes``), so every TLS option of the URL is exercised.

- ``rediss://`` to one server;
- ``rediss+sentinel://`` to a primary, its replica and a sentinel, all TLS, with ``requirepass`` and
  ``masterauth`` on the data nodes and a password of the sentinel's own; a wrong password is a clear
  ``StoreUnavailable`` at start, within seconds, that never shows the password;
- ``rediss+cluster://`` to three nodes with ``--tls-cluster yes`` and a password, running the intake
  over HTTP, the workers and a lifecycle pass.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx2
import orjson
import psycopg
import pytest
import redis.asyncio as aioredis

from ingest.accept import Acceptor
from ingest.stream import producer_for
from ingest.worker import Worker, WorkerConfig
from memory import keys
from memory.errors import ConfigError, StoreUnavailable
from memory.ledger import Ledger
from memory.lifecycle import Lifecycle
from memory.models import Source
from memory.runtime import Runtime, connect_redis, open_runtime
from memory.service import MemoryService
from memory.sources import SourceStore
from tests.conftest import make_settings
from tests.e2e.redis_servers import SENTINEL_READY, Certs, Servers, make_certs, start_cluster
from tests.fixtures.github_examples import load_fixture
from tests.helpers import free_port, github_headers, make_event, serve_app, wait_until

pytestmark = pytest.mark.e2e

DATA_PASSWORD = "data p@ss/word"  # characters a URL must escape: %-encoded in every URL below
SENTINEL_PASSWORD = "sentinel-secret"
CLUSTER_PASSWORD = "cluster-secret"
SERVICE = "hookline"
SECRET = "It's a Secret to Everybody"
QUOTED = DATA_PASSWORD.replace("@", "%40").replace("/", "%2F").replace(" ", "%20")


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hltls", dir="/tmp") as found:
        yield Path(found)


@pytest.fixture(scope="module")
def certs(root: Path) -> Certs:
    return make_certs(root)


def _common(certs: Certs, directory: Path) -> list[str]:
    directory.mkdir()
    return ["--port", "0", "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
            "--appendonly", "no", *certs.server_args()]  # fmt: skip


@pytest.fixture(scope="module")
def tls_url(root: Path, certs: Certs) -> Iterator[str]:
    servers = Servers()
    port = free_port()
    try:
        servers.start(["--tls-port", str(port), *_common(certs, root / "single")])
        yield f"rediss://127.0.0.1:{port}/0?{certs.query()}"
    finally:
        servers.close()


@dataclass(frozen=True)
class Topology:
    primary: int
    replica: int
    sentinel: int
    certs: Certs

    def url(self, password: str = QUOTED, sentinel_password: str = SENTINEL_PASSWORD) -> str:
        return (f"rediss+sentinel://:{password}@127.0.0.1:{self.sentinel}/{SERVICE}"
                f"?sentinel_password={sentinel_password}&{self.certs.query()}")  # fmt: skip


@pytest.fixture(scope="module")
def sentinel(root: Path, certs: Certs) -> Iterator[Topology]:
    found = Topology(free_port(), free_port(), free_port(), certs)
    auth = ["--tls-replication", "yes", "--requirepass", DATA_PASSWORD, "--masterauth", DATA_PASSWORD]
    servers = Servers()
    try:
        servers.start(["--tls-port", str(found.primary), *_common(certs, root / "primary"), *auth])
        servers.start(["--tls-port", str(found.replica), *_common(certs, root / "replica"), *auth,
                       "--replicaof", "127.0.0.1", str(found.primary)])  # fmt: skip
        tls = certs.server_args()
        conf = root / "sentinel.conf"  # the sentinel rewrites its own file: it must be writable
        conf.write_text(
            "port 0\nbind 127.0.0.1\n"
            f"tls-port {found.sentinel}\ntls-replication yes\ndir {root}\n"
            + "".join(
                f"{name.removeprefix('--')} {value}\n"
                for name, value in zip(tls[::2], tls[1::2], strict=True)
            )
            + f"requirepass {SENTINEL_PASSWORD}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {found.primary} 1\n"
            f'sentinel auth-pass {SERVICE} "{DATA_PASSWORD}"\n'
        )
        servers.start([str(conf), "--sentinel"], ready=SENTINEL_READY)
        yield found
    finally:
        servers.close()


@pytest.fixture(scope="module")
def cluster_url(root: Path, certs: Certs) -> Iterator[str]:
    (root / "cluster").mkdir()
    with start_cluster(root / "cluster", certs, password=CLUSTER_PASSWORD) as ports:
        yield f"rediss+cluster://:{CLUSTER_PASSWORD}@127.0.0.1:{ports[0]}?{certs.query()}"


@pytest.fixture
async def emptied(machine_database_url: str) -> AsyncIterator[str]:
    """The machine's PostgreSQL with no contexts or sources (lifecycle passes visit every row)."""
    async with await psycopg.AsyncConnection.connect(machine_database_url, autocommit=True) as conn:
        await conn.execute("TRUNCATE events, contexts, sources, ledger, rollups, context_links")
    yield machine_database_url


async def test_rediss_reaches_a_server_that_asks_for_a_client_certificate(
    tls_url: str, certs: Certs, tmp_root: Path, machine_database_url: str, tenant: str
) -> None:
    settings = make_settings(tmp_root, tls_url, machine_database_url, HOOKLINE_EMBEDDER="none")
    async with open_runtime(settings, migrate=False) as rt:
        service = MemoryService(rt)
        await service.apply_events([make_event(tenant, "push", load_fixture("push"), "gh:tls")])
        assert [e.id for e in await service.recent_events(tenant, limit=5)] == ["gh:tls"]
        assert rt.redis.connection_pool.connection_class.__name__ == "SSLConnection"
    # The certificates matter: without the CA the server's certificate is refused, and without a
    # client certificate the server refuses us.
    without_ca = tls_url.replace(f"ssl_ca_certs={certs.ca}&", "")
    without_client = tls_url.replace(f"&ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}", "")
    for url, reason in (
        (without_ca, "certificate verify failed"),
        (without_client, "certificate required|reset by peer"),
    ):
        settings = make_settings(tmp_root, url, machine_database_url, HOOKLINE_EMBEDDER="none")
        with anyio.fail_after(20), pytest.raises(StoreUnavailable, match=reason):
            async with open_runtime(settings, migrate=False):
                pass


async def _read_back(rt: Runtime, tenant: str, delivery: str) -> None:
    """Accept one event through the intake's acceptor, let a worker apply it, and read it back."""
    producer = producer_for(rt)
    acceptor = Acceptor(rt.settings, producer, Ledger(rt.db))
    service = MemoryService(rt)
    worker = Worker(
        rt.redis, service.apply_events, rt.settings.partitions, WorkerConfig(block_ms=20), "tls-0"
    )
    source = Source("gh", tenant, "github", ("x",))
    body = orjson.dumps(load_fixture("push"))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="producer")
        tasks.start_soon(worker.run, name="worker")
        _, duplicate = await acceptor.accept(source, "push", delivery, orjson.loads(body), body)
        assert duplicate is False

        async def applied() -> bool:
            return len(await service.recent_events(tenant, limit=5)) == 1

        await wait_until(applied, within=30)
        worker.stop()
        tasks.cancel_scope.cancel()
    ctx = await service.get_context(tenant, (await service.recent_events(tenant, limit=1))[0].context_id)
    assert [e.id for e in ctx.events] == [f"gh:{delivery}"]


async def test_sentinel_with_passwords_and_tls_serves_an_event_end_to_end(
    sentinel: Topology, tmp_root: Path, machine_database_url: str, tenant: str
) -> None:
    settings = make_settings(tmp_root, sentinel.url(), machine_database_url, HOOKLINE_EMBEDDER="none")
    async with open_runtime(settings, migrate=False) as rt:
        primary = rt.redis.connection_pool.connection_kwargs
        assert primary["password"] == DATA_PASSWORD  # the URL's %-escapes undone
        await _read_back(rt, tenant, uuid.uuid4().hex)
        info = await rt.redis.info("replication")
        assert info["role"] == "master" and info["connected_slaves"] == 1  # replication: TLS + masterauth

        async def replica_has_it() -> bool:
            replica = aioredis.Redis(port=sentinel.replica, password=DATA_PASSWORD, ssl=True,
                                     ssl_ca_certs=str(sentinel.certs.ca),
                                     ssl_certfile=str(sentinel.certs.client_cert),
                                     ssl_keyfile=str(sentinel.certs.client_key))  # fmt: skip
            async with replica:
                return int(await replica.get(keys.counter("applied")) or 0) >= 1

        await wait_until(replica_has_it, within=30)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("data password", "Redis refused the password"),
        ("sentinel password", "a sentinel refused the password"),
    ],
)
async def test_a_wrong_password_fails_at_once_with_a_clear_error(
    sentinel: Topology, tmp_root: Path, machine_database_url: str, case: str, message: str
) -> None:
    wrong = "not-the-password"
    url = sentinel.url(password=wrong) if case == "data password" else sentinel.url(sentinel_password=wrong)
    settings = make_settings(tmp_root, url, machine_database_url, HOOKLINE_EMBEDDER="none")
    with anyio.fail_after(20), pytest.raises(StoreUnavailable, match=message) as refused:
        async with open_runtime(settings, migrate=False):
            pass
    assert wrong not in str(refused.value) and SENTINEL_PASSWORD not in str(refused.value)
    assert "sentinel_password=***" in str(refused.value)


async def test_a_tls_option_that_cannot_work_is_a_config_error_before_any_connection(
    sentinel: Topology, certs: Certs
) -> None:
    for url in (
        sentinel.url().replace(str(certs.ca), "/nonexistent/ca.crt"),
        sentinel.url().replace("ssl_cert_reqs=required", "ssl_cert_reqs=sometimes"),
        sentinel.url().replace("rediss+sentinel", "redis+sentinel"),  # TLS options, plain scheme
    ):
        with pytest.raises(ConfigError):
            connect_redis(url)


async def test_a_tls_cluster_runs_intake_workers_and_a_lifecycle_pass(
    cluster_url: str, tmp_root: Path, emptied: str, tenant: str
) -> None:
    settings = make_settings(tmp_root, cluster_url, emptied, HOOKLINE_EMBEDDER="none")
    async with open_runtime(settings, migrate=False) as rt:
        await SourceStore.for_runtime(rt).add("gh", "github", [SECRET], tenant)
        service = MemoryService(rt)
        sent = 0
        with serve_app(settings, roles=("intake", "worker")) as url:
            async with httpx2.AsyncClient(base_url=url) as client:
                for number in range(20):  # twenty subjects, over every partition and slot
                    payload = load_fixture("issues_opened")
                    payload["issue"]["number"] = number
                    body = orjson.dumps(payload)
                    headers = github_headers(body, SECRET, "issues", uuid.uuid4().hex)
                    answer = await client.post("/hooks/gh", content=body, headers=headers)
                    assert answer.status_code == 202, answer.text
                    sent += 1

            async def applied() -> bool:
                return len(await service.recent_events(tenant, limit=100)) == sent

            await wait_until(applied, within=60)
        report = await Lifecycle(rt).run_pass(datetime.now(UTC) + timedelta(hours=10))
        assert report.to_warm == sent and report.dictionaries, report
        ctx_id = (await service.recent_events(tenant, limit=1))[0].context_id
        warm = await service.get_context(tenant, ctx_id)
        assert warm.head.tier == "warm" and len(warm.events) == 1

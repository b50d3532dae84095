"""The one owner of every connection: Redis, PostgreSQL and the blob store.

``open_runtime`` opens them inside an ``AsyncExitStack`` (starting the embedded servers when no URL
is configured, and applying migrations) and closes them in reverse order. Routes, tools, workers and
the CLI receive the ``Runtime``; none of them builds a client of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import anyio
import psycopg
import redis.asyncio as aioredis
import structlog
from alembic import command
from alembic.config import Config
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from sqlalchemy.exc import SQLAlchemyError

from memory.crypto import Keyring, SealedBlobStore
from memory.embedded import EmbeddedPostgres, EmbeddedRedis
from memory.errors import ConfigError, StoreUnavailable
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
    """redis://, rediss://, unix://, redis+sentinel://host:port[,host:port]/service, redis+cluster://

    Returns the client and what closes it (with Sentinel, also the clients that ask the sentinels)."""
    parsed = urlparse(url)
    options: dict[str, Any] = {"health_check_interval": 30}
    if parsed.scheme in ("redis", "rediss", "unix"):
        client = aioredis.Redis.from_url(url, **options)
        return client, client.aclose
    if parsed.scheme == "redis+cluster":
        plain = url.replace("redis+cluster://", "redis://", 1)
        cluster = RedisCluster.from_url(plain)
        return cluster, cluster.aclose  # type: ignore[return-value]  # same command surface
    if parsed.scheme == "redis+sentinel":
        hosts = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in parsed.netloc.split(",")]
        service = parsed.path.strip("/") or parse_qs(parsed.query).get("service", ["mymaster"])[0]
        sentinel = Sentinel(hosts)  # type: ignore[no-untyped-call]
        master: Redis = sentinel.master_for(service)
        return master, _closing(master, sentinel)
    raise ConfigError(f"unsupported Redis URL scheme {parsed.scheme!r}")


def _closing(master: Redis, sentinel: Sentinel) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        try:
            await master.aclose()
        finally:
            await sentinel.aclose()

    return close


def is_cluster(client: Redis) -> bool:
    """Redis Cluster refuses scripts inside pipelines and reads across slots: callers fan out."""
    return isinstance(client, RedisCluster)


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
            raise StoreUnavailable(f"Redis at {redis_url} is unreachable: {exc}") from exc

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
            from memory.embed import CachedEmbedder, make_embedder  # onnxruntime loads lazily anyway

            inner = make_embedder(settings.embedder, api_key=settings.embedder_api_key)
            embedder = CachedEmbedder(inner, client, settings.embed_cache_ttl_s)
            stack.push_async_callback(embedder.aclose)

        log.info("runtime.open", redis=_redact(redis_url), database=_redact(database_url))
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


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url

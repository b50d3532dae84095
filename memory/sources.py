"""Webhook sources: stored in PostgreSQL, cached briefly in each process for the intake hot path."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from memory.errors import InvalidArgument, StoreUnavailable, UnknownSource
from memory.models import Source

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# How long a process trusts its cached copy: a source added or rotated by the CLI while `serve`
# runs takes effect within this many seconds.
CACHE_TTL_S = 2.0
# A webhook provider waits ~10 s at most: an unreachable PostgreSQL must not hold a request longer.
LOAD_TIMEOUT_S = 2.0


class SourceStore:
    def __init__(self, db: AsyncConnectionPool) -> None:
        self._db = db
        self._cache: dict[str, tuple[float, Source | None]] = {}
        self._loading: dict[str, asyncio.Future[Source | None]] = {}

    async def add(
        self, name: str, provider: str, secrets: list[str], tenant: str, options: dict[str, Any] | None = None
    ) -> Source:
        if not NAME_PATTERN.match(name):
            raise InvalidArgument("a source name is 1-63 characters of a-z, 0-9, '-' and '_'")
        if not secrets or any(not secret for secret in secrets):
            raise InvalidArgument("a source needs at least one non-empty secret")
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute("INSERT INTO tenants (id) VALUES (%s) ON CONFLICT DO NOTHING", (tenant,))
            await conn.execute(
                """
                INSERT INTO sources (name, tenant, provider, secrets, config) VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (name) DO UPDATE SET
                    tenant = excluded.tenant, provider = excluded.provider,
                    secrets = excluded.secrets, config = excluded.config
                """,
                (name, tenant, provider, secrets, Jsonb(options or {})),
            )
        self._cache.pop(name, None)
        return Source(name, tenant, provider, tuple(secrets), dict(options or {}))

    async def list(self, tenant: str | None = None) -> list[Source]:
        query = "SELECT name, tenant, provider, secrets, config FROM sources"
        params: tuple[str, ...] = ()
        if tenant is not None:
            query += " WHERE tenant = %s"
            params = (tenant,)
        async with self._db.connection() as conn:
            rows = await (await conn.execute(query + " ORDER BY name", params)).fetchall()
        return [Source(r[0], r[1], r[2], tuple(r[3]), dict(r[4])) for r in rows]

    async def remove(self, name: str) -> bool:
        async with self._db.connection() as conn:
            cursor = await conn.execute("DELETE FROM sources WHERE name = %s", (name,))
        self._cache.pop(name, None)
        return cursor.rowcount > 0

    async def get(self, name: str) -> Source:
        """The source called ``name`` (cached for CACHE_TTL_S); raises UnknownSource.

        One load per name at a time: concurrent requests that miss the cache share it, so a cache
        expiry under load costs one query, not one per in-flight request.
        """
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and now - cached[0] < CACHE_TTL_S:
            source = cached[1]
        else:
            loading = self._loading.get(name)
            if loading is None:
                loading = self._loading[name] = asyncio.ensure_future(self._refresh(name, now))
            try:
                source = await asyncio.shield(loading)
            except StoreUnavailable:
                if cached is None:
                    raise
                source = cached[1]  # PostgreSQL is down: the last known source keeps intake up
        if source is None:
            raise UnknownSource(f"no source named {name!r}")
        return source

    async def _refresh(self, name: str, now: float) -> Source | None:
        try:
            source = await self._load(name)
            self._cache[name] = (now, source)
            return source
        finally:
            self._loading.pop(name, None)

    async def _load(self, name: str) -> Source | None:
        try:
            async with self._db.connection(timeout=LOAD_TIMEOUT_S) as conn:
                row = await (
                    await conn.execute(
                        "SELECT name, tenant, provider, secrets, config FROM sources WHERE name = %s", (name,)
                    )
                ).fetchone()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"cannot read sources from PostgreSQL: {exc}") from exc
        return None if row is None else Source(row[0], row[1], row[2], tuple(row[3]), dict(row[4]))

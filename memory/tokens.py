"""Bearer tokens for the MCP transports: one tenant each, stored only as a SHA-256 hash.

Each token has a public id, ``tok_`` + the hex of its hash's first 8 bytes (``api_tokens.id``): it
names the token in ``token list`` and ``token revoke --id``, and it is the principal an MCP session
is bound to, without revealing anything that helps to guess the token.

Lookups are cached for ``CACHE_TTL_S`` in a bounded LRU (misses too, so a flood of random tokens
costs one query each and cannot grow the cache). ``last_used_at`` is written in the background, at
most once every ``USAGE_EVERY_S`` per token, never on the request's path.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from memory.cache import TtlLru
from memory.errors import AuthError, InvalidArgument, StoreUnavailable
from memory.ids import check_tenant

log = structlog.get_logger(__name__)

TOKEN_PREFIX = "hl_"
TOKEN_ID_PREFIX = "tok_"
LOCAL_PRINCIPAL = "local"  # the principal of every connection when auth is off
CACHE_TTL_S = 5.0  # a revoked token stops working in this process within this long
CACHE_MAX_ENTRIES = 10_000
USAGE_EVERY_S = 60.0
USAGE_WRITE_EVERY_S = 10.0
_CREATE_ATTEMPTS = 3  # the public id is 64 bits of the hash: a clash is astronomically rare


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's public id (``local`` when auth is off) and its tenant."""

    id: str
    tenant: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What ``token list`` shows: never the token or its hash."""

    id: str
    tenant: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_id(digest: bytes) -> str:
    """The public id of the token whose SHA-256 is ``digest`` (as migration 0010 computes it)."""
    return TOKEN_ID_PREFIX + digest[:8].hex()


class TokenStore:
    def __init__(
        self,
        db: AsyncConnectionPool,
        *,
        cache_entries: int = CACHE_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._cache: TtlLru[bytes, Principal | None] = TtlLru(CACHE_TTL_S, cache_entries, clock)
        self._digests: TtlLru[str, bytes] = TtlLru(CACHE_TTL_S, cache_entries, clock)  # id -> cached hash
        self._used: TtlLru[str, None] = TtlLru(USAGE_EVERY_S, cache_entries, clock)  # noted this minute
        self._unwritten: set[str] = set()

    @property
    def cached(self) -> int:
        """How many lookups the cache holds (bounded by ``cache_entries``)."""
        return len(self._cache)

    async def create(self, tenant: str, name: str = "") -> str:
        check_tenant(tenant)
        attempts = 0
        while True:
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            digest = hash_token(token)
            try:
                async with self._db.connection() as conn, conn.transaction():
                    await conn.execute(
                        "INSERT INTO tenants (id) VALUES (%s) ON CONFLICT DO NOTHING", (tenant,)
                    )
                    await conn.execute(
                        "INSERT INTO api_tokens (token_hash, id, tenant, name) VALUES (%s, %s, %s, %s)",
                        (digest, token_id(digest), tenant, name),
                    )
            except psycopg.errors.UniqueViolation:
                attempts += 1
                if attempts == _CREATE_ATTEMPTS:
                    raise
                continue
            return token

    async def revoke(self, token: str) -> bool:
        digest = hash_token(token)
        revoked = await self._revoke("token_hash = %s", (digest,))
        self._cache.pop(digest)
        return bool(revoked)

    async def revoke_id(self, public_id: str) -> list[str]:
        """Revokes the token with this public id; the ids revoked (none if it was unknown or revoked)."""
        return await self._revoke("id = %s", (public_id,))

    async def revoke_name(self, name: str, tenant: str | None = None) -> list[str]:
        """Revokes every active token called ``name`` (in ``tenant``). Without a tenant the name must
        belong to one tenant only: InvalidArgument names the tenants otherwise."""
        if tenant is not None:
            return await self._revoke("name = %s AND tenant = %s", (name, check_tenant(tenant)))
        async with self._db.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT DISTINCT tenant FROM api_tokens"
                    " WHERE name = %s AND revoked_at IS NULL ORDER BY 1",
                    (name,),
                )
            ).fetchall()
        if len(rows) > 1:
            tenants = ", ".join(str(row[0]) for row in rows)
            raise InvalidArgument(f"tokens named {name!r} exist in tenants {tenants}: give --tenant")
        return await self._revoke("name = %s", (name,))

    async def _revoke(self, where: str, params: tuple[Any, ...]) -> list[str]:
        async with self._db.connection() as conn:
            rows = await (
                await conn.execute(
                    f"UPDATE api_tokens SET revoked_at = now() WHERE {where} AND revoked_at IS NULL"
                    " RETURNING id",
                    params,
                )
            ).fetchall()
        return sorted(str(row[0]) for row in rows)

    async def principal_for(self, token: str) -> Principal:
        """The principal this token stands for; raises AuthError for an unknown or revoked token."""
        digest = hash_token(token)
        found, principal = self._cache.get(digest)
        if not found:
            try:
                async with self._db.connection() as conn:
                    row = await (
                        await conn.execute(
                            "SELECT id, tenant FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL",
                            (digest,),
                        )
                    ).fetchone()
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"cannot check the token: {exc}") from exc
            principal = None if row is None else Principal(str(row[0]), str(row[1]))
            self._cache.put(digest, principal)
            if principal is not None:
                self._digests.put(principal.id, digest)
        if principal is None:
            raise AuthError("unknown or revoked token")
        self._note_use(principal.id)
        return principal

    async def active(self, ids: Collection[str]) -> set[str]:
        """Those of ``ids`` that name a token not revoked (the open connections' re-check)."""
        try:
            async with self._db.connection() as conn:
                rows = await (
                    await conn.execute(
                        "SELECT id FROM api_tokens WHERE id = ANY(%s) AND revoked_at IS NULL", (list(ids),)
                    )
                ).fetchall()
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot check the tokens: {exc}") from exc
        return {str(row[0]) for row in rows}

    def forget(self, ids: Collection[str]) -> None:
        """Drops the cached answers for these token ids (found revoked): they stop working here now,
        not when their cache entry expires."""
        for public_id in ids:
            found, digest = self._digests.stale(public_id)
            if found and digest is not None:
                self._cache.pop(digest)
                self._digests.pop(public_id)

    def _note_use(self, public_id: str) -> None:
        found, _ = self._used.get(public_id)
        if not found:
            self._used.put(public_id, None)
            self._unwritten.add(public_id)

    async def write_usage(self) -> int:
        """Writes ``last_used_at`` of the tokens used since the last write; how many."""
        if not self._unwritten:
            return 0
        ids = sorted(self._unwritten)
        self._unwritten.clear()
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "UPDATE api_tokens SET last_used_at = now() WHERE id = ANY(%s)", (ids,)
            )
        return cursor.rowcount

    async def run_usage_writer(self, every_s: float = USAGE_WRITE_EVERY_S) -> None:
        """The background task that keeps ``last_used_at`` (a write that fails is skipped: the next
        use of that token, a minute later, notes it again)."""
        try:
            while True:
                await anyio.sleep(every_s)
                try:
                    await self.write_usage()
                except psycopg.Error as exc:
                    log.warning("tokens.usage_write_failed", error=str(exc))
        finally:
            with anyio.move_on_after(2, shield=True):  # what the last seconds noted, on shutdown
                try:
                    await self.write_usage()
                except psycopg.Error as exc:
                    log.warning("tokens.usage_write_failed", error=str(exc))

    # Last in the class: inside it, ``list`` would name this method in the annotations above.
    async def list(self, tenant: str | None = None) -> list[TokenInfo]:
        query = "SELECT id, tenant, name, created_at, last_used_at, revoked_at FROM api_tokens"
        params: tuple[Any, ...] = ()
        if tenant is not None:
            query += " WHERE tenant = %s"
            params = (check_tenant(tenant),)
        async with self._db.connection() as conn:
            rows = await (await conn.execute(query + " ORDER BY tenant, created_at, id", params)).fetchall()
        return [TokenInfo(*row) for row in rows]

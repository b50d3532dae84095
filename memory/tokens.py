"""Bearer tokens for the MCP transports: one tenant each, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import time

import psycopg
from psycopg_pool import AsyncConnectionPool

from memory.errors import AuthError, StoreUnavailable

TOKEN_PREFIX = "hl_"
CACHE_TTL_S = 5.0


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenStore:
    def __init__(self, db: AsyncConnectionPool) -> None:
        self._db = db
        self._cache: dict[bytes, tuple[float, str | None]] = {}

    async def create(self, tenant: str, name: str = "") -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute("INSERT INTO tenants (id) VALUES (%s) ON CONFLICT DO NOTHING", (tenant,))
            await conn.execute(
                "INSERT INTO api_tokens (token_hash, tenant, name) VALUES (%s, %s, %s)",
                (hash_token(token), tenant, name),
            )
        return token

    async def revoke(self, token: str) -> bool:
        digest = hash_token(token)
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE token_hash = %s AND revoked_at IS NULL",
                (digest,),
            )
        self._cache.pop(digest, None)
        return cursor.rowcount > 0

    async def tenant_for(self, token: str) -> str:
        """The tenant this token belongs to; raises AuthError for an unknown or revoked token."""
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < CACHE_TTL_S:
            tenant = cached[1]
        else:
            try:
                async with self._db.connection() as conn:
                    row = await (
                        await conn.execute(
                            "SELECT tenant FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL",
                            (digest,),
                        )
                    ).fetchone()
            except psycopg.OperationalError as exc:
                raise StoreUnavailable(f"cannot check the token: {exc}") from exc
            tenant = None if row is None else str(row[0])
            self._cache[digest] = (now, tenant)
        if tenant is None:
            raise AuthError("unknown or revoked token")
        return tenant

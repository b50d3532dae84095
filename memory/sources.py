"""Webhook sources: stored in PostgreSQL, cached briefly in each process for the intake hot path.

Options are stored parsed and normalized (``memory.source_options``) and parsed again on load.
Secrets are sealed at rest when ``HOOKLINE_ENCRYPTION_KEYS`` is set (``memory.crypto``, bound to the
source's name, so a sealed secret copied into another source's row does not open); plaintext ones
from before keep working until ``hookline tier rewrap`` seals them. A stored source whose options no
longer parse, or whose secrets no configured key opens, loads as ``SourceMisconfigured``: the intake
answers 503 for it, and nothing else is disturbed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from memory.cache import TtlLru
from memory.crypto import SEALED_TEXT, DecryptionError, Keyring, text_sealed_with
from memory.errors import HooklineError, InvalidArgument, StoreUnavailable, UnknownSource
from memory.ids import check_source, check_tenant
from memory.models import Source
from memory.source_options import BadSourceOption, SourceOptions

if TYPE_CHECKING:
    from memory.runtime import Runtime

# How long a process trusts its cached copy: a source added or rotated by the CLI while `serve`
# runs takes effect within this many seconds. Unknown names are cached as misses for as long, and
# the cache is bounded (LRU), so names made up by strangers cannot grow it.
CACHE_TTL_S = 2.0
CACHE_MAX_ENTRIES = 10_000
# A webhook provider waits ~10 s at most: an unreachable PostgreSQL must not hold a request longer.
LOAD_TIMEOUT_S = 2.0
_COLUMNS = "name, tenant, provider, secrets, config"


class SourceMisconfigured(HooklineError):
    """A stored source that cannot take deliveries: options that do not parse, or sealed secrets that
    no configured key opens. Fixed by ``source add`` again, or by setting the right keys."""


class SourceMoveRefused(InvalidArgument):
    """``add`` of a name that belongs to another tenant, without ``force``."""


@dataclass(frozen=True, slots=True)
class SourceListing:
    """A source as ``source list`` shows it: never its secrets, only how many and how many sealed."""

    name: str
    tenant: str
    provider: str
    secrets: int
    sealed: int
    options: SourceOptions | None  # None when the stored options do not parse
    problem: str | None  # why deliveries to it are refused (503), if they are


@dataclass(frozen=True, slots=True)
class SecretsRewrap:
    sources: int
    resealed: int  # sources whose secrets were sealed again (or for the first time)
    failures: tuple[str, ...]  # sources whose secrets no configured key opens


@dataclass(frozen=True, slots=True)
class _Broken:
    reason: str  # cached as text: each request raises a fresh SourceMisconfigured


_Loaded = Source | _Broken | None


def secret_aad(name: str) -> bytes:
    """The associated data a source's sealed secrets are bound to."""
    return b"hookline:source-secret:" + name.encode()


class SourceStore:
    def __init__(
        self,
        db: AsyncConnectionPool,
        keyring: Keyring | None = None,
        *,
        cache_ttl_s: float = CACHE_TTL_S,
        max_entries: int = CACHE_MAX_ENTRIES,
    ) -> None:
        self._db = db
        self._keyring = keyring  # None: secrets are stored as given, and sealed ones do not open
        self._cache: TtlLru[str, _Loaded] = TtlLru(cache_ttl_s, max_entries)
        # One load per name at a time; entries leave when their load ends (the TTL is a backstop).
        self._loading: TtlLru[str, asyncio.Future[_Loaded]] = TtlLru(LOAD_TIMEOUT_S * 5, max_entries)

    @classmethod
    def for_runtime(cls, rt: Runtime) -> SourceStore:
        """A store that seals and opens secrets with the runtime's ``HOOKLINE_ENCRYPTION_KEYS``."""
        return cls(rt.db, Keyring.optional(rt.settings.encryption_keys))

    async def add(
        self,
        name: str,
        provider: str,
        secrets: Sequence[str],
        tenant: str,
        options: SourceOptions | None = None,
        *,
        force: bool = False,
    ) -> Source:
        """Add a source, or update one of the same tenant; moving one from another tenant needs
        ``force`` (SourceMoveRefused otherwise). Secrets are sealed when a keyring is set."""
        check_source(name)
        check_tenant(tenant)
        if not secrets or any(not secret.strip() for secret in secrets):
            raise InvalidArgument("a source needs at least one non-empty secret")
        if any(secret.startswith(SEALED_TEXT) for secret in secrets):
            raise InvalidArgument(f"a secret may not begin with {SEALED_TEXT!r} (the mark of a sealed one)")
        options = SourceOptions.parse((options or SourceOptions()).stored(), provider)
        stored = [self._seal(name, secret) for secret in secrets]
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute("INSERT INTO tenants (id) VALUES (%s) ON CONFLICT DO NOTHING", (tenant,))
            written = await (
                await conn.execute(
                    f"""
                    INSERT INTO sources ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s)
                    ON CONFLICT (name) DO UPDATE SET
                        tenant = excluded.tenant, provider = excluded.provider,
                        secrets = excluded.secrets, config = excluded.config
                    WHERE sources.tenant = excluded.tenant OR %s
                    RETURNING name
                    """,
                    (name, tenant, provider, stored, Jsonb(options.stored()), force),
                )
            ).fetchone()
            if written is None:
                owner = await (
                    await conn.execute("SELECT tenant FROM sources WHERE name = %s", (name,))
                ).fetchone()
                raise SourceMoveRefused(
                    f"source {name!r} belongs to tenant {owner[0] if owner else '?'!r}; "
                    f"moving it (and its secrets) to tenant {tenant!r} must be forced"
                )
        self._cache.pop(name)
        return Source(name, tenant, provider, tuple(secrets), options)

    async def list(self, tenant: str | None = None) -> list[SourceListing]:
        query = f"SELECT {_COLUMNS} FROM sources"
        params: tuple[str, ...] = ()
        if tenant is not None:
            query += " WHERE tenant = %s"
            params = (check_tenant(tenant),)
        async with self._db.connection() as conn:
            rows = await (await conn.execute(query + " ORDER BY name", params)).fetchall()
        return [self._listing(*row) for row in rows]

    async def remove(self, name: str) -> bool:
        async with self._db.connection() as conn:
            cursor = await conn.execute("DELETE FROM sources WHERE name = %s", (check_source(name),))
        self._cache.pop(name)
        return cursor.rowcount > 0

    async def get(self, name: str) -> Source:
        """The source called ``name`` (cached for the TTL); raises UnknownSource, SourceMisconfigured,
        InvalidIdentifier (a name that breaks the rule) or StoreUnavailable.

        One load per name at a time: concurrent requests that miss the cache share it, so a cache
        expiry under load costs one query, not one per in-flight request.
        """
        check_source(name)
        known, last = self._cache.stale(name)
        found, loaded = self._cache.get(name)
        if not found:
            loading = self._loading.stale(name)[1]
            if loading is None:
                loading = asyncio.ensure_future(self._refresh(name))
                self._loading.put(name, loading)
            try:
                loaded = await asyncio.shield(loading)
            except StoreUnavailable:
                if not known:
                    raise
                loaded = last  # PostgreSQL is down: the last known source keeps intake up
        if isinstance(loaded, _Broken):
            raise SourceMisconfigured(loaded.reason)
        if loaded is None:
            raise UnknownSource(f"no source named {name!r}")
        return loaded

    async def rewrap(self) -> SecretsRewrap:
        """Seal every source's secrets with the active key (plaintext ones for the first time)."""
        keyring = self._keyring
        if keyring is None:
            raise InvalidArgument("HOOKLINE_ENCRYPTION_KEYS is not set: nothing to seal secrets with")
        async with self._db.connection() as conn:
            names = [row[0] for row in await (await conn.execute("SELECT name FROM sources")).fetchall()]
        resealed = 0
        failures: list[str] = []
        for name in sorted(names):
            async with self._db.connection() as conn, conn.transaction():
                row = await (
                    await conn.execute("SELECT secrets FROM sources WHERE name = %s FOR UPDATE", (name,))
                ).fetchone()
                if row is None:
                    continue  # removed meanwhile
                try:
                    fresh = [self._reseal(keyring, name, secret) for secret in row[0]]
                except DecryptionError as exc:
                    failures.append(f"{name}: {exc}")
                    continue
                if fresh != list(row[0]):
                    await conn.execute("UPDATE sources SET secrets = %s WHERE name = %s", (fresh, name))
                    resealed += 1
            self._cache.pop(name)
        return SecretsRewrap(len(names), resealed, tuple(failures))

    async def _refresh(self, name: str) -> _Loaded:
        try:
            loaded = await self._load(name)
            self._cache.put(name, loaded)
            return loaded
        finally:
            self._loading.pop(name)

    async def _load(self, name: str) -> _Loaded:
        try:
            async with self._db.connection(timeout=LOAD_TIMEOUT_S) as conn:
                row = await (
                    await conn.execute(f"SELECT {_COLUMNS} FROM sources WHERE name = %s", (name,))
                ).fetchone()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"cannot read sources from PostgreSQL: {exc}") from exc
        if row is None:
            return None
        try:
            return self._source(*row)
        except SourceMisconfigured as exc:
            return _Broken(str(exc))

    def _source(self, name: str, tenant: str, provider: str, secrets: Sequence[str], config: Any) -> Source:
        """A stored row as a source: options parsed, secrets opened. Raises SourceMisconfigured."""
        options = _options(name, provider, config)
        return Source(name, tenant, provider, tuple(self._open(name, secret) for secret in secrets), options)

    def _listing(
        self, name: str, tenant: str, provider: str, secrets: Sequence[str], config: Any
    ) -> SourceListing:
        try:
            options: SourceOptions | None = _options(name, provider, config)
        except SourceMisconfigured:
            options = None
        try:
            self._source(name, tenant, provider, secrets, config)
            problem = None
        except SourceMisconfigured as exc:
            problem = str(exc)
        sealed = sum(secret.startswith(SEALED_TEXT) for secret in secrets)
        return SourceListing(name, tenant, provider, len(secrets), sealed, options, problem)

    def _seal(self, name: str, secret: str) -> str:
        return secret if self._keyring is None else self._keyring.seal_text(secret, secret_aad(name))

    def _open(self, name: str, stored: str) -> str:
        try:
            if self._keyring is not None:
                return self._keyring.open_text(stored, secret_aad(name))
            kid = text_sealed_with(stored)
        except DecryptionError as exc:
            raise SourceMisconfigured(f"a secret of source {name!r} does not open: {exc}") from None
        if kid is not None:
            raise SourceMisconfigured(
                f"source {name!r} has secrets sealed with key {kid!r}, "
                "and HOOKLINE_ENCRYPTION_KEYS is not set"
            )
        return stored

    @staticmethod
    def _reseal(keyring: Keyring, name: str, stored: str) -> str:
        if text_sealed_with(stored) == keyring.active:
            return stored
        return keyring.seal_text(keyring.open_text(stored, secret_aad(name)), secret_aad(name))


def _options(name: str, provider: str, config: Any) -> SourceOptions:
    if not isinstance(config, dict):
        raise SourceMisconfigured(f"source {name!r} has stored options that are not an object")
    try:
        return SourceOptions.parse(config, provider)
    except BadSourceOption as exc:
        raise SourceMisconfigured(f"source {name!r} has a bad stored option: {exc}") from None

"""The embedding cache in Redis, kept per tenant: tenants never share a cached vector.

A context's embedding is cached under the context's own key (one per context, in its slot, so that
``forget`` deletes it with the context); a search query's under the tenant and the query's digest.
``embed_contexts`` and ``embed_query`` take any ``Embedder`` and use the cache when it is there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import cast

import numpy as np
import redis.asyncio as aioredis

from memory import keys
from memory.embed import Embedder
from memory.errors import StoreUnavailable
from memory.runtime import is_cluster


class CachedEmbedder:
    """Caches ``inner``'s vectors in Redis, per tenant: tenants never share a cached vector.

    - ``embed_contexts``: a context's text (the index group and the vector refresher) is cached under
      the context's own key (``keys.embedding_context``, in the context's slot), with the digest of
      the text it was made from: one key per context, which ``forget`` deletes with the rest of the
      context, and which is written only while the context has no tombstone (a script in that slot),
      so an embedding that races a ``forget`` does not outlive it.
    - ``embed_query``: a search query is cached per tenant and digest (``keys.embedding_query``).
    - ``embed`` (no tenant): not cached, straight to ``inner``.

    Only texts missing from the cache go to ``inner``. Owns ``inner`` (closes it), not the Redis
    client. Keys are read with non-transactional pipelines, which Redis Cluster splits by slot.
    """

    def __init__(self, inner: Embedder, redis: aioredis.Redis, ttl_s: int) -> None:
        self.dim = inner.dim
        self.name = inner.name
        self._inner = inner
        self._redis = redis
        self._ttl_s = ttl_s
        self._store = redis.register_script(_STORE_UNLESS_FORGOTTEN)

    def digest(self, text: str) -> bytes:
        """What a cached vector is checked against: sha256 of the embedder's name and the text."""
        return hashlib.sha256(f"{self.name}\x00{text}".encode()).digest()

    async def embed(self, texts: Sequence[str], *, background: bool = False) -> list[list[float]]:
        return await self._inner.embed(texts, background=background)

    async def embed_contexts(
        self, items: Sequence[tuple[str, str, str]], *, background: bool = False
    ) -> list[list[float]]:
        """One vector per (tenant, context id, text), in order; cached per context."""
        if not items:
            return []
        names = [keys.embedding_context(tenant, ctx_id) for tenant, ctx_id, _ in items]
        digests = [self.digest(text) for _, _, text in items]
        vectors: list[list[float] | None] = []
        for raw, digest in zip(await self._read(names), digests, strict=True):
            # A hit only for the very text it was made from: the context's text changes as it grows.
            body = raw[len(digest) :] if raw is not None and raw.startswith(digest) else None
            vectors.append(_decode(body, self.dim) if body is not None else None)
        missing = [i for i, vector in enumerate(vectors) if vector is None]
        if missing:
            fresh = await self._inner.embed([items[i][2] for i in missing], background=background)
            writes = []
            for i, vector in zip(missing, fresh, strict=True):
                vectors[i] = vector
                tenant, ctx_id, _ = items[i]
                tombstone = keys.context_forgotten(tenant, ctx_id)
                writes.append(([names[i], tombstone], digests[i] + _encode(vector)))
            await self._write_contexts(writes)
        return cast(list[list[float]], vectors)

    async def embed_query(self, tenant: str, text: str) -> list[float]:
        """The vector of a search query, cached for this tenant."""
        name = keys.embedding_query(tenant, self.digest(text).hex())
        (raw,) = await self._read([name])
        vector = _decode(raw, self.dim) if raw is not None else None
        if vector is None:
            (vector,) = await self._inner.embed([text])
            try:
                await self._redis.set(name, _encode(vector), ex=self._ttl_s)
            except aioredis.RedisError as exc:
                raise StoreUnavailable(f"Redis failed writing the embedding cache: {exc}") from exc
        return vector

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def _read(self, names: list[str]) -> list[bytes | None]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.get(name)
                return cast(list[bytes | None], await pipe.execute())
        except aioredis.RedisError as exc:
            raise StoreUnavailable(f"Redis failed reading the embedding cache: {exc}") from exc

    async def _write_contexts(self, writes: list[tuple[list[str], bytes]]) -> None:
        ttl = str(self._ttl_s)
        try:
            if is_cluster(self._redis):  # no scripts in cluster pipelines: one call each
                for names, value in writes:
                    await self._store(keys=names, args=[value, ttl])
                return
            async with self._redis.pipeline(transaction=False) as pipe:
                for names, value in writes:
                    await self._store(keys=names, args=[value, ttl], client=pipe)
                await pipe.execute()
        except aioredis.RedisError as exc:
            raise StoreUnavailable(f"Redis failed writing the embedding cache: {exc}") from exc


# KEYS: the context's cache key, its tombstone (one slot). A context forgotten meanwhile is not cached.
_STORE_UNLESS_FORGOTTEN = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""


def _encode(vector: list[float]) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def _decode(raw: bytes, dim: int) -> list[float] | None:
    """A cached vector, or None (a miss) when its size is not ``dim`` float32s."""
    if len(raw) != 4 * dim:
        return None
    return cast(list[float], np.frombuffer(raw, dtype=np.float32).tolist())


async def embed_contexts(
    embedder: Embedder, items: Sequence[tuple[str, str, str]], *, background: bool = False
) -> list[list[float]]:
    """The vectors of (tenant, context id, text) items, through the per-context cache if there is one."""
    if isinstance(embedder, CachedEmbedder):
        return await embedder.embed_contexts(items, background=background)
    return await embedder.embed([text for _, _, text in items], background=background)


async def embed_query(embedder: Embedder, tenant: str, text: str) -> list[float]:
    """The vector of a tenant's search query, through the per-tenant cache if there is one."""
    if isinstance(embedder, CachedEmbedder):
        return await embedder.embed_query(tenant, text)
    return (await embedder.embed([text]))[0]

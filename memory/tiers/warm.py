"""The warm tier's codec: zstd with dictionaries trained per source on real contexts.

Dictionaries live in Redis (``keys.zstd_dictionary``), each under the id zstd gave it; every warm blob
records the id it was compressed with (0: none), so retraining never strands an old blob. Loaded
dictionaries are cached per process (they never change once written).
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import redis.asyncio as aioredis
import structlog
import zstandard

from memory import keys
from memory.errors import CorruptEnvelope

log = structlog.get_logger(__name__)

DICT_SIZE = 64 * 1024
MIN_SAMPLES = 16
LEVEL = 9


class WarmCodec:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._dicts: dict[int, zstandard.ZstdCompressionDict] = {}

    async def current(self, source: str) -> int:
        value = await self.redis.get(keys.zstd_current_dictionary(source))
        return int(value) if value else 0

    async def _dictionary(self, dict_id: int) -> zstandard.ZstdCompressionDict | None:
        if dict_id == 0:
            return None
        cached = self._dicts.get(dict_id)
        if cached is None:
            raw = await self.redis.get(keys.zstd_dictionary(dict_id))
            if not isinstance(raw, bytes):
                raise CorruptEnvelope(f"zstd dictionary {dict_id} is missing")
            cached = self._dicts[dict_id] = zstandard.ZstdCompressionDict(raw)
        return cached

    async def train(self, source: str, samples: Sequence[bytes]) -> int:
        """Train a dictionary for this source and make it current; 0 if there is too little data."""
        if len(samples) < MIN_SAMPLES:
            return 0
        size = min(DICT_SIZE, max(4096, sum(len(s) for s in samples) // 10))
        try:
            # Training takes up to seconds of CPU: off the event loop, which serves intake too.
            trained = await anyio.to_thread.run_sync(
                lambda: zstandard.train_dictionary(size, list(samples), level=LEVEL)
            )
        except zstandard.ZstdError as exc:
            log.warning("warm.train_failed", source=source, samples=len(samples), error=str(exc))
            return 0
        dict_id = trained.dict_id()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.zstd_dictionary(dict_id), trained.as_bytes())
            pipe.set(keys.zstd_current_dictionary(source), dict_id)
            pipe.set(keys.zstd_samples_since_training(source), 0)
            await pipe.execute()
        self._dicts[dict_id] = trained
        log.info("warm.trained", source=source, dict_id=dict_id, samples=len(samples), bytes=size)
        return dict_id

    async def compress(self, dict_id: int, data: bytes) -> bytes:
        dictionary = await self._dictionary(dict_id)
        compressor = (
            zstandard.ZstdCompressor(level=LEVEL, dict_data=dictionary)
            if dictionary
            else (zstandard.ZstdCompressor(level=LEVEL))
        )
        return compressor.compress(data)

    async def decompress(self, dict_id: int, blob: bytes) -> bytes:
        dictionary = await self._dictionary(dict_id)
        decompressor = (
            zstandard.ZstdDecompressor(dict_data=dictionary) if dictionary else (zstandard.ZstdDecompressor())
        )
        try:
            return decompressor.decompress(blob)
        except zstandard.ZstdError as exc:
            raise CorruptEnvelope(f"warm blob does not decompress: {exc}") from exc

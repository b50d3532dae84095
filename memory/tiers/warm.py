"""The warm tier's codec: zstd with dictionaries trained per source on real contexts.

Dictionaries live in Redis (``keys.zstd_dictionary``), each under the id zstd gave it; every warm blob
records the id it was compressed with (0: none), so retraining never strands an old blob. Loaded
dictionaries are cached per process (they never change once written). A blob's own frame header
names its dictionary too, and that is what decompression goes by.

A dictionary holds pieces of its training samples verbatim, so ``forget`` must be able to remove one
that learned from a forgotten context. Each training records, per source, the first event id of
every sample (``keys.zstd_members``): a sample is a context document, whose events are keyed by
their ids in sorted order. ``scrub`` then finds the source's dictionaries that learned from the
context, retires them (``compress`` stops using them at once, in every process), retrains the
source's current one from the cleaned pool when it is one of them (or falls back to none), moves
every warm blob off them (recompressed, written with a compare-and-set script like the hot tier's,
so a concurrent event, promotion or demotion wins and is never lost), and then deletes them. Every
step can be re-run: a dictionary is deleted, with its record, only once no blob uses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Collection, Sequence

import anyio
import orjson
import redis.asyncio as aioredis
import structlog
import zstandard

from memory import keys
from memory.errors import CorruptEnvelope

log = structlog.get_logger(__name__)

DICT_SIZE = 64 * 1024
MIN_SAMPLES = 16
LEVEL = 9
PAGE = 500  # pool samples or warm blobs read per round trip
ROUNDS = 3  # scrub again while a concurrent training made a dictionary of the context
ATTEMPTS = 3  # compare-and-set attempts per blob before it is left for a re-run
FRAME_HEADER = 18  # bytes: the longest zstd frame header, which holds the dictionary id

# (tenant, context id) of a source's warm contexts, as the index knows them.
WarmContexts = Callable[[str], AsyncIterator[tuple[str, str]]]

# The warm blob is swapped for its recompression only if it is still the one read (same SHA-1).
_RECOMPRESS = """
if redis.call('HGET', KEYS[1], 'tier') ~= 'warm' then return 0 end
local blob = redis.call('GET', KEYS[2])
if (not blob) or redis.sha1hex(blob) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'warm_dict', ARGV[3], 'warm_bytes', string.len(ARGV[2]))
return 1
"""


class WarmCodec:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._dicts: dict[int, zstandard.ZstdCompressionDict] = {}
        self._recompress = redis.register_script(_RECOMPRESS)

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
        # Who it learned from, before anything is compressed with it (forget reads this).
        members = sorted({first_event_id(sample) for sample in samples})
        await self.redis.hset(keys.zstd_members(source), str(dict_id), orjson.dumps(members))
        # Three keys in three Cluster slots, so no transaction: each write is safe to stop after.
        # The dictionary first (NX: an id is a hash of the content, and a stored dictionary never
        # changes), then the pointer that makes it current, then the counter. A crash in between
        # leaves an unused dictionary, or an early retraining: never a pointer to nothing.
        if await self.redis.set(keys.zstd_dictionary(dict_id), trained.as_bytes(), nx=True):
            self._dicts[dict_id] = trained
        await self.redis.set(keys.zstd_current_dictionary(source), dict_id)
        await self.redis.set(keys.zstd_samples_since_training(source), 0)
        log.info("warm.trained", source=source, dict_id=dict_id, samples=len(samples), bytes=size)
        return dict_id

    async def compress(self, dict_id: int, data: bytes) -> bytes:
        """``data`` compressed with that dictionary, or with none if ``forget`` retired it (the frame
        then names no dictionary, and ``decompress`` goes by the frame)."""
        if dict_id and await self.redis.sismember(keys.zstd_retired(), str(dict_id)):
            self._dicts.pop(dict_id, None)
            dict_id = 0
        dictionary = await self._dictionary(dict_id)
        compressor = (
            zstandard.ZstdCompressor(level=LEVEL, dict_data=dictionary)
            if dictionary
            else (zstandard.ZstdCompressor(level=LEVEL))
        )
        return compressor.compress(data)

    async def decompress(self, dict_id: int, blob: bytes) -> bytes:
        dictionary = await self._dictionary(frame_dictionary(blob, dict_id))
        decompressor = (
            zstandard.ZstdDecompressor(dict_data=dictionary) if dictionary else (zstandard.ZstdDecompressor())
        )
        try:
            return decompressor.decompress(blob)
        except zstandard.ZstdError as exc:
            raise CorruptEnvelope(f"warm blob does not decompress: {exc}") from exc

    # -- forget ----------------------------------------------------------------------------------

    async def remove_samples(self, source: str, event_ids: Collection[str], subject: str | None) -> int:
        """Delete the training samples of one context from the source's pool: a sample is one of its
        documents (cut short) if it holds one of its event ids as a key, or its subject."""
        needles = [orjson.dumps(event_id) + b":" for event_id in event_ids]
        if subject:
            needles.append(orjson.dumps(subject))
        pool = keys.zstd_sample_pool(source)
        doomed: set[bytes] = set()
        size = int(await self.redis.llen(pool))
        for start in range(0, size, PAGE):
            for sample in await self.redis.lrange(pool, start, start + PAGE - 1):
                if isinstance(sample, bytes) and any(needle in sample for needle in needles):
                    doomed.add(sample)
        removed = 0
        for sample in sorted(doomed):
            removed += int(await self.redis.lrem(pool, 0, sample))  # type: ignore[arg-type]  # bytes work
        return removed

    async def scrub(
        self, source: str, event_ids: Collection[str], samples_removed: bool, warm: WarmContexts
    ) -> dict[str, int]:
        """Remove every dictionary of ``source`` that learned from the context whose events are
        ``event_ids`` (see the module docstring); returns what was done."""
        counts = {"dictionaries": 0, "recompressed": 0, "dictionaries_kept": 0}
        for _ in range(ROUNDS):  # a pass that read the pool before the samples went may train again
            tainted = await self._tainted(source, set(event_ids), samples_removed)
            if not tainted:
                break
            await self.redis.sadd(keys.zstd_retired(), *sorted(str(d) for d in tainted))
            readable = await self._loadable(tainted)
            target = await self._replace_current(source, tainted)
            stuck: set[int] = set()
            for _sweep in range(2):  # the second one finds a demotion that the index showed late
                async for tenant, ctx_id in warm(source):
                    moved, used = await self._move(tenant, ctx_id, tainted, readable, target)
                    counts["recompressed"] += moved
                    stuck |= used
            await self._drop(source, tainted - stuck)
            counts["dictionaries"] += len(tainted - stuck)
            counts["dictionaries_kept"] = len(stuck)
            samples_removed = False
            if stuck:
                log.warning("warm.scrub_incomplete", source=source, dictionaries=sorted(stuck))
                break
        return counts

    async def _tainted(self, source: str, event_ids: set[str], samples_removed: bool) -> set[int]:
        records = {
            int(name): set(orjson.loads(members))
            for name, members in (await self.redis.hgetall(keys.zstd_members(source))).items()
        }
        # "" stands for a sample whose first event id could not be read: it may be anyone's.
        tainted = {
            d for d, members in records.items() if members & event_ids or (samples_removed and "" in members)
        }
        current = await self.current(source)
        if samples_removed and current and current not in records:
            # Trained before dictionaries recorded their samples: it may hold the removed ones.
            # Recorded as the context's, so that a re-run after an interruption finds it again.
            await self.redis.hset(keys.zstd_members(source), str(current), orjson.dumps(sorted(event_ids)))
            tainted.add(current)
        return tainted

    async def _loadable(self, tainted: set[int]) -> set[int]:
        """Load the tainted dictionaries (blobs are moved off them with this copy); those already
        gone cannot be read by anyone, so their blobs are left as they are."""
        readable = set()
        for dict_id in tainted:
            try:
                await self._dictionary(dict_id)
            except CorruptEnvelope:
                continue
            readable.add(dict_id)
        return readable

    async def _replace_current(self, source: str, tainted: set[int]) -> int:
        """The dictionary the moved blobs get: the source's current one, retrained from the cleaned
        pool if it is tainted; 0 (none, and the next demotion trains one) if that cannot be done."""
        current = await self.current(source)
        if current not in tainted:
            return current
        pool = await self.redis.lrange(keys.zstd_sample_pool(source), 0, -1)
        fresh = await self.train(source, [s for s in pool if isinstance(s, bytes)])
        if fresh == 0 or fresh in tainted:
            await self.redis.delete(keys.zstd_current_dictionary(source))
            return 0
        return fresh

    async def _move(
        self, tenant: str, ctx_id: str, tainted: set[int], readable: set[int], target: int
    ) -> tuple[int, set[int]]:
        """Recompress the context's warm blob with ``target`` if a tainted dictionary made it.
        Returns (1 if moved, else 0; the tainted dictionaries it still uses)."""
        head, warm = keys.context(tenant, ctx_id), keys.context_warm(tenant, ctx_id)
        for _ in range(ATTEMPTS):
            async with self.redis.pipeline(transaction=False) as pipe:  # one slot
                pipe.hget(head, "tier")
                pipe.getrange(warm, 0, FRAME_HEADER - 1)
                tier, header = await pipe.execute()
            used = frame_dictionary(header, 0) if tier == b"warm" and header else 0
            if used not in tainted:
                return 0, set()
            if used not in readable:
                return 0, set()  # its dictionary is gone already: nothing can read it
            blob = await self.redis.get(warm)
            if not isinstance(blob, bytes):
                continue
            data = await self.decompress(used, blob)
            fresh = await self.compress(target, data)
            sha1 = hashlib.sha1(blob).hexdigest()
            if await self._recompress(keys=[head, warm], args=[sha1, fresh, target]):
                return 1, set()
        return 0, {used}

    async def _drop(self, source: str, dict_ids: set[int]) -> None:
        if not dict_ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:  # one key a command: any slot
            for dict_id in sorted(dict_ids):
                pipe.delete(keys.zstd_dictionary(dict_id))
                pipe.hdel(keys.zstd_members(source), str(dict_id))
            await pipe.execute()
        for dict_id in dict_ids:
            self._dicts.pop(dict_id, None)
        log.info("warm.scrubbed", source=source, dictionaries=sorted(dict_ids))


def frame_dictionary(blob: bytes, recorded: int) -> int:
    """The dictionary id a zstd frame names (0: none); ``recorded`` if the header cannot be read."""
    try:
        return int(zstandard.get_frame_parameters(blob[:FRAME_HEADER]).dict_id)
    except zstandard.ZstdError:
        return recorded


def first_event_id(sample: bytes) -> str:
    """The first event id of a training sample (a context document, its events keyed by id in
    sorted order, cut short); "" when the sample does not start like one."""
    prefix = b'{"events":{'
    if not sample.startswith(prefix + b'"'):
        return ""
    try:
        key, _ = json.JSONDecoder().raw_decode(
            sample[len(prefix) : len(prefix) + 4096].decode("utf-8", "ignore")
        )
    except ValueError:
        return ""
    return key if isinstance(key, str) else ""

"""Stream primitives: the micro-batching producer (dedup window + XADD in one script) and groups.

Concurrent intake requests each ``await producer.submit(...)``; one named task drains the queue and
sends everything waiting as one pipeline, so a burst of N requests costs one round trip, not N.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from memory import keys
from memory.errors import StoreUnavailable

log = structlog.get_logger(__name__)

# Returns the new entry id, or false when the window key says "seen" (a duplicate). The window
# key and the stream share the partition's hash tag, so this is one atomic step: an event is never
# marked seen without being queued, nor queued twice.
_DEDUP_XADD = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('INCR', KEYS[3])
  return redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
end
return false
"""

MAX_BATCH = 512


@dataclass(frozen=True, slots=True)
class Submission:
    window_key: str
    window_s: int
    stream: str
    counter: str
    envelope: bytes


class StreamProducer:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(_DEDUP_XADD)
        self._queue: asyncio.Queue[tuple[Submission, asyncio.Future[str | None]]] = asyncio.Queue()

    async def submit(self, item: Submission) -> str | None:
        """Queue one event; the stream entry id, or None for a duplicate. Raises StoreUnavailable."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def run(self) -> None:
        """The producer loop (a named task in the app's TaskGroup)."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._flush(batch)

    async def _flush(self, batch: list[tuple[Submission, asyncio.Future[str | None]]]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for item, _ in batch:
                    await self._script(
                        keys=[item.window_key, item.stream, item.counter],
                        args=[item.window_s, item.envelope],
                        client=pipe,
                    )
                results = await pipe.execute(raise_on_error=False)
        except (aioredis.RedisError, OSError) as exc:
            error = StoreUnavailable(f"Redis is unavailable: {exc}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the request was cancelled (client went away)
                continue
            if isinstance(result, Exception):
                future.set_exception(StoreUnavailable(f"XADD failed: {result}"))
            else:
                future.set_result(None if result is None else result.decode())


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) if missing; an existing group is left alone."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def all_streams(partitions: int) -> list[str]:
    return [keys.events_stream(p) for p in range(partitions)]

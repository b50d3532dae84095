"""Stream primitives: the micro-batching producer (the dedup + XADD script) and consumer groups.

Concurrent intake requests each ``await producer.submit(...)``; one named task drains the queue and
sends everything waiting as one pipeline, so a burst of N requests costs one round trip, not N.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import NoScriptError, ResponseError

from ingest.dedup import DEDUP_XADD, Outcome
from ingest.metrics import DEDUP_HITS, REPLICATION_REFUSED
from memory import keys
from memory.errors import ConfigError, StoreUnavailable
from memory.ledger import Ledger
from memory.runtime import Runtime, is_cluster

log = structlog.get_logger(__name__)

MAX_BATCH = 512


@dataclass(frozen=True, slots=True)
class Submission:
    """One event for the dedup + XADD script (see ingest/dedup.py for KEYS and ARGV)."""

    window_key: str
    window_s: int
    stream: str
    counter: str
    envelope: bytes
    bloom_keys: tuple[str, ...] = ()
    bloom_positions: tuple[int, ...] = ()
    bloom_ttl_s: int = 0
    force: bool = False  # skip the Bloom check: the ledger said "not seen"
    body_key: str | None = None  # the body's hash, for sources whose signature dates nothing


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    entry_id: str | None = None


class NotReplicated(StoreUnavailable):
    """Fewer replicas than required confirmed the batch in time (WAIT): the events are refused, so
    the provider sends them again, instead of being acknowledged by a primary that may be about to
    lose them (a Sentinel failover, a crash)."""


class StreamProducer:
    def __init__(self, redis: aioredis.Redis, min_replicas: int = 0, replica_timeout_ms: int = 500) -> None:
        """``min_replicas`` > 0: every batch ends with ``WAIT min_replicas replica_timeout_ms`` in
        its pipeline, and nothing in it - not even "duplicate" - is answered unless enough replicas
        have it (a duplicate seen only by an isolated old primary is no proof either). Not with
        Redis Cluster, whose scripts run per node outside a pipeline (refused at start)."""
        if min_replicas and is_cluster(redis):
            raise ConfigError("HOOKLINE_REDIS_MIN_REPLICAS is not supported with Redis Cluster")
        self._redis = redis
        self._min_replicas = min_replicas
        self._replica_timeout_ms = replica_timeout_ms
        self._sha = hashlib.sha1(DEDUP_XADD.encode()).hexdigest()
        self._script = redis.register_script(DEDUP_XADD)  # loads itself on each node it reaches
        self._queue: asyncio.Queue[tuple[Submission, asyncio.Future[Result]]] = asyncio.Queue()

    async def submit(self, item: Submission) -> Result:
        """Run the dedup + XADD script for one event, batched with others. Raises StoreUnavailable."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def run(self) -> None:
        """The producer loop (a named task in the app's TaskGroup)."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._flush(batch)

    async def _flush(self, batch: list[tuple[Submission, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._evalsha_all(batch)
            if any(isinstance(r, NoScriptError) for r in results):  # Redis restarted or was flushed
                await self._redis.script_load(DEDUP_XADD)
                results = await self._evalsha_all(batch)
        except (aioredis.RedisError, OSError, NotReplicated) as exc:
            error: StoreUnavailable = (
                exc if isinstance(exc, NotReplicated) else StoreUnavailable(f"Redis is unavailable: {exc}")
            )
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
                future.set_result(_result(result))

    async def _evalsha_all(self, batch: list[tuple[Submission, asyncio.Future[Result]]]) -> list[Any]:
        # EVALSHA directly: redis-py's Script in a pipeline costs a SCRIPT EXISTS round trip per batch.
        # A NOSCRIPT reply writes nothing, so re-running the batch after loading the script is safe.
        if is_cluster(self._redis):  # no scripts in cluster pipelines: concurrent calls, per slot
            return list(
                await asyncio.gather(
                    *(self._script(keys=_keys(item), args=_args(item)) for item, _ in batch),
                    return_exceptions=True,
                )
            )
        async with self._redis.pipeline(transaction=False) as pipe:
            for item, _ in batch:
                item_keys = _keys(item)
                pipe.evalsha(self._sha, len(item_keys), *item_keys, *_args(item))
            if self._min_replicas:  # on the connection that wrote: WAIT counts this client's writes
                pipe.execute_command("WAIT", self._min_replicas, self._replica_timeout_ms)
            results = list(await pipe.execute(raise_on_error=False))
        if self._min_replicas:
            confirmed = results.pop()
            if isinstance(confirmed, Exception) or int(confirmed) < self._min_replicas:
                REPLICATION_REFUSED.inc()
                raise NotReplicated(
                    f"{confirmed} of {self._min_replicas} replicas confirmed the batch within "
                    f"{self._replica_timeout_ms} ms"
                )
        return results


def producer_for(rt: Runtime) -> StreamProducer:
    """The producer as the settings configure it (replica acknowledgements)."""
    return StreamProducer(rt.redis, rt.settings.redis_min_replicas, rt.settings.redis_replica_timeout_ms)


def _keys(item: Submission) -> list[str]:
    body = [item.body_key] if item.body_key else []
    return [item.window_key, item.stream, item.counter, *body, *item.bloom_keys]


def _args(item: Submission) -> list[bytes | str | int]:
    mode = "force" if item.force or not item.bloom_keys else "check"
    body = "1" if item.body_key else "0"
    return [item.window_s, item.envelope, item.bloom_ttl_s, mode, body, *item.bloom_positions]


_NOT_QUEUED = {0: Outcome.DUPLICATE_WINDOW, 1: Outcome.MAYBE_SEEN, 3: Outcome.DUPLICATE_BODY}


def _result(reply: list[int | bytes]) -> Result:
    code = int(reply[0])
    if code == 2:
        entry = reply[1]
        return Result(Outcome.QUEUED, entry.decode() if isinstance(entry, bytes) else str(entry))
    return Result(_NOT_QUEUED[code])


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) if missing; an existing group is left alone."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def all_streams(partitions: int) -> list[str]:
    return [keys.events_stream(p) for p in range(partitions)]


async def admit(
    producer: StreamProducer, ledger: Ledger, tenant: str, dedup_key: str, item: Submission
) -> bool:
    """Queue the event unless it is a duplicate; True for a duplicate.

    The window is exact, and so is the body key: only a byte-identical body within the window is a
    duplicate by it. A Bloom hit only means "maybe seen": the ledger decides, and a false positive
    is queued after all, so dedup never drops a unique event.
    """
    result = await producer.submit(item)
    if result.outcome is Outcome.MAYBE_SEEN:
        if await ledger.contains(tenant, dedup_key):
            DEDUP_HITS.labels(layer="bloom_confirmed").inc()
            return True
        DEDUP_HITS.labels(layer="bloom_false_positive").inc()
        result = await producer.submit(replace(item, force=True))
    if result.outcome in (Outcome.DUPLICATE_WINDOW, Outcome.DUPLICATE_BODY):
        DEDUP_HITS.labels(layer=result.outcome.value).inc()
        return True
    return False

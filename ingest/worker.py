"""Consumer-group workers: read the event streams, hand each batch to the group's handler, ack.

Each turn of the loop: retries that are due, then entries other consumers left stalled
(XAUTOCLAIM), then — after a start or a failure — this consumer's own pending entries, then new ones.
Only the read of new entries runs every turn: the heartbeat and XAUTOCLAIM run at most once a second,
and the retry ZSET is polled every 100 ms while it has nothing due, so that a turn under a steady
stream is one read, one apply and one ack (the context group's turn is the floor of the end-to-end
latency). Groups whose work nobody waits on (``index``, ``audit``) linger after a batch that was not
full, so that they read bigger batches and leave the event loop and the cores to ``context``.
An entry is acknowledged only once its effect is durable: its group's handler returned (for
``context`` the hot tier has it, for ``index`` PostgreSQL, for ``audit`` the ledger), or it was
written into the retry ZSET, or into the dead-letter stream.

Failures:
- a store is down (``StoreUnavailable``): nothing is acknowledged, the batch is re-read after a
  backoff with full jitter; no attempt is used up;
- an event fails on its own (its handler raised): the batch is retried one event at a time to
  isolate it; the failing event is scheduled in the retry ZSET (exponential backoff, full jitter,
  per source) and dead-lettered after its source's ``max_attempts``, with its error and count;
- an event can never succeed (undecodable envelope, unmappable payload): dead-lettered at once;
- a source's circuit breaker is open: its events are rescheduled without using up an attempt.

Whatever an event's handler raises — any exception type, not a list of expected ones — is that
event's failure (``memory.failures``: logged with its traceback, counted, retried, then
dead-lettered); only an outage (``failures.OUTAGES``) stops the batch. A turn that fails for any
other reason is logged and backed off too: no entry, of any shape, ends ``run`` (and with it the
process's TaskGroup), and none is read first forever after a restart.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol, cast

import anyio
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from ingest import consumers
from ingest.breaker import Breakers
from ingest.envelope import decode_envelope, to_event
from ingest.metrics import APPLIED, BATCH_FAILURES, DEAD_LETTERED, RETRIES_SCHEDULED
from ingest.retry import RetryPolicies, RetryQueue, member, split
from ingest.stream import all_streams, ensure_group
from memory import keys
from memory.errors import CorruptEnvelope, StoreUnavailable
from memory.failures import OUTAGES, describe, unit_failed
from memory.ledger import Ledger
from memory.models import Event
from memory.runtime import is_cluster
from memory.service import MemoryService, Rejected

log = structlog.get_logger(__name__)

Entry = tuple[str, str, dict[bytes, bytes]]  # (stream, entry id, fields)
# XREADGROUP's RESP2 reply (redis-py's own hint is a union over protocol versions)
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


class Handler(Protocol):
    """What a consumer group does with a batch; returns the events that can never succeed."""

    async def __call__(self, events: Sequence[Event]) -> Sequence[Rejected]: ...


def context_handler(service: MemoryService) -> Handler:
    return service.apply_hot


def index_handler(service: MemoryService) -> Handler:
    return service.index_events


def audit_handler(ledger: Ledger) -> Handler:
    async def record(events: Sequence[Event]) -> Sequence[Rejected]:
        await ledger.record(events)
        return ()

    return record


# How long a group waits after a batch that was not full before it reads again (its latency class).
# ``context`` is what get_context reads, so it never waits; ``index`` (search) and ``audit`` (the
# ledger) are background work: a short wait makes their batches bigger (one PostgreSQL transaction
# and one embedding pass per batch), which costs them a fraction of a second of freshness and gives
# the event loop and the cores to ``context`` under load. A full batch never waits: a backlog drains
# at full speed.
LINGER_MS = {keys.CONTEXT_GROUP: 0, keys.INDEX_GROUP: 200, keys.AUDIT_GROUP: 200}
HOUSEKEEPING_EVERY_S = 1.0  # heartbeat and XAUTOCLAIM; the slot lives 30 s, the heartbeat 120 s
RETRY_POLL_S = 0.1  # the retry ZSET, while it has nothing due
DECODE_SLICE = 64  # entries decoded between two yields to the event loop (a few ms of work)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    group: str = keys.CONTEXT_GROUP
    batch_size: int = 100
    block_ms: int = 1000
    claim_idle_ms: int = 15_000  # a batch renews its lease every third of this, so only dead work waits
    max_backoff_s: float = 30.0
    retries: RetryPolicies = field(default_factory=RetryPolicies)
    linger_ms: int | None = None  # None: the group's LINGER_MS

    @property
    def linger_s(self) -> float:
        return (LINGER_MS.get(self.group, 0) if self.linger_ms is None else self.linger_ms) / 1000


@dataclass(frozen=True, slots=True)
class _Item:
    entry: Entry
    event: Event

    @property
    def key(self) -> str:
        return member(self.entry[0], self.entry[1])


_Failure = tuple[_Item, BaseException]


class Worker:
    def __init__(
        self, redis: aioredis.Redis, handler: Handler, partitions: int, config: WorkerConfig, name: str
    ) -> None:
        self.redis = redis
        self.handler = handler
        self.streams = all_streams(partitions)
        self.config = config
        self.name = name
        self.retries = RetryQueue(redis, config.group)
        self.breakers = Breakers()
        self._stopping = False
        self._stop_requested = anyio.Event()
        self._own_pending = True  # after a start or a failure, our own unacked entries come first
        self._failures = 0
        self._next_housekeeping = 0.0  # monotonic times: 0 is "at the first turn"
        self._next_retry_poll = 0.0

    def stop(self) -> None:
        """Finish the batch in hand, acknowledge it, and return from run()."""
        self._stopping = True
        self._stop_requested.set()

    async def run(self) -> None:
        await self._ensure_groups()
        log.info("worker.start", group=self.config.group, consumer=self.name)
        while not self._stopping:
            try:
                await self._turn()
                self._failures = 0
            except StoreUnavailable as exc:
                await self._back_off(str(exc))
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                await self._back_off(f"Redis: {exc}")
            except ResponseError as exc:
                # NOGROUP: Redis lost the group (restart without persistence); UNBLOCKED: the stream
                # was deleted under a blocking read. Either way: recreate, then carry on.
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    unit_failed(f"worker:{self.config.group}", exc, consumer=self.name)
                    await self._back_off(describe(exc))
                    continue
                log.warning("worker.group_lost", error=str(exc))
                await self._ensure_groups()
            except Exception as exc:  # the loop's boundary: a bug in a turn must not end the process
                unit_failed(f"worker:{self.config.group}", exc, consumer=self.name)
                await self._back_off(describe(exc))
        log.info("worker.stop", group=self.config.group, consumer=self.name)

    async def _turn(self) -> None:
        now = time.monotonic()
        entries: list[Entry] = []
        if now >= self._next_housekeeping:
            await self._heartbeat()
            entries = await self._reclaim()
            # Entries turn stealable after claim_idle_ms: look at least five times within that, and
            # again at once while there is more to take over.
            every = min(HOUSEKEEPING_EVERY_S, self.config.claim_idle_ms / 5000)
            self._next_housekeeping = now if entries else now + every
        if not entries and now >= self._next_retry_poll:
            entries = await self._due_retries()
            if entries:  # more may be due: look again next turn
                await self._process(entries, retrying=True)
                return
            self._next_retry_poll = now + RETRY_POLL_S
        if not entries and self._own_pending:
            entries = await self._read("0")
            self._own_pending = bool(entries)
        if not entries:
            entries = await self._read(">", block=self.config.block_ms)
        if entries:
            await self._process(entries, retrying=False)
        linger = self.config.linger_s
        if linger and 0 < len(entries) < self.config.batch_size:  # caught up: let a bigger batch gather
            with anyio.move_on_after(linger):
                await self._stop_requested.wait()

    async def _ensure_groups(self) -> None:
        for stream in self.streams:
            await ensure_group(self.redis, stream, self.config.group)

    async def _heartbeat(self) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.consumer_heartbeat(self.config.group, self.name), str(int(time.time())), ex=120)
            await pipe.execute()
        await consumers.renew(self.redis, self.config.group, self.name)

    async def _back_off(self, reason: str) -> None:
        self._failures += 1
        self._own_pending = True
        self._next_housekeeping = 0.0  # a lost connection may have cost the lease: renew it first
        BATCH_FAILURES.labels(group=self.config.group).inc()
        delay = random.uniform(0, min(self.config.max_backoff_s, 0.1 * 2**self._failures))
        level = log.error if self._failures >= 5 else log.warning  # repeated failures are an alert
        level("worker.backoff", group=self.config.group, reason=reason, failures=self._failures)
        with anyio.move_on_after(delay):
            await self._stop_requested.wait()

    # -- reading ---------------------------------------------------------------------------

    async def _due_retries(self) -> list[Entry]:
        now_ms = int(time.time() * 1000)
        leased = await self.retries.lease_due(now_ms, self.config.claim_idle_ms, self.config.batch_size)
        found: list[Entry] = []
        for value in leased:
            stream, entry_id = split(value)
            rows = cast(
                list[tuple[bytes, dict[bytes, bytes]]], await self.redis.xrange(stream, entry_id, entry_id)
            )
            if rows:
                found.append((stream, entry_id, rows[0][1]))
            else:  # trimmed or deleted (forget): nothing left to retry
                await self.retries.done([value])
        return found

    async def _reclaim(self) -> list[Entry]:
        found: list[Entry] = []
        for stream in self.streams:
            reply = await self.redis.xautoclaim(
                stream,
                self.config.group,
                self.name,
                self.config.claim_idle_ms,
                "0-0",
                count=self.config.batch_size,
            )
            found += [(stream, _id(entry_id), fields) for entry_id, fields in reply[1] if fields]
        return found

    async def _read(self, start: str, block: int | None = None) -> list[Entry]:
        if is_cluster(self.redis):  # partitions live in different slots: one stream per call
            found_all: list[Entry] = []
            share = None if block is None else max(1, block // len(self.streams))
            for stream in self.streams:
                found_all += await self._read_streams([stream], start, None if found_all else share)
            return found_all
        return await self._read_streams(self.streams, start, block)

    async def _read_streams(self, streams: Sequence[str], start: str, block: int | None) -> list[Entry]:
        reply = await self.redis.xreadgroup(
            self.config.group,
            self.name,
            dict.fromkeys(streams, start),
            count=self.config.batch_size,
            block=block,
        )
        found: list[Entry] = []
        for stream, messages in cast(StreamReply, reply or []):
            name = stream.decode() if isinstance(stream, bytes) else stream
            found += [(name, _id(entry_id), fields) for entry_id, fields in messages if fields]
        return found

    # -- processing ------------------------------------------------------------------------

    async def _process(self, entries: Sequence[Entry], retrying: bool) -> None:
        items: list[_Item] = []
        dead: list[tuple[Entry, str, int]] = []
        paused: list[_Item] = []
        for n, entry in enumerate(entries, 1):
            if n % DECODE_SLICE == 0:  # a big batch of one group must not stall the others' turns
                await anyio.lowlevel.checkpoint()
            try:
                event = to_event(decode_envelope(entry[2].get(b"e", b"")), entry[1])
            except Exception as exc:  # whatever the bytes are, an entry that cannot be decoded never will
                if not isinstance(exc, CorruptEnvelope):
                    unit_failed(f"decode:{self.config.group}", exc, stream=entry[0], entry=entry[1])
                dead.append((entry, describe(exc), 0))
                continue
            item = _Item(entry, event)
            (items if self.breakers[event.source].allow() else paused).append(item)
        async with self._lease_renewal([item.entry for item in items]):
            rejected, failed = await self._apply(items)
        for item, reason in rejected:
            dead.append((item.entry, reason, 0))
        for item, cause in failed:
            await self._failed(item, cause, dead)
        for item in paused:  # breaker open: wait without using up an attempt
            await self._schedule(item, self.breakers[item.event.source].cooldown_s * 1000)
        await self._dead_letter(dead)
        failed_ids = {id(item) for item, _ in failed}
        done = [item.key for item in items if id(item) not in failed_ids]
        await self._ack(entries)
        if retrying:
            await self.retries.done(done + [member(e[0], e[1]) for e, _, _ in dead])
        APPLIED.labels(group=self.config.group).inc(len(items) - len(rejected) - len(failed))

    async def _apply(
        self, items: list[_Item]
    ) -> tuple[list[tuple[_Item, str]], list[tuple[_Item, BaseException]]]:
        """Apply the batch; if it fails for reasons of its own, one item at a time to isolate them."""
        if not items:
            return [], []
        try:
            rejected = self._rejections(items, await self.handler([item.event for item in items]))
        except OUTAGES:
            raise
        except Exception as exc:  # the event's own failure, whatever its type: isolate, then retry it
            if len(items) == 1:
                self.breakers[items[0].event.source].record(False)
                unit_failed(
                    f"event:{self.config.group}",
                    exc,
                    event_id=items[0].event.id,
                    source=items[0].event.source,
                )
                return [], [(items[0], exc)]
        else:
            for item in items:
                self.breakers[item.event.source].record(True)
            return rejected, []
        isolated: list[tuple[_Item, str]] = []
        failed: list[_Failure] = []
        for item in items:
            more_rejected, more_failed = await self._apply([item])
            isolated += more_rejected
            failed += more_failed
        return isolated, failed

    @staticmethod
    def _rejections(items: list[_Item], rejected: Sequence[Rejected]) -> list[tuple[_Item, str]]:
        by_event = {id(r.event): r.reason for r in rejected}
        return [(item, by_event[id(item.event)]) for item in items if id(item.event) in by_event]

    async def _failed(self, item: _Item, cause: BaseException, dead: list[tuple[Entry, str, int]]) -> None:
        attempts = await self.retries.failed(item.key)
        policy = self.config.retries.for_source(item.event.source)
        log.warning("worker.event_failed", group=self.config.group, event_id=item.event.id, attempts=attempts,
                    error=describe(cause, 500))  # fmt: skip
        if attempts >= policy.max_attempts:
            dead.append((item.entry, describe(cause), attempts))
        else:
            await self._schedule(item, policy.delay(attempts) * 1000)

    async def _schedule(self, item: _Item, delay_ms: float) -> None:
        await self.retries.schedule(item.key, int(time.time() * 1000 + delay_ms))
        RETRIES_SCHEDULED.labels(group=self.config.group).inc()

    async def _dead_letter(self, dead: Sequence[tuple[Entry, str, int]]) -> None:
        if not dead:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for (stream, entry_id, fields), reason, attempts in dead:
                log.error("worker.dead_letter", group=self.config.group, stream=stream, entry=entry_id,
                          reason=reason, attempts=attempts)  # fmt: skip
                pipe.xadd(
                    keys.dead_letters(),
                    {
                        "stream": stream,
                        "entry": entry_id,
                        "group": self.config.group,
                        "error": reason[:2000],
                        "attempts": str(attempts),
                        "at_ms": str(int(time.time() * 1000)),
                        "e": fields.get(b"e", b""),
                    },
                )
            await pipe.execute()
        DEAD_LETTERED.labels(group=self.config.group).inc(len(dead))

    async def _ack(self, entries: Sequence[Entry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id, _ in entries:
            by_stream.setdefault(stream, []).append(entry_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.config.group, *ids)
            await pipe.execute()

    @asynccontextmanager
    async def _lease_renewal(self, entries: Sequence[Entry]) -> AsyncIterator[None]:
        """While a batch is applied, re-claim its entries every third of the idle time, so that
        XAUTOCLAIM elsewhere never takes work that is merely slow."""
        if not entries:
            yield
            return
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._renew, entries, name=f"lease-renewal:{self.config.group}:{self.name}")
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The task group wraps what the batch raised: hand run() the exception itself, so that a
            # store outage backs off instead of ending the consumer (and its process's TaskGroup).
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def _renew(self, entries: Sequence[Entry]) -> None:
        by_stream: dict[str, list[int | bytes | str | memoryview[int]]] = {}
        for stream, entry_id, _ in entries:
            by_stream.setdefault(stream, []).append(entry_id)
        while True:
            await anyio.sleep(self.config.claim_idle_ms / 3000)
            for stream, ids in by_stream.items():
                await self.redis.xclaim(stream, self.config.group, self.name, 0, ids, justid=True)


def _id(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

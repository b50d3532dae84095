"""Consumer-group workers: read the event streams, hand each batch to the group's handler, ack.

Each loop first reclaims entries other consumers left stalled (XAUTOCLAIM), then re-reads its own
unacknowledged entries after a failure, then reads new ones. An entry is acknowledged only after
its group's handler returned, i.e. after its effect is durable: for group ``context`` both the hot
tier and PostgreSQL have it; for group ``audit`` the ledger row is committed. Entries that can never
be handled go to the dead-letter stream with their error.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import anyio
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ResponseError

from ingest.envelope import decode_envelope, to_event
from ingest.metrics import APPLIED, BATCH_FAILURES, DEAD_LETTERED
from ingest.stream import all_streams, ensure_group
from memory import keys
from memory.errors import CorruptEnvelope, StoreUnavailable
from memory.ledger import Ledger
from memory.models import Event
from memory.service import MemoryService, Rejected

log = structlog.get_logger(__name__)

Entry = tuple[str, str, dict[bytes, bytes]]  # (stream, entry id, fields)
# XREADGROUP's RESP2 reply (redis-py's own hint is a union over protocol versions)
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


class Handler(Protocol):
    """What a consumer group does with a batch; returns the events that can never succeed."""

    async def __call__(self, events: Sequence[Event]) -> Sequence[Rejected]: ...


def context_handler(service: MemoryService) -> Handler:
    return service.apply_events


def audit_handler(ledger: Ledger) -> Handler:
    async def record(events: Sequence[Event]) -> Sequence[Rejected]:
        await ledger.record(events)
        return ()

    return record


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    group: str = keys.CONTEXT_GROUP
    batch_size: int = 100
    block_ms: int = 1000
    claim_idle_ms: int = 60_000  # above the worst-case time to apply one batch
    max_backoff_s: float = 30.0


def consumer_name(index: int) -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{index}"


class Worker:
    def __init__(
        self, redis: aioredis.Redis, handler: Handler, partitions: int, config: WorkerConfig, name: str
    ) -> None:
        self.handler = handler
        self.redis = redis
        self.streams = all_streams(partitions)
        self.config = config
        self.name = name
        self._stopping = False
        self._stop_requested = anyio.Event()
        self._own_pending = True  # after a start or a failure, our own unacked entries come first
        self._failures = 0

    def stop(self) -> None:
        """Finish the batch in hand, acknowledge it, and return from run()."""
        self._stopping = True
        self._stop_requested.set()

    async def run(self) -> None:
        await self._ensure_groups()
        log.info("worker.start", group=self.config.group, consumer=self.name)
        while not self._stopping:
            try:
                entries = await self._next_batch()
                if entries:
                    await self._process(entries)
                self._failures = 0
            except StoreUnavailable as exc:
                await self._back_off(str(exc))
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                await self._back_off(f"Redis: {exc}")
            except ResponseError as exc:
                # NOGROUP: Redis lost the group (restart without persistence); UNBLOCKED: the stream
                # was deleted under a blocking read. Either way: recreate, then carry on.
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                log.warning("worker.group_lost", error=str(exc))
                await self._ensure_groups()
        log.info("worker.stop", group=self.config.group, consumer=self.name)

    async def _ensure_groups(self) -> None:
        for stream in self.streams:
            await ensure_group(self.redis, stream, self.config.group)

    async def _back_off(self, reason: str) -> None:
        self._failures += 1
        self._own_pending = True
        BATCH_FAILURES.labels(group=self.config.group).inc()
        delay = random.uniform(0, min(self.config.max_backoff_s, 0.1 * 2**self._failures))
        log.warning("worker.backoff", reason=reason, failures=self._failures, delay_s=round(delay, 3))
        with anyio.move_on_after(delay):
            await self._stop_requested.wait()

    async def _next_batch(self) -> list[Entry]:
        entries = await self._reclaim()
        if entries:
            return entries
        if self._own_pending:
            entries = await self._read("0")
            if entries:
                return entries
            self._own_pending = False
        return await self._read(">", block=self.config.block_ms)

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
        reply = await self.redis.xreadgroup(
            self.config.group,
            self.name,
            dict.fromkeys(self.streams, start),
            count=self.config.batch_size,
            block=block,
        )
        found: list[Entry] = []
        for stream, messages in cast(StreamReply, reply or []):
            name = stream.decode() if isinstance(stream, bytes) else stream
            found += [(name, _id(entry_id), fields) for entry_id, fields in messages if fields]
        return found

    async def _process(self, entries: Sequence[Entry]) -> None:
        decoded: list[tuple[Entry, Event]] = []
        dead: list[tuple[Entry, str]] = []
        for entry in entries:
            try:
                decoded.append((entry, to_event(decode_envelope(entry[2].get(b"e", b"")), entry[1])))
            except CorruptEnvelope as exc:
                dead.append((entry, str(exc)))
        rejected = await self.handler([event for _, event in decoded])
        reasons = {id(r.event): r.reason for r in rejected}
        dead += [(entry, reasons[id(event)]) for entry, event in decoded if id(event) in reasons]
        await self._dead_letter(dead)
        await self._ack(entries)
        APPLIED.labels(group=self.config.group).inc(len(decoded) - len(rejected))

    async def _dead_letter(self, dead: Sequence[tuple[Entry, str]]) -> None:
        if not dead:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for (stream, entry_id, fields), reason in dead:
                log.error("worker.dead_letter", stream=stream, entry=entry_id, reason=reason)
                pipe.xadd(
                    keys.dead_letters(),
                    {
                        "stream": stream,
                        "entry": entry_id,
                        "group": self.config.group,
                        "error": reason[:2000],
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
            pipe.set(keys.consumer_heartbeat(self.config.group, self.name), str(int(time.time())), ex=120)
            await pipe.execute()


def _id(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

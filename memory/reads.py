"""What a read leaves behind, done after the reader has its answer.

A read counts as an access (``touch``: a PostgreSQL write that keeps the context warm longer and
feeds the access boost), teaches the pre-warmer the agent's pattern, and may pre-warm what it
predicts; a search may pre-warm its strong cold hits. None of it changes the answer, and on a busy
server it cost a read several round trips (the PostgreSQL write, four Redis commands). In a server,
``ReadLog.run`` does it in the background: reads are queued, and each turn takes every queued read,
counts their accesses in one UPDATE per tenant, and then does their pre-warming.

It is feedback, so it is best effort: a full queue drops reads (counted by
``hookline_read_followups_dropped_total``), a stop finishes what is queued within its deadline.
Without a running log (the CLI, tests) ``MemoryService`` does the same inline.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import anyio
import redis.asyncio as aioredis
import structlog
from anyio.abc import TaskStatus
from prometheus_client import Counter

from memory.errors import HooklineError
from memory.failures import OUTAGES, unit_failed
from memory.lifecycle import touch
from memory.prewarm import Prewarmer
from memory.runtime import Runtime

log = structlog.get_logger(__name__)

QUEUED = 10_000
TURN = 500  # reads handled per turn at most

DROPPED = Counter(
    "hookline_read_followups_dropped_total",
    "Reads whose access count and pre-warming were dropped (queue full)",
)


@dataclass(frozen=True, slots=True)
class Read:
    """A context read by an agent (``agent`` set), or strong cold search hits to pre-warm (not)."""

    tenant: str
    ids: tuple[str, ...]
    at: datetime
    agent: str | None = None


async def follow_up(rt: Runtime, prewarmer: Prewarmer, reads: list[Read]) -> None:
    """Count the reads' accesses (one UPDATE per tenant), then learn from and pre-warm for each."""
    touched: dict[str, list[str]] = defaultdict(list)
    for read in reads:
        if read.agent is not None:
            touched[read.tenant].extend(read.ids)
    for tenant, ids in touched.items():
        await touch(rt, tenant, ids, max(r.at for r in reads if r.tenant == tenant))
    for read in reads:
        try:
            if read.agent is None:
                await prewarmer.warm(read.tenant, read.ids)
                continue
            for ctx_id in read.ids:
                await prewarmer.observe(read.tenant, read.agent, ctx_id, read.at)
                await prewarmer.after_read(read.tenant, read.agent, ctx_id)
        except (aioredis.RedisError, HooklineError) as exc:  # prediction is an optimisation
            log.warning("prewarm.failed", error=str(exc))
        except Exception as exc:  # one read's pre-warming is a unit: the others go on
            unit_failed("prewarm", exc, tenant=read.tenant)


class ReadLog:
    """The queue of reads to follow up, and the task that works through it (``run``)."""

    def __init__(self, rt: Runtime, prewarmer: Prewarmer, capacity: int = QUEUED) -> None:
        self.rt = rt
        self.prewarmer = prewarmer
        self._send, self._receive = anyio.create_memory_object_stream[Read](capacity)
        self.dropped = 0

    def record(self, read: Read) -> None:
        """Queue a read; never waits (a full queue drops it)."""
        try:
            self._send.send_nowait(read)
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            self.dropped += 1
            DROPPED.inc()

    def close(self) -> None:
        """No more reads: ``run`` returns once it has followed up the queued ones."""
        self._send.close()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with self._receive:
            async for first in self._receive:
                reads = [first]
                while len(reads) < TURN:
                    try:
                        reads.append(self._receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                try:
                    await follow_up(self.rt, self.prewarmer, reads)
                except OUTAGES as exc:  # feedback is best effort: these reads go uncounted
                    log.warning("reads.follow_up_failed", error=str(exc), reads=len(reads))
                except Exception as exc:  # the loop's boundary
                    unit_failed("read-follow-ups", exc, reads=len(reads))

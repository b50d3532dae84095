"""The embedding refresher: embeddings are made beside the index group, not inside it.

Embedding is the slowest step of indexing (all-MiniLM on one core: ~10 texts/s), and inside the
``index`` group a burst of new contexts held every batch's full-text rows back behind it, so a
busy index group fell ever further behind. Now the group only writes rows and wakes this loop, which
embeds whatever is due (``index.stale_embeddings``: never embedded first, then changed since) in
calls of ``BATCH``, until nothing is, then waits for the next wake or ``POLL_S``. Under a burst the
full text stays current and vectors lag; they catch up when it ends. Nothing is lost if the
process dies: what is due is read from PostgreSQL each time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import structlog
from anyio.abc import TaskStatus

from memory.failures import OUTAGES, unit_failed

log = structlog.get_logger(__name__)

BATCH = 32
POLL_S = 5.0  # due contexts the wake missed (another process's index group, the lifecycle)


class VectorRefresher:
    def __init__(self, refresh: Callable[[int], Awaitable[int]]) -> None:
        """``refresh(limit)`` embeds up to ``limit`` due contexts and returns how many it did."""
        self._refresh = refresh
        self._wake = anyio.Event()

    def wake(self) -> None:
        """Contexts changed: look for due ones now."""
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                done = await self._refresh(BATCH)
            except OUTAGES as exc:  # a store is down: wait, then look again
                log.warning("embeddings.refresh_failed", error=str(exc))
                done = 0
            except Exception as exc:  # the loop's boundary: nothing ends it but cancellation
                unit_failed("embeddings-loop", exc)
                done = 0
            if done < BATCH:  # caught up (or failing): wait for a wake or the poll
                with anyio.move_on_after(POLL_S):
                    await self._wake.wait()
                self._wake = anyio.Event()

"""The audit ledger: one row per accepted event (group "audit"), the ground truth for dedup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from memory.models import Event
from memory.runtime import pg_connection

_RECORD = """
INSERT INTO ledger (tenant, id, source, provider, event_type, delivery_id, received_at, stream_id,
                    schema_version)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant, id) DO NOTHING
"""


class Ledger:
    def __init__(self, db: AsyncConnectionPool) -> None:
        self._db = db

    async def record(self, events: Sequence[Event]) -> None:
        """Idempotent: an event recorded twice keeps its first row."""
        if not events:
            return
        rows: list[tuple[Any, ...]] = [
            (e.tenant, e.id, e.source, e.provider, e.event_type, e.delivery_id, e.received_at, e.stream_id,
             e.schema_version)
            for e in events
        ]  # fmt: skip
        async with pg_connection(self._db) as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_RECORD, rows)

    async def contains(self, tenant: str, event_id: str) -> bool:
        async with pg_connection(self._db) as conn:
            row = await (
                await conn.execute("SELECT 1 FROM ledger WHERE tenant = %s AND id = %s", (tenant, event_id))
            ).fetchone()
        return row is not None

    async def register_schema(self, version: int, descriptor: bytes) -> None:
        async with pg_connection(self._db) as conn:
            await conn.execute(
                "INSERT INTO envelope_schemas (version, descriptor) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (version, descriptor),
            )

    async def schema_versions(self) -> list[int]:
        async with pg_connection(self._db) as conn:
            rows = await (
                await conn.execute("SELECT version FROM envelope_schemas ORDER BY version")
            ).fetchall()
        return [int(row[0]) for row in rows]

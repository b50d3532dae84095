"""Daily roll-ups per source: what a day of events amounted to, kept after the contexts go cold.

One row per (tenant, source, day) in ``rollups``, written once the day is over (an idempotent upsert,
so re-running a day rewrites it). The text is extractive: the day's most important contexts with
their titles, states and summaries, most important first.

``rewrite`` regenerates given rows from what remains (``forget`` calls it, in its own transaction,
once the forgotten context's rows are gone), and deletes a row that nothing remains of.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from memory.runtime import Runtime, pg_connection
from memory.summarize import template

TOP = 10

_DAY = """
SELECT c.tenant, c.source, c.id, c.title, c.state, c.summary, c.importance, count(e.id) AS events
FROM contexts c JOIN events e ON e.tenant = c.tenant AND e.context_id = c.id
WHERE e.received_at >= %(start)s AND e.received_at < %(end)s {scope}
GROUP BY c.tenant, c.source, c.id
ORDER BY c.tenant, c.source, c.importance DESC, count(e.id) DESC
"""

_UPSERT = """
INSERT INTO rollups (tenant, source, day, summary, contexts, events)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant, source, day) DO UPDATE SET
    summary = excluded.summary, contexts = excluded.contexts, events = excluded.events,
    created_at = now()
"""


async def roll_up(rt: Runtime, day: date) -> int:
    """Write the roll-ups of ``day`` (UTC) for every tenant and source; returns how many."""
    async with pg_connection(rt.db) as conn:
        return len(await _write_day(conn, day))


async def _write_day(
    conn: AsyncConnection[Any], day: date, tenant: str | None = None, source: str | None = None
) -> set[tuple[str, str]]:
    """Write the roll-ups of ``day`` (of one tenant's source, if given); returns the (tenant, source)
    pairs that had events that day."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    params: dict[str, object] = {"start": start, "end": start + timedelta(days=1)}
    scope = ""
    if tenant is not None and source is not None:
        scope = "AND c.tenant = %(tenant)s AND c.source = %(source)s"
        params |= {"tenant": tenant, "source": source}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_DAY.format(scope=scope), params)
        groups: dict[tuple[str, str], list[dict[str, object]]] = {}
        for row in await cur.fetchall():
            groups.setdefault((str(row["tenant"]), str(row["source"])), []).append(row)
        for (group_tenant, group_source), items in groups.items():
            lines = "\n".join(
                f"- [{item['id']}] {item['title']}" + (f" ({item['state']})" if item["state"] else "")
                + f": {str(item['summary'])[:160]}"
                for item in items[:TOP]
            )  # fmt: skip
            events = sum(int(str(item["events"])) for item in items)
            text = template("rollup_daily").format(
                source=group_source, day=day.isoformat(), events=events, contexts=len(items), lines=lines
            )
            await cur.execute(_UPSERT, (group_tenant, group_source, day, text.strip(), len(items), events))
    return set(groups)


async def rows_naming(conn: AsyncConnection[Any], tenant: str, ctx_id: str) -> set[tuple[str, date]]:
    """The (source, day) of this tenant's roll-ups whose text lists the context."""
    rows = await (
        await conn.execute(
            "SELECT source, day FROM rollups WHERE tenant = %s AND strpos(summary, %s) > 0",
            (tenant, f"[{ctx_id}]"),
        )
    ).fetchall()
    return {(str(source), day) for source, day in rows}


async def rewrite(
    conn: AsyncConnection[Any], tenant: str, rows: Iterable[tuple[str, date]]
) -> dict[str, int]:
    """Regenerate the existing roll-ups (source, day) of ``tenant`` from what remains, deleting those
    nothing remains of; rows that were never written stay unwritten. Returns the counts."""
    counts = {"rollups_rewritten": 0, "rollups_deleted": 0}
    for source, day in sorted(set(rows)):
        exists = await (
            await conn.execute(
                "SELECT 1 FROM rollups WHERE tenant = %s AND source = %s AND day = %s FOR UPDATE",
                (tenant, source, day),
            )
        ).fetchone()
        if exists is None:
            continue
        if await _write_day(conn, day, tenant, source):
            counts["rollups_rewritten"] += 1
        else:
            await conn.execute(
                "DELETE FROM rollups WHERE tenant = %s AND source = %s AND day = %s", (tenant, source, day)
            )
            counts["rollups_deleted"] += 1
    return counts


async def missing_days(rt: Runtime, today: date, lookback_days: int = 7) -> list[date]:
    """Finished days with events but no roll-up yet (so a pass catches up after downtime)."""
    async with pg_connection(rt.db) as conn:
        rows = await (
            await conn.execute(
                """
                SELECT DISTINCT day FROM (
                    SELECT tenant, source, (received_at AT TIME ZONE 'UTC')::date AS day FROM events
                    WHERE received_at >= %s AND received_at < %s
                    EXCEPT SELECT tenant, source, day FROM rollups
                ) missing
                ORDER BY day
                """,
                (
                    datetime.combine(today - timedelta(days=lookback_days), time(), tzinfo=UTC),
                    datetime.combine(today, time(), tzinfo=UTC),
                ),
            )
        ).fetchall()
    return [row[0] for row in rows]

"""Daily roll-ups per source: what a day of events amounted to, kept after the contexts go cold.

One row per (tenant, source, day) in ``rollups``, written once the day is over (an idempotent upsert,
so re-running a day rewrites it). The text is extractive: the day's most important contexts with
their titles, states and summaries, most important first.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from psycopg.rows import dict_row

from memory.runtime import Runtime, pg_connection
from memory.summarize import template

TOP = 10


async def roll_up(rt: Runtime, day: date) -> int:
    """Write the roll-ups of ``day`` (UTC) for every tenant and source; returns how many."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    async with pg_connection(rt.db) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """
            SELECT c.tenant, c.source, c.id, c.title, c.state, c.summary, c.importance,
                   count(e.id) AS events
            FROM contexts c JOIN events e ON e.tenant = c.tenant AND e.context_id = c.id
            WHERE e.received_at >= %s AND e.received_at < %s
            GROUP BY c.tenant, c.source, c.id
            ORDER BY c.tenant, c.source, c.importance DESC, count(e.id) DESC
            """,
            (start, end),
        )
        rows = await cur.fetchall()
        groups: dict[tuple[str, str], list[dict[str, object]]] = {}
        for row in rows:
            groups.setdefault((str(row["tenant"]), str(row["source"])), []).append(row)
        for (tenant, source), items in groups.items():
            lines = "\n".join(
                f"- [{item['id']}] {item['title']}" + (f" ({item['state']})" if item["state"] else "")
                + f": {str(item['summary'])[:160]}"
                for item in items[:TOP]
            )  # fmt: skip
            events = sum(int(str(item["events"])) for item in items)
            text = template("rollup_daily").format(
                source=source, day=day.isoformat(), events=events, contexts=len(items), lines=lines
            )
            await cur.execute(
                """
                INSERT INTO rollups (tenant, source, day, summary, contexts, events)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (tenant, source, day) DO UPDATE SET
                    summary = excluded.summary, contexts = excluded.contexts, events = excluded.events,
                    created_at = now()
                """,
                (tenant, source, day, text.strip(), len(items), events),
            )
    return len(groups)


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

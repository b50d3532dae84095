"""Semantic dedup across contexts: near-duplicates (cosine ≥ ``THRESHOLD``) are *linked*.

Merging near-duplicates is how peer projects grow "mega-memories": A absorbs B because they are
close, then C because it is close to A+B, and so on, until unrelated facts share one blob. Hookline
never merges. Each context keeps every one of its own events; a link is a symmetric edge between
two contexts, capped at ``MAX_LINKS`` nearest per context, and computed against each context's own
embedding — never against a merged one — so nothing can snowball.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

THRESHOLD = 0.92
MAX_LINKS = 5


async def link_near_duplicates(conn: AsyncConnection[Any], contexts: Sequence[tuple[str, str]]) -> int:
    """Link each context to its nearest neighbours above the threshold; returns links written."""
    written = 0
    async with conn.cursor() as cur:
        for tenant, ctx_id in contexts:
            await cur.execute(
                """
                SELECT other.id, 1 - (other.embedding <=> me.embedding) AS similarity
                FROM contexts me JOIN contexts other
                  ON other.tenant = me.tenant AND other.id <> me.id AND other.embedding IS NOT NULL
                WHERE me.tenant = %s AND me.id = %s AND me.embedding IS NOT NULL
                ORDER BY other.embedding <=> me.embedding
                LIMIT %s
                """,
                (tenant, ctx_id, MAX_LINKS),
            )
            for other, similarity in await cur.fetchall():
                if similarity < THRESHOLD:
                    break
                a, b = sorted((ctx_id, other))
                await cur.execute(
                    """
                    INSERT INTO context_links (tenant, a, b, similarity) VALUES (%s, %s, %s, %s)
                    ON CONFLICT (tenant, a, b) DO UPDATE SET similarity = excluded.similarity
                    """,
                    (tenant, a, b, float(similarity)),
                )
                written += 1
    return written


async def related(conn: AsyncConnection[Any], tenant: str, ctx_id: str) -> list[tuple[str, float]]:
    """The contexts linked to this one, most similar first."""
    rows = await (
        await conn.execute(
            """
            SELECT CASE WHEN a = %(id)s THEN b ELSE a END, similarity FROM context_links
            WHERE tenant = %(tenant)s AND (a = %(id)s OR b = %(id)s)
            ORDER BY similarity DESC LIMIT 20
            """,
            {"tenant": tenant, "id": ctx_id},
        )
    ).fetchall()
    return [(str(row[0]), float(row[1])) for row in rows]


async def unlink(conn: AsyncConnection[Any], tenant: str, ctx_id: str) -> int:
    """Delete every link of this context (``forget``); returns how many."""
    cursor = await conn.execute(
        "DELETE FROM context_links WHERE tenant = %s AND (a = %s OR b = %s)", (tenant, ctx_id, ctx_id)
    )
    return cursor.rowcount

"""Full-text candidates: the two ways of finding a query's newest matches (walking the contexts newest
first, or reading every match from the GIN index) give the same answer, and each is chosen where it
is the cheap one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from memory import search
from memory.runtime import Runtime

START = datetime(2026, 1, 1, tzinfo=UTC)
ROWS = 3000
RARE_EVERY = 300  # 10 rows carry the rare word
WARM_EVERY = 2  # 1,500 rows carry the common one


async def _corpus(rt: Runtime, tenant: str) -> None:
    """Every row says "deploy"; every other one "rollback"; every 300th "kraken" too, and some of
    those a second time, so that their ranks differ."""
    rows = []
    for i in range(ROWS):
        words = ["deploy", f"item{i}"]
        if i % WARM_EVERY == 0:
            words.append("rollback")
        if i % RARE_EVERY == 0:
            words += ["kraken"] * (1 + i // RARE_EVERY % 3)
        at = START + timedelta(minutes=i)
        rows.append(
            (
                tenant,
                f"c{i:05d}",
                "gh",
                f"gh:x#{i}",
                "issue",
                f"item {i}",
                " ".join(words),
                f"{i:08d}",
                at,
                at,
            )
        )
    async with rt.db.connection() as conn:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO contexts (tenant, id, source, subject, kind, title, body, head_key, created_at, "
                "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        await conn.execute("ANALYZE contexts")


@pytest.fixture
async def corpus(machine_rt: Runtime, tenant: str) -> Runtime:
    await _corpus(machine_rt, tenant)
    return machine_rt


async def _walks(rt: Runtime, tenant: str, query: str) -> bool:
    params = {"tenant": tenant, "query": query}
    async with rt.db.connection() as conn:
        return await search._walks(conn, search.Filters().sql(params), params)


async def test_a_rare_term_is_read_from_the_index_and_a_common_one_walked(
    corpus: Runtime, tenant: str
) -> None:
    assert not await _walks(corpus, tenant, "kraken")
    assert await _walks(corpus, tenant, "deploy")
    # sqrt(2,000 ranked x 3,000 rows) = 2,449 matches is the break-even: 1,500 is read, not walked.
    assert not await _walks(corpus, tenant, "rollback")


@pytest.mark.parametrize("query", ["kraken", "rollback", "deploy kraken", "item2700 kraken rollback"])
async def test_both_plans_find_the_same_candidates_in_the_same_order(
    corpus: Runtime, tenant: str, query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    found: dict[bool, list[tuple[str, float]]] = {}
    for walk in (True, False):

        async def decided(*_: object, walk: bool = walk) -> bool:
            return walk

        monkeypatch.setattr(search, "_walks", decided)
        async with corpus.db.connection() as conn:
            rows = await search.text_candidates(conn, tenant, query, search.Filters(), limit=20)
        found[walk] = [(row["id"], row["rank"]) for row in rows]
    assert found[True] == found[False]
    assert len(found[True]) == (ROWS // RARE_EVERY if query == "kraken" else 20)
    if "kraken" in query and "deploy" not in query:  # fewer matches than are ranked: every rare row
        kraken = [ctx for ctx, _ in found[True] if int(ctx[1:]) % RARE_EVERY == 0]
        assert len(kraken) == ROWS // RARE_EVERY
    ranks = [rank for _, rank in found[True]]
    assert ranks == sorted(ranks, reverse=True) and ranks[0] > 0


async def test_only_the_newest_matches_are_ranked_and_a_query_without_words_lists_the_newest(
    corpus: Runtime, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "TEXT_MATCHES_RANKED", 100)
    async with corpus.db.connection() as conn:
        ranked = await search.text_candidates(conn, tenant, "deploy", search.Filters(), limit=50)
        newest = await search.text_candidates(conn, tenant, "the of and", search.Filters(), limit=5)
    assert all(int(row["id"][1:]) >= ROWS - 100 for row in ranked)
    assert [row["id"] for row in newest] == [f"c{i:05d}" for i in range(ROWS - 1, ROWS - 6, -1)]
    assert all(row["rank"] == 0 for row in newest)

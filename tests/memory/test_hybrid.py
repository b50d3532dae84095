"""Hybrid search on the embedded PostgreSQL (pgvector) with the real local embedder."""

from __future__ import annotations

import copy

from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event


def _issue(number: int, title: str, body: str) -> dict[str, object]:
    payload = copy.deepcopy(load_fixture("issues_opened"))
    payload["issue"]["number"] = number
    payload["issue"]["title"] = title
    payload["issue"]["body"] = body
    return payload


async def test_vectors_find_what_words_miss_and_hits_explain_themselves(vrt: Runtime, tenant: str) -> None:
    service = MemoryService(vrt)
    issues = [
        (1, "Checkout page crashes when the card is declined", "Customers see a 500 after a declined card."),
        (2, "Update README badges", "The CI badge points at the old pipeline."),
        (3, "Dark mode colours are too faint", "Contrast in dark mode fails accessibility checks."),
    ]
    await service.apply_events(
        [make_event(tenant, "issues", _issue(n, t, b), f"gh:h{n}") for n, t, b in issues]
    )
    async with vrt.db.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM contexts WHERE embedding IS NOT NULL")
        ).fetchone()
    assert row == (3,)
    # No word in common with issue 1's title; only meaning connects them.
    hits = await service.search_context(tenant, "payment failure at purchase", limit=3)
    assert hits[0].context.title.endswith("Checkout page crashes when the card is declined")
    assert "similarity" in hits[0].breakdown and hits[0].breakdown["similarity"] > 0.2
    keyword = await service.search_context(tenant, "README badges", limit=3)
    assert keyword[0].context.title.endswith("Update README badges")
    assert keyword[0].breakdown["text_rank"] > 0 and keyword[0].breakdown["relevance"] > 0.5


async def test_near_duplicates_are_linked_never_merged_and_do_not_snowball(vrt: Runtime, tenant: str) -> None:
    """A chain of gradually drifting contexts: each is close to its neighbours. A merging dedup
    would fold the whole chain into one "mega-memory"; linking keeps every context and its facts."""
    service = MemoryService(vrt)
    base = "Nightly deploy to production fails at the database migration step"
    drift = [
        "",
        " again",
        " again today",
        " again today on staging",
        " again today on staging too",
        " again today on staging too, same error",
        " again today on staging too, same error, rollback",
    ]
    events = [make_event(tenant, "issues", _issue(900 + i, base + tail, "Same as before."), f"gh:d{i}")
              for i, tail in enumerate(drift)]  # fmt: skip
    events.append(
        make_event(tenant, "issues", _issue(999, "Add a dark mode toggle", "UI request."), "gh:other")
    )
    await service.apply_events(events)
    hits = await service.search_context(tenant, "", limit=20)
    assert len(hits) == len(drift) + 1  # every context survives, with its own single event
    assert all(hit.context.event_count == 1 for hit in hits)
    by_title = {hit.context.title.split(" ", 1)[1]: hit.context.id for hit in hits}
    first = await service.related(tenant, by_title[base])
    assert first and all(similarity >= 0.92 for _, similarity in first)
    assert len(first) <= 5  # bounded fan-out
    assert await service.related(tenant, by_title["Add a dark mode toggle"]) == []  # unrelated: no link
    async with vrt.db.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM events WHERE tenant = %s", (tenant,))
        ).fetchone()
    assert row == (len(events),)  # no fact lost


async def test_a_busy_context_is_embedded_at_most_once_a_minute_and_caught_up_later(
    vrt: Runtime, tenant: str
) -> None:
    service = MemoryService(vrt)
    await service.apply_events(
        [make_event(tenant, "issues", _issue(42, "Billing export is slow", "x"), "gh:b1")]
    )
    async with vrt.db.connection() as conn:
        first = await (
            await conn.execute("SELECT embedded_at FROM contexts WHERE tenant = %s", (tenant,))
        ).fetchone()
    comment = copy.deepcopy(load_fixture("issue_comment_created"))
    comment["issue"]["number"] = 42
    await service.apply_events([make_event(tenant, "issue_comment", comment, "gh:b2")])
    async with vrt.db.connection() as conn:
        second = await (
            await conn.execute("SELECT embedded_at FROM contexts WHERE tenant = %s", (tenant,))
        ).fetchone()
        assert first == second  # debounced: the index group did not embed again
        rewind = "UPDATE contexts SET embedded_at = embedded_at - interval '2 minutes' WHERE tenant = %s"
        await conn.execute(rewind, (tenant,))
    assert await service.refresh_embeddings() == 1
    async with vrt.db.connection() as conn:
        third = await (
            await conn.execute("SELECT embedded_at FROM contexts WHERE tenant = %s", (tenant,))
        ).fetchone()
    assert third is not None and first is not None and third[0] > first[0]

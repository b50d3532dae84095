"""Poison contexts: an exception of a type no list names, raised for one context inside a lifecycle
pass or for one context's embedding, skips and records that context (with a metric), and the rest
flows; a later pass or refresh tries it again (DESIGN invariant 11). Real Redis and PostgreSQL."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from prometheus_client import REGISTRY

from memory import lifecycle as lifecycle_module
from memory.lifecycle import Lifecycle
from memory.models import Context
from memory.runtime import Runtime
from memory.service import MemoryService
from memory.summarize import ExtractiveSummarizer
from memory.tiers import document
from memory.vectors import VectorRefresher
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event, wait_until

HOUR = timedelta(hours=1)


class Unlisted(Exception):
    pass


def _failures(unit: str, error: str = "Unlisted") -> float:
    return REGISTRY.get_sample_value("hookline_unit_failures_total", {"unit": unit, "error": error}) or 0.0


def _issue(tenant: str, number: int, title: str) -> Any:
    payload = copy.deepcopy(load_fixture("issues_opened"))
    payload["issue"]["number"] = number
    payload["issue"]["title"] = title
    return make_event(tenant, "issues", payload, f"gh:i{number}")


async def _seed(service: MemoryService, tenant: str, titles: Sequence[str]) -> dict[str, str]:
    """One context per title; title → context id."""
    await service.apply_events([_issue(tenant, n, title) for n, title in enumerate(titles)])
    ids: dict[str, str] = {}
    for event in await service.recent_events(tenant, limit=100):
        title = (await service.get_context(tenant, event.context_id)).head.title  # "octo/repo#1 <title>"
        ids[next(t for t in titles if title.endswith(t))] = event.context_id
    return ids


async def _row(rt: Runtime, tenant: str, ctx_id: str) -> tuple[str, int, str | None]:
    async with rt.db.connection() as conn:
        sql = "SELECT tier, lifecycle_failures, lifecycle_error FROM contexts WHERE tenant = %s AND id = %s"
        row = await (await conn.execute(sql, (tenant, ctx_id))).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), row[2]


async def test_a_context_that_fails_its_demotion_is_skipped_recorded_and_tried_later(
    rt: Runtime, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = MemoryService(rt)
    ids = await _seed(service, tenant, ["fine one", "poison pill", "fine two"])
    real_encode = document.encode
    broken = {"on": True}

    def encode(head: dict[str, str], events: dict[str, str]) -> bytes:
        if broken["on"] and head.get("title", "").endswith("poison pill"):
            raise Unlisted("this document cannot be encoded")
        return real_encode(head, events)

    monkeypatch.setattr(lifecycle_module.document, "encode", encode)
    before = _failures("lifecycle")
    now = datetime.now(UTC)
    lifecycle = Lifecycle(rt)

    report = await lifecycle.run_pass(now + 10 * HOUR)
    assert report.to_warm == 2
    assert [(f["step"], f["context_id"]) for f in report.failed] == [("to_warm", ids["poison pill"])]
    assert "Unlisted" in report.failed[0]["error"]
    tier, failures, error = await _row(rt, tenant, ids["poison pill"])
    assert (tier, failures) == ("hot", 1) and error is not None and "Unlisted" in error
    assert (await _row(rt, tenant, ids["fine one"]))[0] == "warm"
    assert _failures("lifecycle") == before + 1
    assert (await service.get_context(tenant, ids["poison pill"])).head.tier == "hot"  # still readable

    # Backed off: the next pass (5 minutes later) does not try it at all.
    report = await lifecycle.run_pass(now + 10 * HOUR + timedelta(minutes=5))
    assert report.failed == [] and report.to_warm == 0

    # Once the back-off is over it is tried again; fixed, it moves and its record is cleared.
    broken["on"] = False
    report = await lifecycle.run_pass(now + 11 * HOUR)
    assert report.to_warm == 1 and report.failed == []
    assert await _row(rt, tenant, ids["poison pill"]) == ("warm", 0, None)


class _PoisonSummarizer:
    name = "poisoned"

    async def summarize(self, ctx: Context) -> str:
        if ctx.head.title.endswith("poison pill"):
            raise Unlisted("the summarizer cannot read this one")
        return await ExtractiveSummarizer().summarize(ctx)


async def test_a_context_that_fails_its_archiving_stays_warm_and_the_rest_go_cold(
    rt: Runtime, tenant: str
) -> None:
    service = MemoryService(rt)
    ids = await _seed(service, tenant, ["fine one", "poison pill"])
    lifecycle = Lifecycle(rt)
    lifecycle.summarizer = _PoisonSummarizer()  # type: ignore[assignment]
    now = datetime.now(UTC)
    await lifecycle.run_pass(now + 10 * HOUR)
    report = await lifecycle.run_pass(now + 200 * HOUR)
    assert report.to_cold == 1
    assert [(f["step"], f["context_id"]) for f in report.failed] == [("to_cold", ids["poison pill"])]
    assert (await _row(rt, tenant, ids["poison pill"]))[:2] == ("warm", 1)
    assert (await _row(rt, tenant, ids["fine one"]))[0] == "cold"
    ctx = await service.get_context(tenant, ids["poison pill"])  # every tier answers
    assert ctx.head.tier == "warm" and ctx.events


class _PoisonEmbedder:
    """The real embedder, except that a text mentioning "poison" raises a type no list names."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.name = inner.name

    async def embed(self, texts: Sequence[str], *, background: bool = False) -> list[list[float]]:
        if any("poison" in text for text in texts):
            raise Unlisted("the model choked")
        vectors: list[list[float]] = await self.inner.embed(texts, background=background)
        return vectors

    async def aclose(self) -> None:
        return None


async def test_a_vector_batch_that_fails_is_isolated_and_the_rest_is_embedded(
    vrt: Runtime, tenant: str
) -> None:
    rt = dataclasses.replace(vrt, embedder=_PoisonEmbedder(vrt.embedder))
    service = MemoryService(rt)
    refresher = VectorRefresher(service.refresh_embeddings)
    service.vectors = refresher
    await service.index_events(
        [_issue(tenant, n, title) for n, title in enumerate(["fine one", "poison pill", "fine two"])]
    )
    before = _failures("embeddings")

    async def state() -> dict[str, tuple[bool, int]]:
        async with rt.db.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT title, embedding IS NOT NULL, embed_failures FROM contexts WHERE tenant = %s",
                    (tenant,),
                )
            ).fetchall()
        return {str(title).split(" ", 1)[1]: (bool(done), int(failures)) for title, done, failures in rows}

    ended = anyio.Event()

    async def run() -> None:
        try:
            await refresher.run()
        finally:
            ended.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run, name="embeddings")

        async def settled() -> bool:
            return await state() == {
                "fine one": (True, 0),
                "fine two": (True, 0),
                "poison pill": (False, 1),
            }

        await wait_until(settled, within=60)
        assert not ended.is_set()  # the refresher is still running
        tasks.cancel_scope.cancel()
    # the batch failed once, then the poison context on its own: logged and counted each time
    assert _failures("embeddings") >= before + 2
    async with rt.db.connection() as conn:  # set aside: not due again until its back-off is over
        due = await (
            await conn.execute(
                "SELECT count(*) FROM contexts WHERE tenant = %s AND embed_failed_at IS NOT NULL", (tenant,)
            )
        ).fetchone()
    assert due is not None and due[0] == 1

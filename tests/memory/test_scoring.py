"""Ranking must not regress: decay follows its half-life, recency and importance break ties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from memory import scoring
from memory.runtime import Runtime
from memory.scoring import Signals
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["workflow_run", "push", "pull_request", "issue", "something_else"])
def test_recency_halves_every_half_life(kind: str) -> None:
    half = timedelta(hours=scoring.half_life_h(kind))
    assert scoring.recency(NOW, NOW, kind) == 1.0
    assert scoring.recency(NOW - half, NOW, kind) == pytest.approx(0.5)
    assert scoring.recency(NOW - 3 * half, NOW, kind) == pytest.approx(0.125)


def test_a_failing_build_fades_faster_than_an_issue() -> None:
    day_old = NOW - timedelta(days=1)
    assert scoring.recency(day_old, NOW, "workflow_run") < scoring.recency(day_old, NOW, "issue")


def _signals(**changes: object) -> Signals:
    base = {"relevance": 0.8, "updated_at": NOW - timedelta(hours=5), "kind": "issue", "importance": 0.5}
    return Signals(**(base | changes))  # type: ignore[arg-type]


def test_recency_breaks_a_relevance_tie() -> None:
    newer, _ = scoring.score(_signals(updated_at=NOW - timedelta(hours=1)), NOW)
    older, _ = scoring.score(_signals(updated_at=NOW - timedelta(days=20)), NOW)
    assert newer > older


def test_importance_and_pins_break_a_tie() -> None:
    plain, _ = scoring.score(_signals(), NOW)
    important, breakdown = scoring.score(_signals(importance=0.9), NOW)
    pinned, _ = scoring.score(_signals(pinned=True), NOW)
    assert important > plain and pinned > plain
    assert breakdown["importance"] == 0.9


def test_access_boosts_and_the_boost_decays() -> None:
    fresh = scoring.access_boost(10, NOW, NOW)
    week_old = scoring.access_boost(10, NOW - timedelta(days=7), NOW)
    assert 0 < week_old < fresh <= 0.3 and week_old == pytest.approx(fresh / 2)
    assert scoring.access_boost(0, None, NOW) == 0.0


def test_rank_fusion_rewards_agreement() -> None:
    fused = scoring.reciprocal_rank_fusion(
        [[("a", 3), ("b", 2), ("c", 1)], [("b", 0.9), ("a", 0.8), ("d", 0.1)]]
    )
    assert fused["a"] == fused["b"] > fused["c"] > 0 and fused["d"] > 0


def test_rank_fusion_keeps_ties_tied() -> None:
    fused = scoring.reciprocal_rank_fusion([[("a", 0.5), ("b", 0.5), ("c", 0.2)]], k=10)
    assert fused["a"] == fused["b"] == 1 / 11 and fused["c"] == 1 / 13


async def test_search_orders_equally_relevant_contexts_by_recency_then_importance(
    rt: Runtime, tenant: str
) -> None:
    service = MemoryService(rt)
    events = []
    for n, (days_ago, label) in enumerate([(30, "docs"), (1, "docs"), (1, "critical")]):
        payload = load_fixture("issues_opened")
        payload["issue"]["number"] = 500 + n
        payload["issue"]["title"] = "Quarterly zeppelin maintenance"
        payload["issue"]["labels"] = [{"name": label}]
        stamp = (NOW - timedelta(days=days_ago)).isoformat()
        payload["issue"]["updated_at"] = payload["issue"]["created_at"] = stamp
        events.append(make_event(tenant, "issues", payload, f"gh:z{n}"))
    await service.apply_events(events)
    hits = await service.search_context(tenant, "zeppelin maintenance", limit=3, now=NOW)
    numbers = [h.context.title.split("#")[1].split()[0] for h in hits]
    assert numbers == ["502", "501", "500"], [(h.context.title, h.score, h.breakdown) for h in hits]

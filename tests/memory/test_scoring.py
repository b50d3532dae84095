"""Ranking must not regress: decay follows the half-life of each hit's source and event type (a
configured one included), recency and importance break ties."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from memory import scoring
from memory.runtime import Runtime
from memory.scoring import Signals
from memory.service import MemoryService
from memory.settings import Settings, load_settings
from memory.sources import SourceStore
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("provider", "event_type", "hours"),
    [
        ("github", "workflow_run", 12),
        ("github", "check_run", 12),
        ("github", "push", 48),
        ("github", "pull_request", 7 * 24),
        ("github", "issues", 14 * 24),
        ("github", "dependabot_alert", 21 * 24),
        ("github", "some_new_event", 72),
        ("stripe", "charge.dispute.created", 21 * 24),  # by its dotted prefix
        ("stripe", "invoice.paid", 7 * 24),  # the provider's own
        ("agent", "note", 30 * 24),
        ("acme", "anything", scoring.DEFAULT_HALF_LIFE_H),
    ],
)
def test_recency_halves_every_half_life_of_its_source_and_event_type(
    provider: str, event_type: str, hours: float
) -> None:
    half_life = scoring.HalfLives().hours(provider, event_type)
    assert half_life == hours
    half = timedelta(hours=half_life)
    assert scoring.recency(NOW, NOW, half_life) == 1.0
    assert scoring.recency(NOW - half, NOW, half_life) == pytest.approx(0.5)
    assert scoring.recency(NOW - 3 * half, NOW, half_life) == pytest.approx(0.125)


def test_a_failing_build_fades_in_hours_a_dispute_or_an_alert_in_weeks() -> None:
    half_lives, day_old = scoring.HalfLives(), NOW - timedelta(days=1)
    build = scoring.recency(day_old, NOW, half_lives.hours("github", "workflow_run"))
    issue = scoring.recency(day_old, NOW, half_lives.hours("github", "issues"))
    dispute = scoring.recency(day_old, NOW, half_lives.hours("stripe", "charge.dispute.created"))
    alert = scoring.recency(day_old, NOW, half_lives.hours("GitHub", "code_scanning_alert"))
    assert build == pytest.approx(0.25)
    assert build < issue < dispute == alert


def test_overrides_replace_the_defaults_and_the_most_specific_key_wins() -> None:
    half_lives = scoring.HalfLives((("github:workflow_run", 6.0), ("stripe", 1.0), ("stripe:charge", 2.0)))
    assert half_lives.hours("github", "workflow_run") == 6.0
    assert half_lives.hours("github", "issues") == 14 * 24  # untouched default
    assert half_lives.hours("stripe", "invoice.paid") == 1.0
    assert half_lives.hours("stripe", "charge.refunded") == 2.0
    assert half_lives.hours("stripe", "charge.dispute.closed") == 21 * 24  # more specific default


def _signals(**changes: object) -> Signals:
    base = {
        "relevance": 0.8,
        "updated_at": NOW - timedelta(hours=5),
        "kind": "issue",
        "importance": 0.5,
        "half_life_h": 14 * 24.0,
    }
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


async def _disputes_and_chats(rt: Runtime, tenant: str, half_lives: str) -> list[str]:
    """A Stripe dispute and a Slack message, equally relevant and both four days old: which leads?"""
    service = MemoryService(dataclasses.replace(rt, settings=make_settings_with(rt, half_lives)))
    sources = SourceStore(rt.db)
    await sources.add(f"pay-{tenant}", "stripe", ["s"], tenant)
    await sources.add(f"chat-{tenant}", "slack", ["s"], tenant)
    created = int((NOW - timedelta(days=4)).timestamp())
    events = [
        make_event(
            tenant,
            event_type,
            {
                "id": f"evt_{n}",
                "data": {"object": {"id": f"obj_{n}", "note": "zeppelin", "created": created}},
            },
            f"e{n}",
            source=f"{source}-{tenant}",
            provider=provider,
        )
        for n, (source, provider, event_type) in enumerate(
            [("pay", "stripe", "charge.dispute.created"), ("chat", "slack", "message.posted")]
        )
    ]
    assert not await service.apply_events(events)
    hits = await service.search_context(tenant, "zeppelin", limit=2, now=NOW)
    assert hits[0].breakdown["relevance"] == hits[1].breakdown["relevance"]
    return [hit.context.subject.split(":")[0] for hit in hits]


def make_settings_with(rt: Runtime, half_lives: str) -> Settings:
    overrides = load_settings({"HOOKLINE_HALF_LIVES": half_lives}).half_lives
    return rt.settings.with_overrides(half_lives=overrides)


async def test_search_decays_each_hit_by_its_source_and_event_type(rt: Runtime, tenant: str) -> None:
    # Defaults: a dispute lasts weeks (21 d), a chat message days (2 d).
    assert await _disputes_and_chats(rt, tenant, "") == ["charge", "message"]


async def test_a_configured_half_life_changes_the_order(rt: Runtime, tenant: str) -> None:
    order = await _disputes_and_chats(rt, tenant, "slack=60d, stripe:charge.dispute=1")
    assert order == ["message", "charge"]

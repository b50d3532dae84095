"""Ranking: relevance, recency decay, importance and an access boost, multiplied; each part visible.

``score = relevance · (0.9 + 0.1·recency) · (0.9 + 0.2·importance) · (1 + access)`` where

- relevance is the hybrid retrieval score (reciprocal-rank fusion of full text and vectors),
  normalised to 0..1 within the result set;
- recency = 0.5^(age / half-life), the half-life set per source provider and event type (a failing
  workflow run matters for hours, an issue for weeks, a Stripe dispute or a security alert for
  weeks): ``HalfLives``, defaults below, overridden by ``HOOKLINE_HALF_LIVES``;
- importance is the mapper's 0..1 from the source's own signals, raised by pins;
- access = min(0.3, 0.1·log2(1 + reads)), decaying with the time since the last read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

HOUR = 3600.0

# Half-lives in hours. A key is a provider ("stripe") or a provider and an event type
# ("github:workflow_run"); a dotted event type also matches by prefix ("stripe:charge.dispute"
# covers charge.dispute.created). The most specific key wins; DEFAULT_HALF_LIFE_H covers the rest.
_DAY = 24.0


def _github(hours: float, *event_types: str) -> dict[str, float]:
    return {f"github:{event_type}": hours for event_type in event_types}


DEFAULT_HALF_LIVES_H: dict[str, float] = {
    "github": 3 * _DAY,
    **_github(12.0, "workflow_run", "workflow_job", "check_run", "check_suite", "status"),
    **_github(2 * _DAY, "push", "create", "delete"),
    **_github(7 * _DAY, "pull_request", "pull_request_review", "pull_request_review_comment"),
    **_github(7 * _DAY, "pull_request_review_thread"),
    **_github(14 * _DAY, "issues", "issue_comment", "discussion", "discussion_comment"),
    **_github(30 * _DAY, "release"),
    **_github(21 * _DAY, "code_scanning_alert", "dependabot_alert", "secret_scanning_alert"),
    **_github(21 * _DAY, "repository_vulnerability_alert", "security_advisory"),
    "stripe": 7 * _DAY,
    "stripe:charge.dispute": 21 * _DAY,
    "stripe:radar.early_fraud_warning": 21 * _DAY,
    "slack": 2 * _DAY,
    "linear": 14 * _DAY,
    "jira": 14 * _DAY,
    "agent": 30 * _DAY,  # notes an agent chose to keep
}
DEFAULT_HALF_LIFE_H = 3 * _DAY
ACCESS_HALF_LIFE_H = 7 * 24.0
PIN_BONUS = 0.25


@dataclass(frozen=True, slots=True)
class HalfLives:
    """Recency half-lives by provider and event type: the defaults with ``overrides`` on top."""

    overrides: tuple[tuple[str, float], ...] = ()
    table: Mapping[str, float] = field(init=False)

    def __post_init__(self) -> None:
        table = DEFAULT_HALF_LIVES_H | {key.lower(): hours for key, hours in self.overrides}
        object.__setattr__(self, "table", MappingProxyType(table))

    def hours(self, provider: str, event_type: str = "") -> float:
        provider, event_type = provider.strip().lower(), event_type.strip().lower()
        parts = event_type.split(".") if event_type else []
        for n in range(len(parts), 0, -1):  # charge.dispute.created, charge.dispute, charge
            found = self.table.get(f"{provider}:{'.'.join(parts[:n])}")
            if found is not None:
                return found
        return self.table.get(provider, DEFAULT_HALF_LIFE_H)


def recency(updated_at: datetime, now: datetime, half_life_h: float) -> float:
    age_h = max(0.0, (now - updated_at).total_seconds() / HOUR)
    return math.pow(0.5, age_h / half_life_h)


def access_boost(count: int, last_access: datetime | None, now: datetime) -> float:
    if count <= 0 or last_access is None:
        return 0.0
    age_h = max(0.0, (now - last_access).total_seconds() / HOUR)
    return min(0.3, 0.1 * math.log2(1 + count)) * math.pow(0.5, age_h / ACCESS_HALF_LIFE_H)


def effective_importance(importance: float, pinned: bool) -> float:
    return min(1.0, importance + (PIN_BONUS if pinned else 0.0))


@dataclass(frozen=True, slots=True)
class Signals:
    relevance: float
    updated_at: datetime
    kind: str
    importance: float
    half_life_h: float = DEFAULT_HALF_LIFE_H  # HalfLives.hours of the context's source and event
    pinned: bool = False
    access_count: int = 0
    last_access: datetime | None = None


def score(signals: Signals, now: datetime) -> tuple[float, dict[str, float]]:
    fresh = recency(signals.updated_at, now, signals.half_life_h)
    importance = effective_importance(signals.importance, signals.pinned)
    access = access_boost(signals.access_count, signals.last_access, now)
    # Relevance leads; recency and importance move a hit by at most ~10% each, enough to order
    # near-ties but not to bury the best match (bench/eval_retrieval.py: x2 factors cost 0.16 recall@5).
    total = signals.relevance * (0.9 + 0.1 * fresh) * (0.9 + 0.2 * importance) * (1 + access)
    breakdown = {
        "relevance": round(signals.relevance, 6),
        "recency": round(fresh, 6),
        "half_life_h": signals.half_life_h,
        "importance": round(importance, 4),
        "access": round(access, 4),
    }
    return round(total, 6), breakdown


def reciprocal_rank_fusion(rankings: list[list[tuple[str, float]]], k: int = 60) -> dict[str, float]:
    """Fuse ranked lists of (id, score), best first: Σ 1/(k + rank). Equal scores share a rank (so
    ties stay ties for recency and importance to break); ids missing from a list get nothing."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        rank, previous = 0, None
        for position, (item, value) in enumerate(ranking, start=1):
            if value != previous:
                rank, previous = position, value
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused

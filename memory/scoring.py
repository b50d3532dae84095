"""Ranking: relevance, recency decay, importance and an access boost, multiplied; each part visible.

``score = relevance · (0.9 + 0.1·recency) · (0.9 + 0.2·importance) · (1 + access)`` where

- relevance is the hybrid retrieval score (reciprocal-rank fusion of full text and vectors),
  normalised to 0..1 within the result set;
- recency = 0.5^(age / half-life), the half-life set per kind of context (a failing workflow
  matters for a day, an issue for weeks);
- importance is the mapper's 0..1 from the source's own signals, raised by pins;
- access = min(0.3, 0.1·log2(1 + reads)), decaying with the time since the last read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

HOUR = 3600.0

# Half-lives in hours, by context kind (the mapper's `kind`); the default covers the rest.
HALF_LIVES_H: dict[str, float] = {
    "workflow_run": 24.0,
    "workflow_job": 24.0,
    "check": 24.0,
    "push": 48.0,
    "pull_request": 7 * 24.0,
    "issue": 14 * 24.0,
    "release": 30 * 24.0,
    "note": 30 * 24.0,
}
DEFAULT_HALF_LIFE_H = 72.0
ACCESS_HALF_LIFE_H = 7 * 24.0
PIN_BONUS = 0.25


def half_life_h(kind: str) -> float:
    return HALF_LIVES_H.get(kind, DEFAULT_HALF_LIFE_H)


def recency(updated_at: datetime, now: datetime, kind: str) -> float:
    age_h = max(0.0, (now - updated_at).total_seconds() / HOUR)
    return math.pow(0.5, age_h / half_life_h(kind))


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
    pinned: bool = False
    access_count: int = 0
    last_access: datetime | None = None


def score(signals: Signals, now: datetime) -> tuple[float, dict[str, float]]:
    fresh = recency(signals.updated_at, now, signals.kind)
    importance = effective_importance(signals.importance, signals.pinned)
    access = access_boost(signals.access_count, signals.last_access, now)
    # Relevance leads; recency and importance move a hit by at most ~10% each, enough to order
    # near-ties but not to bury the best match (bench/eval_retrieval.py: x2 factors cost 0.16 recall@5).
    total = signals.relevance * (0.9 + 0.1 * fresh) * (0.9 + 0.2 * importance) * (1 + access)
    breakdown = {
        "relevance": round(signals.relevance, 6),
        "recency": round(fresh, 6),
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

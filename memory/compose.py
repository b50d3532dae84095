"""``compose_context``: the best context that fits a token budget, with citations.

Candidates come from search. The best ones go in full (every event line) while that leaves room;
the rest are ranked by score per token and go in as summaries until the budget is spent. The result
never exceeds the budget (by the same token estimate the budget is checked with) and every piece
starts with the context id it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from memory.models import Context, SearchHit

FULL_SHARE = 0.6  # at most this share of the budget goes to contexts in full
SUMMARY_CHARS = 100


def tokens(text: str) -> int:
    """A conservative estimate (about 4 characters per token for English and JSON-ish text)."""
    return math.ceil(len(text) / 3.5)


def render_summary(hit: SearchHit) -> str:
    head = hit.context
    state = f", {head.state}" if head.state else ""
    summary = head.summary if len(head.summary) <= SUMMARY_CHARS else head.summary[: SUMMARY_CHARS - 1] + "…"
    return f"[{head.id}] {head.title} ({head.kind}{state}, {head.tier}): {summary}\n"


def render_full(ctx: Context) -> str:
    head = ctx.head
    state = f", {head.state}" if head.state else ""
    lines = [f"[{head.id}] {head.title} ({head.kind}{state})"]
    lines += [f"  {e.occurred_at:%Y-%m-%d %H:%M} {e.text}" for e in ctx.events]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Piece:
    context_id: str
    mode: str  # "full" or "summary"
    tokens: int
    score: float
    text: str


@dataclass(frozen=True, slots=True)
class Composition:
    text: str
    tokens: int
    budget: int
    pieces: tuple[Piece, ...]


def compose(hits: list[SearchHit], full: dict[str, Context], budget: int) -> Composition:
    """``full`` holds the full contexts of the best hits (the caller decides how many to load)."""
    chosen: list[Piece] = []
    used = 0
    taken: set[str] = set()
    for hit in hits:
        ctx = full.get(hit.context.id)
        if ctx is None:
            continue
        text = render_full(ctx)
        cost = tokens(text)
        if used + cost <= budget * FULL_SHARE:
            chosen.append(Piece(hit.context.id, "full", cost, hit.score, text))
            used += cost
            taken.add(hit.context.id)
    rest = [hit for hit in hits if hit.context.id not in taken]
    rest.sort(key=lambda hit: hit.score / max(1, tokens(render_summary(hit))), reverse=True)
    for hit in rest:
        text = render_summary(hit)
        cost = tokens(text)
        if used + cost <= budget:
            chosen.append(Piece(hit.context.id, "summary", cost, hit.score, text))
            used += cost
    chosen.sort(key=lambda piece: piece.score, reverse=True)
    return Composition("".join(piece.text for piece in chosen), used, budget, tuple(chosen))

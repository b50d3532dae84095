"""What the MCP tools return: pydantic models (their JSON output schemas) and the converters from
``memory``'s value objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from memory.compose import Composition
from memory.models import Context, ContextSummary, RecentEvent, SearchHit


class ContextRef(BaseModel):
    id: str
    title: str
    source: str
    subject: str
    kind: str
    tier: str = Field(description="hot, warm or cold")
    state: str | None
    url: str | None
    importance: float
    event_count: int
    created_at: datetime
    updated_at: datetime


class Hit(ContextRef):
    score: float
    score_breakdown: dict[str, float]
    summary: str
    snippet: str


class SearchResult(BaseModel):
    query: str
    hits: list[Hit]
    next_cursor: str | None = Field(None, description="Pass as `cursor` (same query) for the next page")


class EventOut(BaseModel):
    id: str
    event_type: str
    text: str
    occurred_at: datetime
    received_at: datetime
    actors: list[str]


class ContextOut(ContextRef):
    summary: str
    labels: list[str]
    fields: dict[str, Any]
    events: list[EventOut]


class RecentOut(BaseModel):
    id: str
    context_id: str
    source: str
    event_type: str
    received_at: datetime
    text: str


class RecentResult(BaseModel):
    events: list[RecentOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get the next, older page")


class Remembered(BaseModel):
    event_id: str = Field(description="The note's event id; the same note always gets the same id")
    context_id: str = Field(description="The context the note lands in (read it with get_context)")
    subject: str
    duplicate: bool = Field(description="True if this exact note was already remembered")
    status: Literal["queued", "duplicate"]


class Summarized(BaseModel):
    context_id: str
    summary: str = Field(description="What the client's model wrote")
    model: str = Field(description="The model that wrote it, as the client named it")
    events_covered: int = Field(description="How many of the context's events it summarizes")
    kept: bool = Field(
        description="True if it is now the context's summary; False if an event arrived meanwhile"
    )


class Forgotten(BaseModel):
    context_id: str
    deleted: dict[str, int] = Field(description="What was deleted, store by store")


class PipelineStatus(BaseModel):
    """``memory.status.pipeline_status`` as it is; fields it adds pass through."""

    model_config = ConfigDict(extra="allow")
    streams: dict[str, Any] = Field(default_factory=dict, description="Each partition stream's length")
    groups: dict[str, Any] = Field(default_factory=dict, description="Lag and pending per consumer group")
    consumers: list[dict[str, Any]] = Field(default_factory=list, description="Consumers, heartbeats")
    dlq: Any = Field(None, description="Dead letters: events that could not be applied")
    events: dict[str, Any] = Field(default_factory=dict, description="Events accepted and applied")
    tiers: dict[str, Any] = Field(default_factory=dict, description="Contexts and bytes per tier")


def _ref(head: ContextSummary) -> dict[str, Any]:
    return {name: getattr(head, name) for name in ContextRef.model_fields}


def hit(found: SearchHit) -> Hit:
    return Hit(
        **_ref(found.context),
        score=found.score,
        score_breakdown=found.breakdown,
        summary=found.context.summary,
        snippet=found.snippet,
    )


def context(ctx: Context) -> ContextOut:
    events = [
        EventOut(id=e.id, event_type=e.event_type, text=e.text, occurred_at=e.occurred_at,
                 received_at=e.received_at, actors=list(e.actors))
        for e in ctx.events
    ]  # fmt: skip
    return ContextOut(
        **_ref(ctx.head), summary=ctx.head.summary, labels=list(ctx.labels), fields=ctx.fields, events=events
    )


def recent(events: list[RecentEvent], next_cursor: str | None) -> RecentResult:
    rows = [RecentOut(**{name: getattr(e, name) for name in RecentOut.model_fields}) for e in events]
    return RecentResult(events=rows, next_cursor=next_cursor)


class ComposedPiece(BaseModel):
    context_id: str
    mode: str = Field(description="full (every event line) or summary")
    tokens: int
    score: float


class Composed(BaseModel):
    text: str
    tokens: int
    budget: int
    pieces: list[ComposedPiece]


def composed(result: Composition) -> Composed:
    return Composed(
        text=result.text,
        tokens=result.tokens,
        budget=result.budget,
        pieces=[
            ComposedPiece(context_id=p.context_id, mode=p.mode, tokens=p.tokens, score=p.score)
            for p in result.pieces
        ],
    )

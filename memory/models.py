"""The value objects that cross module boundaries inside Hookline.

Frozen dataclasses only: pydantic lives at the edges (HTTP bodies, MCP arguments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memory.source_options import SourceOptions


@dataclass(frozen=True, slots=True)
class MappedEvent:
    """What a mapper extracts from one provider event.

    ``subject`` names the thing the event is about (one context per subject and tenant), e.g.
    ``github:octo/repo#pr/12``. Everything else describes this one event; the hot tier folds
    many of them into the context.
    """

    subject: str
    kind: str  # e.g. "pull_request", "issue", "push", "workflow_run", "release", "event"
    title: str  # title of the subject as of this event
    text: str  # one line describing what happened, for search and recent_events
    occurred_at: datetime | None = None  # provider's own timestamp of the change, if any
    url: str | None = None
    state: str | None = None  # e.g. "open", "closed", "merged", "failure"
    actors: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    importance: float = 0.5  # 0..1 from the provider's own signals
    fields: dict[str, Any] = field(default_factory=dict)  # small key facts (repo, number, branch, ...)


@dataclass(frozen=True, slots=True)
class Event:
    """One accepted webhook event, as the workers see it after decoding the envelope."""

    id: str  # the dedup key (provider delivery id or content hash), unique per tenant
    tenant: str
    source: str
    provider: str
    event_type: str
    received_at: datetime
    payload: dict[str, Any]
    stream_id: str = ""
    delivery_id: str = ""
    schema_version: int = 1


@dataclass(frozen=True, slots=True)
class ContextSummary:
    """A context as listed or ranked: never the full event bodies."""

    id: str
    tenant: str
    source: str
    subject: str
    kind: str
    title: str
    summary: str
    tier: str
    state: str | None
    url: str | None
    importance: float
    event_count: int
    created_at: datetime
    updated_at: datetime
    # Who wrote ``summary``: None when it is the newest event's own line (the provider's text), else
    # the summarizer ("extractive", "anthropic", or "sampling": the client's own model).
    summary_by: str | None = None


@dataclass(frozen=True, slots=True)
class ContextEvent:
    """One event inside a context, keyed by its own id (which makes re-application idempotent)."""

    id: str
    event_type: str
    text: str
    occurred_at: datetime
    received_at: datetime
    actors: tuple[str, ...] = ()
    payload: dict[str, Any] | None = None  # the provider's payload, as received (after redaction)


@dataclass(frozen=True, slots=True)
class Context:
    """A full context: its summary plus every event it holds, oldest first."""

    head: ContextSummary
    events: tuple[ContextEvent, ...]
    labels: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SearchHit:
    context: ContextSummary
    score: float
    breakdown: dict[str, float]
    snippet: str


@dataclass(frozen=True, slots=True)
class RecentEvent:
    id: str
    context_id: str
    source: str
    event_type: str
    received_at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class Source:
    """A configured webhook source: where ``POST /hooks/{name}`` events come from."""

    name: str
    tenant: str
    provider: str
    secrets: tuple[str, ...]  # plaintext, once opened; several let keys rotate without downtime
    options: SourceOptions = field(default_factory=SourceOptions)  # parsed: always valid

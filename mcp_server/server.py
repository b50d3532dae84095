"""The MCP server: tools and resources, each a thin call into ``memory.service``.

The tenant of every call comes from the credential (the authenticated HTTP request) or, for stdio
and in-process clients, from the server's configured tenant; never from a tool argument.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from mcp_server.auth import TENANT_SCOPE_KEY
from memory.errors import AuthError, HooklineError, InvalidArgument, NotFound
from memory.models import Context as MemoryContext
from memory.models import ContextSummary, RecentEvent, SearchHit
from memory.service import MemoryService

T = TypeVar("T")

INSTRUCTIONS = """Hookline is memory fed by real-world events (GitHub, Stripe, Slack, Jira, ...).
Each context is one subject — a pull request, an issue, a thread, a customer — with its events.
Use search_context to find contexts, get_context to read one in full, recent_events to see what
just happened."""


def package_version() -> str:
    try:
        return version("hookline")
    except PackageNotFoundError:
        return "0.0.0"


class ContextRef(BaseModel):
    id: str
    title: str
    source: str
    subject: str
    kind: str
    tier: str
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


def _ref(head: ContextSummary) -> dict[str, Any]:
    return {name: getattr(head, name) for name in ContextRef.model_fields}


def _hit(hit: SearchHit) -> Hit:
    return Hit(
        **_ref(hit.context),
        score=hit.score,
        score_breakdown=hit.breakdown,
        summary=hit.context.summary,
        snippet=hit.snippet,
    )


def _context(ctx: MemoryContext) -> ContextOut:
    return ContextOut(
        **_ref(ctx.head),
        summary=ctx.head.summary,
        labels=list(ctx.labels),
        fields=ctx.fields,
        events=[
            EventOut(
                id=e.id,
                event_type=e.event_type,
                text=e.text,
                occurred_at=e.occurred_at,
                received_at=e.received_at,
                actors=list(e.actors),
            )
            for e in ctx.events
        ],
    )


def _recent(event: RecentEvent) -> RecentOut:
    return RecentOut(**{name: getattr(event, name) for name in RecentOut.model_fields})


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ToolError(
            f"{name} must be an ISO-8601 time such as 2026-11-27T09:00:00Z, got {value!r}"
        ) from exc
    if parsed.tzinfo is None:
        raise ToolError(f"{name} must carry a timezone (e.g. a trailing Z)")
    return parsed


async def _tool_call(work: Awaitable[T]) -> T:
    """Surface the memory layer's errors as tool errors the agent can read."""
    try:
        return await work
    except HooklineError as exc:
        raise ToolError(f"{type(exc).__name__}: {exc}") from exc


def _cursor(events: list[RecentEvent], limit: int) -> str | None:
    if len(events) < limit:
        return None
    last = events[-1]
    return f"{last.received_at.isoformat()}|{last.id}"


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    stamp, _, event_id = cursor.partition("|")
    try:
        return datetime.fromisoformat(stamp), event_id
    except ValueError as exc:
        raise ToolError("cursor is not one this server returned") from exc


def build_mcp(service: MemoryService, default_tenant: str) -> MCPServer:
    def tenant_of(ctx: Context) -> str:
        request = ctx.request_context.request
        if request is None:  # stdio or in-process: the process is bound to one tenant
            return default_tenant
        scope = getattr(request, "scope", None)
        tenant = scope.get(TENANT_SCOPE_KEY) if isinstance(scope, dict) else None
        if not isinstance(tenant, str):
            raise AuthError("request was not authenticated")  # fail closed
        return tenant

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        yield {}

    mcp: MCPServer[Any] = MCPServer(
        name="hookline",
        title="Hookline",
        version=package_version(),
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level="WARNING",
    )
    read_only = ToolAnnotations(
        read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    )

    @mcp.tool(annotations=read_only)
    async def search_context(
        query: Annotated[str, Field(description="What to look for, in plain words")],
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=100, description="Most hits to return")] = 10,
        source: Annotated[str | None, Field(description="Only contexts from this webhook source")] = None,
        since: Annotated[
            str | None, Field(description="Only contexts updated at or after (ISO-8601)")
        ] = None,
    ) -> SearchResult:
        """Search the memory for contexts (pull requests, issues, threads, customers ...) that match
        the query. Hits are ranked by text relevance, recency and importance; each carries its
        score breakdown and a snippet. Read a hit in full with get_context(id)."""
        hits = await _tool_call(
            service.search_context(tenant_of(ctx), query, limit, source, _parse_time(since, "since"))
        )
        return SearchResult(query=query, hits=[_hit(hit) for hit in hits])

    @mcp.tool(annotations=read_only)
    async def get_context(
        id: Annotated[str, Field(description="A context id, as returned by search_context")],
        ctx: Context,
    ) -> ContextOut:
        """Read one context in full: its title, state, labels, key fields and every event, oldest
        first."""
        found = await _tool_call(service.get_context(tenant_of(ctx), id))
        return _context(found)

    @mcp.tool(annotations=read_only)
    async def recent_events(
        ctx: Context,
        source: Annotated[str | None, Field(description="Only events from this webhook source")] = None,
        since: Annotated[str | None, Field(description="Only events received at or after (ISO-8601)")] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor of a previous page")] = None,
    ) -> RecentResult:
        """List the most recently received events, newest first, each with the context it
        changed."""
        events = await _tool_call(
            service.recent_events(
                tenant_of(ctx), limit, source, _parse_time(since, "since"), _decode_cursor(cursor)
            )
        )
        return RecentResult(events=[_recent(e) for e in events], next_cursor=_cursor(events, limit))

    @mcp.resource(
        "hookline://context/{id}",
        name="context",
        description="One context in full, as JSON",
        mime_type="application/json",
    )
    async def context_resource(id: str, ctx: Context) -> str:
        try:
            found = await service.get_context(tenant_of(ctx), id)
        except NotFound as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        except (InvalidArgument, HooklineError) as exc:
            raise ResourceError(f"{type(exc).__name__}: {exc}") from exc
        return _context(found).model_dump_json()

    return mcp

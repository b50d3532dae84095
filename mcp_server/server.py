"""The MCP server: tools, resources and prompts, each a thin call into ``memory``.

The tenant of every request comes from the credential (the authenticated HTTP or WebSocket
request) or, for stdio and in-process clients, from the server's configured tenant; never from an
argument. A server middleware binds it for each message, so tools, resources (static ones get no
``Context``), prompts and subscriptions all read it the same way: ``current_tenant()``.

``remember`` queues the note on the event stream like any webhook (``mcp_server.notes``); live
updates of ``hookline://context/{id}`` come from ``mcp_server.subscriptions``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, Literal, TypeVar

import anyio
import mcp_types as types
import orjson
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import ToolAnnotations
from pydantic import Field

from ingest import pii
from ingest.accept import Acceptor
from ingest.envelope import decode_envelope, to_event
from ingest.stream import producer_for
from mcp_server import completions, prompts, results, sampling
from mcp_server.auth import TENANT_SCOPE_KEY
from mcp_server.notes import DEFAULT_SUBJECT, NoteQueue, note
from mcp_server.subscriptions import CONTEXT_URI, UpdateHub
from memory.errors import AuthError, HooklineError, InvalidArgument, NotFound
from memory.forget import forget as forget_context
from memory.ids import context_id
from memory.ledger import Ledger
from memory.models import Event, RecentEvent
from memory.service import MAX_LIMIT, MemoryService
from memory.status import pipeline_status as read_pipeline_status

T = TypeVar("T")

INSTRUCTIONS = """Hookline is memory fed by real-world events (GitHub, Stripe, Slack, Jira, ...).
Each context is one subject — a pull request, an issue, a thread, a customer — with its events.
Use search_context to find contexts, get_context to read one in full, recent_events to see what
just happened, remember to keep a note of your own, summarize_context to have your model summarize a
context for later readers, forget to erase a context for good, and pipeline_status to check that
events are flowing. Subscribe to hookline://context/{id} to be told
when a context changes."""

RECENT_RESOURCE_EVENTS = 50
SUBJECT_HELP = f"What the note is about; notes on one subject share a context (default {DEFAULT_SUBJECT!r})"
_UNBOUND = "\0unbound"  # no message is being handled (None: one is, but it was not authenticated)
_tenant: ContextVar[str | None] = ContextVar("hookline_tenant", default=_UNBOUND)

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)  # fmt: skip
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                         open_world_hint=False)  # fmt: skip
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                              open_world_hint=False)  # fmt: skip


def package_version() -> str:
    try:
        return version("hookline")
    except PackageNotFoundError:
        return "0.0.0"


# -- the request's tenant ---------------------------------------------------------------------


def current_tenant() -> str:
    """The tenant of the message being handled; AuthError when there is none (fail closed)."""
    tenant = _tenant.get()
    if tenant is None:
        raise AuthError("request was not authenticated")
    if tenant == _UNBOUND:
        raise AuthError("no request is being handled")
    return tenant


class BindTenant:
    """Server middleware: binds the tenant of each inbound message for its handler."""

    def __init__(self, default_tenant: str) -> None:
        self.default_tenant = default_tenant

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        token = _tenant.set(self._tenant_of(ctx.request))
        try:
            return await call_next(ctx)
        finally:
            _tenant.reset(token)

    def _tenant_of(self, request: object) -> str | None:
        if request is None:  # stdio or in-process: the process is bound to one tenant
            return self.default_tenant
        scope = getattr(request, "scope", None)  # a Starlette Request or WebSocket
        tenant = scope.get(TENANT_SCOPE_KEY) if isinstance(scope, dict) else None
        return tenant if isinstance(tenant, str) else None


def _tool_tenant() -> str:
    try:
        return current_tenant()
    except AuthError as exc:
        raise ToolError(f"AuthError: {exc}") from exc


def _resource_tenant() -> str:
    try:
        return current_tenant()
    except AuthError as exc:
        raise ResourceError(f"AuthError: {exc}") from exc


def _subscriber_tenant() -> str:
    try:
        return current_tenant()
    except AuthError as exc:
        raise MCPError(types.INVALID_REQUEST, f"AuthError: {exc}") from exc


# -- helpers -----------------------------------------------------------------------------------


async def _tool_call(work: Awaitable[T]) -> T:
    """Surface the memory layer's errors as tool errors the agent can read."""
    try:
        return await work
    except HooklineError as exc:
        raise ToolError(f"{type(exc).__name__}: {exc}") from exc


async def _resource_call(work: Awaitable[T]) -> T:
    try:
        return await work
    except NotFound as exc:
        raise ResourceNotFoundError(str(exc)) from exc
    except HooklineError as exc:
        raise ResourceError(f"{type(exc).__name__}: {exc}") from exc


def _parse_time(value: str | None, name: str) -> datetime | None:
    try:
        return prompts.parse_time(value, name)
    except InvalidArgument as exc:
        raise ToolError(str(exc)) from exc


def _recent_cursor(events: list[RecentEvent], limit: int) -> str | None:
    if len(events) < limit:
        return None
    return f"{events[-1].received_at.isoformat()}|{events[-1].id}"


def _recent_position(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    stamp, _, event_id = cursor.partition("|")
    try:
        return datetime.fromisoformat(stamp), event_id
    except ValueError as exc:
        raise ToolError("cursor is not one this server returned") from exc


def _search_cursor(offset: int, search: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"o": offset, "s": search})).decode()


def _search_offset(cursor: str | None, search: str) -> int:
    """The offset a search cursor encodes; it only fits the search (query and filters) it came from."""
    if not cursor:
        return 0
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        offset, made_for = int(data["o"]), data["s"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ToolError("cursor is not one this server returned") from exc
    if made_for != search or offset < 0:
        raise ToolError("cursor belongs to another search: pass the same query and filters")
    return offset


def decode_entry(data: bytes, entry_id: str) -> Event:
    """A stream entry's event: how ``memory.forget`` recognises the entries of a context."""
    return to_event(decode_envelope(data), entry_id)


# -- the server --------------------------------------------------------------------------------


def build_mcp(
    service: MemoryService,
    default_tenant: str,
    *,
    acceptor: Acceptor | None = None,
    updates: UpdateHub | None = None,
) -> MCPServer:
    """The MCP server. ``acceptor`` queues ``remember``'s notes (as intake queues webhooks) and
    ``updates`` delivers live updates; one not given is made here and run by the server's lifespan
    (right for stdio and in-process clients; an app that serves many sessions passes its own)."""
    rt = service.rt
    stream_producer = acceptor.producer if acceptor else producer_for(rt)
    hub = updates or UpdateHub(rt.redis)
    notes = NoteQueue(
        acceptor  # stdio and in-process: this server accepts the notes itself, masked the same way
        or Acceptor(rt.settings, stream_producer, Ledger(rt.db), redact=pii.redactor_for(rt.settings))
    )

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        async with anyio.create_task_group() as tasks:
            if acceptor is None:
                tasks.start_soon(stream_producer.run, name="mcp-note-producer")
            if updates is None:
                await tasks.start(hub.run, name="mcp-update-hub")
            try:
                yield {}
            finally:
                tasks.cancel_scope.cancel()

    mcp: MCPServer[Any] = MCPServer(
        name="hookline",
        title="Hookline",
        version=package_version(),
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level="WARNING",
        subscriptions=hub.bus(default_tenant),
        middleware=[BindTenant(default_tenant)],
    )
    hub.install(mcp._lowlevel_server, _subscriber_tenant)  # tenant-scoped listen, legacy subscribe
    prompts.register(mcp, service, current_tenant)
    completions.install(mcp, service, current_tenant)
    sampling.register(mcp, service, _tool_tenant)

    @mcp.tool(annotations=READ_ONLY)
    async def search_context(
        query: Annotated[str, Field(description="What to look for, in plain words ('' for the newest)")],
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Most hits to return")] = 10,
        source: Annotated[str | None, Field(description="Only contexts from this webhook source")] = None,
        since: Annotated[
            str | None, Field(description="Only contexts updated at or after (ISO-8601)")
        ] = None,
        tier: Annotated[
            Literal["hot", "warm", "cold"] | None, Field(description="Only contexts in this tier")
        ] = None,
        cursor: Annotated[str | None, Field(description="next_cursor of a previous page")] = None,
    ) -> results.SearchResult:
        """Search the memory for contexts (pull requests, issues, threads, customers ...) that match
        the query. Hits are ranked by text relevance, recency and importance; each carries its
        score breakdown and a snippet. Read a hit in full with get_context(id). Pages (next_cursor)
        reach down to the best 100 hits."""
        search = hashlib.sha256(orjson.dumps([query, source, since, tier])).hexdigest()[:16]
        offset = _search_offset(cursor, search)
        after = _parse_time(since, "since")
        ranked = await _tool_call(
            service.search_context(_tool_tenant(), query, MAX_LIMIT, source, after, tier=tier)
        )
        more = offset + limit < len(ranked)
        return results.SearchResult(
            query=query,
            hits=[results.hit(found) for found in ranked[offset : offset + limit]],
            next_cursor=_search_cursor(offset + limit, search) if more else None,
        )

    @mcp.tool(annotations=READ_ONLY)
    async def get_context(
        id: Annotated[str, Field(description="A context id, as returned by search_context")],
        restore: Annotated[
            bool, Field(description="Cold context: bring its full history back first")
        ] = False,
    ) -> results.ContextOut:
        """Read one context in full: its title, state, labels, key fields and every event, oldest
        first. A cold (archived) context answers at once with its summary lines; pass
        restore=true to get its full events back."""
        return results.context(await _tool_call(service.get_context(_tool_tenant(), id, restore)))

    @mcp.tool(annotations=READ_ONLY)
    async def compose_context(
        query: Annotated[str, Field(description="The question or task the context is for")],
        max_tokens: Annotated[int, Field(ge=50, le=200_000, description="Token budget for the text")] = 2000,
    ) -> results.Composed:
        """Assemble the most useful memory for a question within a token budget: the best
        contexts in full (every event line), the rest as one-line summaries, each piece starting
        with the [context id] it came from. Never exceeds max_tokens."""
        composed = await _tool_call(service.compose_context(_tool_tenant(), query, max_tokens))
        return results.composed(composed)

    @mcp.tool(annotations=READ_ONLY)
    async def recent_events(
        source: Annotated[str | None, Field(description="Only events from this webhook source")] = None,
        since: Annotated[str | None, Field(description="Only events received at or after (ISO-8601)")] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor of a previous page")] = None,
    ) -> results.RecentResult:
        """List the most recently received events, newest first, each with the context it
        changed."""
        before = _recent_position(cursor)
        after = _parse_time(since, "since")
        events = await _tool_call(service.recent_events(_tool_tenant(), limit, source, after, before))
        return results.recent(events, _recent_cursor(events, limit))

    @mcp.tool(annotations=WRITES)
    async def remember(
        text: Annotated[str, Field(min_length=1, max_length=16_000, description="The note itself")],
        subject: Annotated[str | None, Field(min_length=1, max_length=200, description=SUBJECT_HELP)] = None,
        importance: Annotated[float | None, Field(ge=0, le=1, description="0 to 1 (default 0.5)")] = None,
    ) -> results.Remembered:
        """Keep a note in the memory: a decision, a finding, a fact worth finding later. It is
        queued like any webhook event and readable with get_context(context_id) moments later.
        Remembering the same text on the same subject again changes nothing."""
        tenant = _tool_tenant()
        try:
            item = note(tenant, text, subject, importance)
        except HooklineError as exc:
            raise ToolError(f"the note cannot be filed: {exc}") from exc
        duplicate = await _tool_call(notes.submit(tenant, item))
        return results.Remembered(
            event_id=item.event_id,
            context_id=item.context_id,
            subject=item.subject,
            duplicate=duplicate,
            status="duplicate" if duplicate else "queued",
        )

    @mcp.tool(annotations=DESTRUCTIVE)
    async def forget(
        id: Annotated[str | None, Field(description="The id of the context to erase")] = None,
        subject: Annotated[
            str | None, Field(description="Or its subject, e.g. github:octo/repo#pr/12")
        ] = None,
    ) -> results.Forgotten:
        """Erase one context for good: its events and summary from every tier, the search index,
        the event streams, retries and dead letters. It cannot be undone; only an audit record
        remains (a hash, not the subject). Name the context by id or by subject: exactly one."""
        if (id is None) == (subject is None):
            raise ToolError("name the context by id or by subject: exactly one of them")
        tenant = _tool_tenant()
        ctx_id = id if id is not None else context_id(tenant, subject or "")
        report = await _tool_call(forget_context(rt, tenant, ctx_id, decode_entry, subject))
        if not report.found:
            raise ToolError(f"NotFound: no context {ctx_id!r}; nothing was deleted")
        return results.Forgotten(context_id=ctx_id, deleted=report.counts)

    @mcp.tool(annotations=READ_ONLY)
    async def pipeline_status() -> results.PipelineStatus:
        """How the event pipeline is doing: stream lengths, consumer-group lag and pending entries,
        consumers and their heartbeats, dead letters, events accepted and applied, contexts per
        tier. Use it when the memory looks stale or an event seems to be missing."""
        status = await _tool_call(read_pipeline_status(rt, tenant=_tool_tenant()))
        return results.PipelineStatus.model_validate(status)

    @mcp.resource(CONTEXT_URI, name="context", mime_type="application/json",
                  description="One context in full, as JSON; subscribe to hear when it changes")  # fmt: skip
    async def context_resource(id: str) -> str:
        found = await _resource_call(service.get_context(_resource_tenant(), id))
        return results.context(found).model_dump_json()

    @mcp.resource("hookline://recent", name="recent", mime_type="application/json",
                  description="The most recently received events, newest first, as JSON")  # fmt: skip
    async def recent_resource() -> str:
        events = await _resource_call(service.recent_events(_resource_tenant(), RECENT_RESOURCE_EVENTS))
        return results.recent(events, None).model_dump_json()

    @mcp.resource("hookline://status", name="status", mime_type="application/json",
                  description="The event pipeline's status, as JSON (see pipeline_status)")  # fmt: skip
    async def status_resource() -> str:
        status = await _resource_call(read_pipeline_status(rt, tenant=_resource_tenant()))
        return results.PipelineStatus.model_validate(status).model_dump_json()

    return mcp

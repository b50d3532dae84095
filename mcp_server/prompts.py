"""The MCP prompts: templates from the ``prompts`` package, filled with the tenant's real data.

Each prompt reads what it needs through ``memory.service`` (and the dead-letter stream) at the time
it is asked for, so the agent starts from facts rather than from a blank instruction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from string import Template
from typing import Annotated, Any

import mcp_types as types
import redis.asyncio as aioredis
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from pydantic import Field

from ingest.dlq import DeadLetter, list_dead
from mcp_server.arguments import iso_time
from memory import untrusted
from memory.errors import HooklineError, InvalidArgument, NotFound
from memory.ids import check_context_id, check_source
from memory.models import Context, ContextSummary, RecentEvent
from memory.service import MAX_LIMIT, MemoryService

SUMMARY_WINDOW = timedelta(hours=24)
TRIAGE_WINDOW = timedelta(days=7)
LINE_CHARS = 300
TIMELINE_EVENTS = 200
DEAD_LETTERS_READ = 500  # the dead-letter stream is shared by tenants: read this many, keep ours
# Words that failures are reported in, by CI, payment, error-tracking and incident providers.
FAILURE_QUERY = (
    "failure failed failing error errored exception crash timed_out timeout cancelled declined "
    "dispute refused incident outage alert broken"
)


def template(name: str) -> Template:
    return Template(files("prompts").joinpath(f"{name}.md").read_text(encoding="utf-8"))


def register(mcp: MCPServer[Any], service: MemoryService, tenant: Callable[[], str]) -> None:
    """Add the prompts to ``mcp``; ``tenant()`` is the tenant of the request being handled."""

    @mcp.prompt(title="Summarize recent activity")
    async def summarize_activity(
        since: Annotated[
            str | None, Field(description="ISO-8601 start of the period (default: the last 24 hours)")
        ] = None,
        source: Annotated[str | None, Field(description="Only this webhook source")] = None,
    ) -> str:
        """An activity report of what the webhooks brought in: the contexts that changed and the
        events received in the period, with instructions to summarize them."""
        start = _since(since, SUMMARY_WINDOW)
        who = _tenant(tenant)
        if source is not None:
            _checked(check_source, source)
        contexts = await _prompt_call(service.search_context(who, "", MAX_LIMIT, source, start))
        events = await _prompt_call(service.recent_events(who, MAX_LIMIT, source, start))
        scope = f"since {start:%Y-%m-%d %H:%M} UTC" + (f", source {source!r}" if source else "")
        return template("summarize_activity").substitute(
            scope=scope,
            caps=f"at most {MAX_LIMIT} contexts and {MAX_LIMIT} events",
            notice=untrusted.NOTICE,
            context_count=len(contexts),
            contexts=_fenced(_context_line(hit.context) for hit in contexts),
            event_count=len(events),
            events=_fenced(_event_line(event) for event in events),
        )

    @mcp.prompt(title="Triage failures")
    async def triage_failures(
        since: Annotated[
            str | None, Field(description="ISO-8601 start of the period (default: the last 7 days)")
        ] = None,
    ) -> str:
        """A triage list to work through: contexts that look like failures (failed CI runs and
        payments, errors, incidents) and the events Hookline could not process."""
        start = _since(since, TRIAGE_WINDOW)
        who = _tenant(tenant)
        hits = await _prompt_call(service.search_context(who, FAILURE_QUERY, MAX_LIMIT, None, start))
        dead = await _dead_letters(service.rt.redis, who, start)
        return template("triage_failures").substitute(
            scope=f"since {start:%Y-%m-%d %H:%M} UTC",
            notice=untrusted.NOTICE,
            context_count=len(hits),
            contexts=_fenced(f"{_context_line(hit.context)} — “{_cut(hit.snippet)}”" for hit in hits),
            dead_count=len(dead),
            dead_letters=_fenced(_dead_line(letter) for letter in dead),
        )

    @mcp.prompt(title="Investigate a context")
    async def investigate_context(
        id: Annotated[str, Field(description="A context id, as search_context returns it (ctx_ + 20 hex)")],
    ) -> str:
        """Everything one context holds (head, key fields and its timeline), with instructions to
        explain where it stands and what to do next."""
        try:
            ctx = await service.get_context(_tenant(tenant), check_context_id(id))
        except (NotFound, InvalidArgument) as exc:
            raise MCPError(types.INVALID_PARAMS, f"{type(exc).__name__}: {exc}") from exc
        except HooklineError as exc:
            raise MCPError(types.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}") from exc
        return _investigation(ctx)


def _investigation(ctx: Context) -> str:
    head = ctx.head
    events = ctx.events[-TIMELINE_EVENTS:]
    skipped = len(ctx.events) - len(events)
    timeline = [f"- {e.occurred_at:%Y-%m-%d %H:%M} {e.event_type}: {_cut(e.text)}" for e in events]
    if skipped:
        timeline.insert(0, f"({skipped} older events left out)")
    facts = [
        f"Title: {_cut(head.title)}",
        f"Subject: {_cut(head.subject)}",
        f"State: {head.state or 'unknown'}",
        f"Labels: {_cut(', '.join(ctx.labels)) or 'none'}",
        f"Key fields: {_cut(', '.join(f'{k}={v}' for k, v in ctx.fields.items())) or 'none'}",
        *([f"Link: {_cut(head.url)}"] if head.url else []),
    ]
    return template("investigate_context").substitute(
        context_id=head.id,
        source=head.source,
        kind=head.kind,
        importance=f"{head.importance:.2f}",
        tier=head.tier,
        event_count=head.event_count,
        created_at=f"{head.created_at:%Y-%m-%d %H:%M}",
        updated_at=f"{head.updated_at:%Y-%m-%d %H:%M} UTC",
        notice=untrusted.NOTICE,
        facts=untrusted.fence("\n".join(facts)),
        events=_fenced(timeline),
    )


async def _dead_letters(redis: aioredis.Redis, tenant: str, since: datetime) -> list[DeadLetter]:
    try:
        letters = await list_dead(redis, DEAD_LETTERS_READ)
    except aioredis.RedisError as exc:
        raise MCPError(
            types.INTERNAL_ERROR, f"StoreUnavailable: cannot read the dead letters: {exc}"
        ) from exc
    return [letter for letter in letters if letter.tenant == tenant and letter.at >= since]


def _checked(check: Callable[[str], str], value: str) -> str:
    try:
        return check(value)
    except InvalidArgument as exc:
        raise MCPError(types.INVALID_PARAMS, f"{type(exc).__name__}: {exc}") from exc


def _since(value: str | None, default: timedelta) -> datetime:
    try:
        parsed = iso_time(value, "since")
    except InvalidArgument as exc:
        raise MCPError(types.INVALID_PARAMS, str(exc)) from exc
    return (parsed or datetime.now(UTC) - default).astimezone(UTC)


def _tenant(tenant: Callable[[], str]) -> str:
    try:
        return tenant()
    except HooklineError as exc:
        raise MCPError(types.INVALID_REQUEST, f"{type(exc).__name__}: {exc}") from exc


async def _prompt_call(work: Any) -> Any:
    try:
        return await work
    except HooklineError as exc:
        raise MCPError(types.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}") from exc


def _context_line(ctx: ContextSummary) -> str:
    state = f", {ctx.state}" if ctx.state else ""
    return (
        f"- `{ctx.id}` **{_cut(ctx.title)}** ({ctx.source}, {ctx.kind}{state}; importance "
        f"{ctx.importance:.2f}; {ctx.event_count} events; updated {ctx.updated_at:%Y-%m-%d %H:%M})"
    )


def _event_line(event: RecentEvent) -> str:
    return (
        f"- {event.received_at:%Y-%m-%d %H:%M} {event.source} {event.event_type} "
        f"(`{event.context_id}`): {_cut(event.text)}"
    )


def _dead_line(letter: DeadLetter) -> str:
    return (
        f"- {letter.at:%Y-%m-%d %H:%M} {letter.source or '?'} {letter.event_type or '?'} "
        f"(group {letter.group}, {letter.attempts} attempts): {_cut(letter.error)}"
    )


def _fenced(lines: Iterable[str]) -> str:
    """Lines of third-party text, fenced as untrusted data ("(none)" stays outside the fence)."""
    text = "\n".join(lines)
    return untrusted.fence(text) if text else "(none)"


def _cut(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1] + "…"

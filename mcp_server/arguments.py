"""The MCP tools' arguments: each bounded and checked by its JSON schema before a tool runs (an id
that fails is a clear tool error and nothing is read or written), and the cursors tools hand out."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated

import orjson
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from memory.errors import InvalidArgument
from memory.ids import MAX_SUBJECT_CHARS
from memory.models import RecentEvent

CONTEXT_ID_PATTERN = r"^ctx_[0-9a-f]{20}$"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
NO_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"  # tabs and newlines are fine, NUL and the rest not
NO_CONTROL_LINE = r"^[^\x00-\x1f\x7f]+$"
MAX_QUERY_CHARS = 2000
MAX_NOTE_CHARS = 16_000  # at most 64 KB in UTF-8
MAX_CURSOR_CHARS = 512
MAX_TIME_CHARS = 64

# Patterns only (no length bounds): the error then names the rule, which an agent can act on.
ContextId = Annotated[
    str,
    Field(
        pattern=CONTEXT_ID_PATTERN, description="A context id, as search_context returns it (ctx_ + 20 hex)"
    ),
]
SourceName = Annotated[str, Field(pattern=NAME_PATTERN, description="A webhook source's name")]
Query = Annotated[str, Field(max_length=MAX_QUERY_CHARS, pattern=NO_CONTROL)]
Moment = Annotated[str, Field(max_length=MAX_TIME_CHARS, description="An ISO-8601 time with a zone")]
Cursor = Annotated[str, Field(max_length=MAX_CURSOR_CHARS, description="next_cursor of a previous page")]
Subject = Annotated[str, Field(min_length=1, max_length=MAX_SUBJECT_CHARS, pattern=NO_CONTROL_LINE)]
NoteText = Annotated[str, Field(min_length=1, max_length=MAX_NOTE_CHARS, pattern=NO_CONTROL)]


def iso_time(value: str | None, name: str) -> datetime | None:
    """An ISO-8601 argument with a timezone; ``InvalidArgument`` (naming ``name``) otherwise."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidArgument(
            f"{name} must be an ISO-8601 time such as 2026-11-27T09:00:00Z, got {value[:80]!r}"
        ) from exc
    if parsed.tzinfo is None:
        raise InvalidArgument(f"{name} must carry a timezone (e.g. a trailing Z)")
    return parsed


def parse_time(value: str | None, name: str) -> datetime | None:
    """``iso_time`` for a tool: a tool error the agent can read."""
    try:
        return iso_time(value, name)
    except InvalidArgument as exc:
        raise ToolError(str(exc)) from exc


def recent_cursor(events: list[RecentEvent], limit: int) -> str | None:
    if len(events) < limit:
        return None
    return f"{events[-1].received_at.isoformat()}|{events[-1].id}"


def recent_position(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    stamp, _, event_id = cursor.partition("|")
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise ToolError("cursor is not one this server returned") from exc
    if moment.tzinfo is None:
        raise ToolError("cursor is not one this server returned")
    return moment, event_id


def search_cursor(offset: int, search: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"o": offset, "s": search})).decode()


def search_offset(cursor: str | None, search: str) -> int:
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

"""Notes an agent asked Hookline to remember (the MCP ``remember`` tool, provider ``agent``).

Payload: ``{"subject": "agent:<about>", "title": "<about>", "text": "...", "importance": 0..1}``.
The whole note is the event's text (what search indexes), its importance is the agent's own.
"""

from __future__ import annotations

from typing import Any

from memory.mappers.payload import MappingError
from memory.models import MappedEvent

MAX_TEXT = 16_000


class AgentMapper:
    def map(self, event_type: str, payload: dict[str, Any]) -> MappedEvent:
        subject = payload.get("subject")
        text = payload.get("text")
        if not isinstance(subject, str) or not subject or not isinstance(text, str) or not text:
            raise MappingError("an agent note needs a subject and a text")
        title = payload.get("title") if isinstance(payload.get("title"), str) else None
        importance = payload.get("importance", 0.5)
        if not isinstance(importance, int | float) or isinstance(importance, bool):
            importance = 0.5
        return MappedEvent(
            subject=subject,
            kind="note",
            title=title or text.splitlines()[0][:120],
            text=text[:MAX_TEXT],
            importance=min(1.0, max(0.0, float(importance))),
            fields={"about": title} if title else {},
        )

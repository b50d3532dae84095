"""Agents' notes (the ``remember`` tool): queued on the event stream like any webhook.

Nothing is written to memory here: the note becomes an envelope of source and provider ``agent``,
event type ``note``, goes through the same dedup + XADD script as intake's events, and the workers
apply it. Its dedup key (and so its event id) is ``agent:`` + SHA-256 of tenant, subject and text,
so remembering the same note again is a no-op.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from ingest.accept import Acceptor
from memory.ids import context_id
from memory.mappers.base import mapper_for
from memory.models import Source

AGENT = "agent"  # the source and the provider of notes
NOTE = "note"  # their event type
DEFAULT_SUBJECT = "notes"


@dataclass(frozen=True, slots=True)
class Note:
    event_id: str
    context_id: str  # where the workers will file it
    subject: str  # the context's subject, as the mapper derives it
    payload: dict[str, Any]


def note(tenant: str, text: str, subject: str | None = None, importance: float | None = None) -> Note:
    """The note as an event; raises MappingError if no mapper can file it."""
    about = subject or DEFAULT_SUBJECT
    payload: dict[str, Any] = {"subject": f"{AGENT}:{about}", "title": about, "text": text}
    if importance is not None:
        payload["importance"] = importance
    digest = hashlib.sha256(f"{tenant}\0{about}\0{text}".encode()).hexdigest()
    # Ask the mapper the workers will use, so the id stays right whatever mapper "agent" gets.
    mapped = mapper_for(AGENT).map(NOTE, payload)
    return Note(f"{AGENT}:{digest}", context_id(tenant, mapped.subject), mapped.subject, payload)


class NoteQueue:
    """Queues notes through the acceptor every webhook goes through (redaction, dedup, XADD)."""

    def __init__(self, acceptor: Acceptor) -> None:
        self.acceptor = acceptor

    async def submit(self, tenant: str, item: Note) -> bool:
        """Queue the note; True if it was a duplicate. Raises StoreUnavailable when Redis cannot
        take it."""
        source = Source(AGENT, tenant, AGENT, ())
        body = orjson.dumps(item.payload)
        delivery = item.event_id.removeprefix(f"{AGENT}:")  # the acceptor adds the source back
        _, duplicate = await self.acceptor.accept(source, NOTE, delivery, item.payload, body)
        return duplicate

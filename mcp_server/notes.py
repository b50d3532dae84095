"""Agents' notes (the ``remember`` tool): queued on the event stream like any webhook.

Nothing is written to memory here: the note becomes an envelope of source and provider ``agent``,
event type ``note``, goes through the same dedup + XADD script as intake's events, and the workers
apply it. Its dedup key (and so its event id) is ``agent:`` + SHA-256 of tenant, subject and text,
so remembering the same note again is a no-op.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ingest import envelope
from ingest.dedup import BloomConfig
from ingest.stream import StreamProducer, Submission, admit
from memory import keys
from memory.ids import context_id
from memory.ledger import Ledger
from memory.mappers.base import mapper_for
from memory.settings import Settings

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
    def __init__(self, producer: StreamProducer, ledger: Ledger, settings: Settings) -> None:
        self.producer = producer
        self.ledger = ledger
        self.settings = settings
        self.bloom = BloomConfig()

    async def submit(self, tenant: str, item: Note) -> bool:
        """Queue the note (dedup window, Bloom + ledger, XADD); True if it was a duplicate.
        Raises StoreUnavailable when Redis cannot take it."""
        partition = keys.partition_of(tenant, AGENT, self.settings.partitions)
        data = envelope.encode(
            envelope.Envelope(
                tenant=tenant,
                source=AGENT,
                provider=AGENT,
                event_type=NOTE,
                delivery_id="",
                dedup_key=item.event_id,
                received_at=datetime.now(UTC),
                payload=orjson.dumps(item.payload),
            )
        )
        submission = Submission(
            window_key=keys.dedup_window(partition, tenant, AGENT, item.event_id),
            window_s=self.settings.dedup_window_s,
            stream=keys.events_stream(partition),
            counter=keys.accepted_counter(partition),
            envelope=data,
            bloom_keys=tuple(self.bloom.keys(partition, time.time())),
            bloom_positions=tuple(self.bloom.positions(tenant, AGENT, item.event_id)),
            bloom_ttl_s=self.bloom.generation_s * self.bloom.generations,
        )
        return await admit(self.producer, self.ledger, tenant, item.event_id, submission)

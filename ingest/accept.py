"""Accepting an event: the event policy, redaction, envelope, dedup and XADD, shared by every way in
(the HTTP route, SQS import, the MCP ``remember`` tool). Returns only once the event is in the
stream, or is a duplicate."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ingest import envelope
from ingest.dedup import BloomConfig
from ingest.policy import check_event
from ingest.stream import StreamProducer, Submission, admit
from memory import keys
from memory.ledger import Ledger
from memory.models import Source
from memory.settings import Settings

# Hook for PII redaction: it sees each event's body before anything is stored (or embedded), and
# returns the body to keep. The route checks signatures on the original bytes, so redaction never
# breaks them.
Redactor = Callable[[Source, str, bytes], bytes]


def no_redaction(source: Source, event_type: str, body: bytes) -> bytes:
    return body


# Headers worth keeping in the envelope (for audit and replay); everything else is dropped.
KEPT_HEADERS = ("content-type", "user-agent", "x-github-hook-id", "x-github-hook-installation-target-id")


def content_key(source: str, event_type: str, payload: Any) -> str:
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return f"{source}:{event_type}:{hashlib.sha256(canonical).hexdigest()}"


@dataclass
class Acceptor:
    settings: Settings
    producer: StreamProducer
    ledger: Ledger
    bloom: BloomConfig = field(default_factory=BloomConfig)
    redact: Redactor = no_redaction

    async def accept(
        self,
        source: Source,
        event_type: str,
        delivery: str | None,
        payload: Any,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        undated_body: bytes | None = None,
    ) -> tuple[str, bool]:
        """(event id, duplicate). ``body`` is the JSON text ``payload`` was parsed from.

        ``undated_body``: the verified request body of a source whose signature dates nothing; a
        byte-identical body within the dedup window is then a duplicate whatever its delivery id.
        Raises MalformedRequest when the event breaks the policy (``ingest.policy``) and nothing
        is queued; StoreUnavailable when it could not be queued.
        """
        check_event(payload, body, event_type, delivery, self.settings.max_json_depth)
        dedup_key = f"{source.name}:{delivery}" if delivery else content_key(source.name, event_type, payload)
        partition = keys.partition_of(source.tenant, source.name, self.settings.partitions)
        data = envelope.encode(
            envelope.Envelope(
                tenant=source.tenant,
                source=source.name,
                provider=source.provider,
                event_type=event_type,
                delivery_id=delivery or "",
                dedup_key=dedup_key,
                received_at=datetime.now(UTC),
                payload=self.redact(source, event_type, body),
                headers={k: v for k, v in (headers or {}).items() if k in KEPT_HEADERS},
            )
        )
        now = time.time()
        submission = Submission(
            window_key=keys.dedup_window(partition, source.tenant, source.name, dedup_key),
            window_s=source.options.dedup_window or self.settings.dedup_window_s,
            stream=keys.events_stream(partition),
            counter=keys.accepted_counter(partition),
            envelope=data,
            bloom_keys=tuple(self.bloom.keys(partition, now)),
            bloom_positions=tuple(self.bloom.positions(source.tenant, source.name, dedup_key)),
            bloom_ttl_s=self.bloom.generation_s * self.bloom.generations,
            body_key=self._body_key(partition, source, undated_body),
        )
        return dedup_key, await admit(self.producer, self.ledger, source.tenant, dedup_key, submission)

    @staticmethod
    def _body_key(partition: int, source: Source, undated_body: bytes | None) -> str | None:
        if undated_body is None:
            return None
        digest = hashlib.sha256(undated_body).hexdigest()
        return keys.dedup_body(partition, source.tenant, source.name, digest)

"""The full context as one document: what the warm tier compresses and the cold tier archives.

``{"head": {field: value, ...}, "events": {event id: event JSON text, ...}}`` — exactly the two hot
hashes, so moving between tiers is lossless and a restored context is byte-for-byte the hot one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from memory.models import Context, ContextEvent, ContextSummary


def encode(head: dict[str, str], events: dict[str, str]) -> bytes:
    return orjson.dumps({"head": head, "events": events}, option=orjson.OPT_SORT_KEYS)


def decode(data: bytes) -> tuple[dict[str, str], dict[str, str]]:
    doc = orjson.loads(data)
    return dict(doc["head"]), dict(doc["events"])


def from_ms(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def parse_event(raw: str | bytes, with_payload: bool = False) -> ContextEvent:
    data = orjson.loads(raw)
    return ContextEvent(
        id=data["id"],
        event_type=data["event_type"],
        text=data["text"],
        occurred_at=from_ms(data["occurred_ms"]),
        received_at=from_ms(data["received_ms"]),
        actors=tuple(data.get("actors", ())),
        payload=data.get("payload") if with_payload else None,
    )


def to_context(
    tenant: str, context_id: str, head: dict[str, str], events: dict[str, str], with_payloads: bool = False
) -> Context:
    parsed = sorted(
        (parse_event(value, with_payloads) for value in events.values()), key=lambda e: (e.occurred_at, e.id)
    )
    summary = ContextSummary(
        id=context_id,
        tenant=tenant,
        source=head.get("source", ""),
        subject=head.get("subject", ""),
        kind=head.get("kind", ""),
        title=head.get("title", ""),
        summary=head.get("summary") or (parsed[-1].text if parsed else ""),
        tier=head.get("tier", "hot"),
        state=head.get("state") or None,
        url=head.get("url") or None,
        importance=float(head.get("importance", 0.5)),
        event_count=int(head.get("event_count", len(parsed))),
        created_at=from_ms(head.get("created_ms", 0)),
        updated_at=from_ms(head.get("updated_ms", 0)),
    )
    return Context(
        head=summary,
        events=tuple(parsed),
        labels=tuple(orjson.loads(head.get("labels", "[]"))),
        fields=orjson.loads(head.get("fields", "{}")),
    )

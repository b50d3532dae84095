"""The acceptor every way in shares: the redaction hook runs whoever submits the event."""

from __future__ import annotations

import anyio
import orjson

from ingest.accept import Acceptor
from ingest.envelope import decode_envelope
from ingest.stream import StreamProducer
from memory import keys
from memory.ledger import Ledger
from memory.models import Source
from memory.runtime import Runtime


async def test_redaction_applies_to_every_caller_of_the_acceptor(machine_rt: Runtime, tenant: str) -> None:
    producer = StreamProducer(machine_rt.redis)

    def redact(source: Source, event_type: str, body: bytes) -> bytes:
        return body.replace(b"bob@example.com", b"[email]")

    acceptor = Acceptor(machine_rt.settings, producer, Ledger(machine_rt.db), redact=redact)
    payload = {"subject": "agent:x", "text": "mail bob@example.com"}
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="producer")
        event_id, duplicate = await acceptor.accept(
            Source("agent", tenant, "agent", ()), "note", "n1", payload, orjson.dumps(payload)
        )
        tasks.cancel_scope.cancel()
    assert (event_id, duplicate) == ("agent:n1", False)
    entries = []
    for partition in range(machine_rt.settings.partitions):
        entries += await machine_rt.redis.xrange(keys.events_stream(partition))
    stored = decode_envelope(entries[0][1][b"e"]).payload
    assert b"bob@example.com" not in stored and b"[email]" in stored

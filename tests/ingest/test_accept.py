"""The acceptor every way in shares: the redaction hook runs whoever submits the event."""

from __future__ import annotations

import anyio
import orjson
import pytest

from ingest.accept import Acceptor
from ingest.envelope import decode_envelope
from ingest.stream import NotReplicated, StreamProducer
from memory import keys
from memory.errors import StoreUnavailable
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


async def test_without_enough_replicas_an_event_is_refused_even_as_a_duplicate(
    machine_rt: Runtime, tenant: str
) -> None:
    """HOOKLINE_REDIS_MIN_REPLICAS=1 on a Redis with no replica: every attempt is refused
    (StoreUnavailable, a 503 at the intake), the retry of a stored attempt too: "duplicate" from a
    primary no replica confirmed proves nothing. With 0 the same primary accepts it."""
    lonely = StreamProducer(machine_rt.redis, min_replicas=1, replica_timeout_ms=20)
    trusting = StreamProducer(machine_rt.redis)
    source = Source("gh", tenant, "github", ())
    payload = {"action": "opened"}
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(lonely.run, name="lonely-producer")
        tasks.start_soon(trusting.run, name="trusting-producer")
        refusing = Acceptor(machine_rt.settings, lonely, Ledger(machine_rt.db))
        for _ in range(2):  # the first attempt, then the provider's retry of it
            with pytest.raises(NotReplicated, match="0 of 1 replicas"):
                await refusing.accept(source, "issues", "d1", payload, orjson.dumps(payload))
        accepting = Acceptor(machine_rt.settings, trusting, Ledger(machine_rt.db))
        _, duplicate = await accepting.accept(source, "issues", "d1", payload, orjson.dumps(payload))
        tasks.cancel_scope.cancel()
    assert duplicate is True  # the refused attempt was stored; only its confirmation was missing
    assert issubclass(NotReplicated, StoreUnavailable)

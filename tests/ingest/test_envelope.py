"""The versioned envelope: round trips, compression, and readers across schema versions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ingest import envelope, envelope_pb2
from memory.errors import CorruptEnvelope
from memory.ledger import Ledger
from memory.runtime import Runtime

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _env(payload: bytes) -> envelope.Envelope:
    return envelope.Envelope(
        "acme", "gh", "github", "push", "d-1", "gh:d-1", NOW, payload, {"content-type": "application/json"}
    )


@pytest.mark.parametrize("size", [10, 4096, 4097, 200_000])
def test_round_trip_and_compression_above_the_threshold(size: int) -> None:
    payload = b'{"x": "' + b"a" * size + b'"}'
    data = envelope.encode(_env(payload))
    message = envelope_pb2.WebhookEvent.FromString(data)
    compressed = message.compression == envelope_pb2.WebhookEvent.COMPRESSION_ZSTD
    assert compressed is (len(payload) > envelope.COMPRESS_ABOVE_BYTES)
    if compressed:
        assert len(data) < len(payload) / 10
    decoded = envelope.decode_envelope(data)
    assert decoded.payload == payload and decoded.received_at == NOW and decoded.dedup_key == "gh:d-1"
    assert decoded.headers == {"content-type": "application/json"}


def _v2_class() -> type:
    """A future v2 schema: v1 plus a new field, built the way protoc would from an edited .proto."""
    proto = descriptor_pb2.FileDescriptorProto.FromString(envelope_pb2.DESCRIPTOR.serialized_pb)
    proto.name = "envelope_v2_test.proto"
    message = proto.message_type[0]
    message.field.add(name="trace_id", number=12, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)  # fmt: skip
    pool = descriptor_pool.DescriptorPool()  # a pool of its own: no clash with v1
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("hookline.v1.WebhookEvent"))


def test_a_v2_reader_decodes_v1_envelopes_and_a_v1_reader_decodes_v2() -> None:
    v2 = _v2_class()
    v1_bytes = envelope.encode(_env(b'{"a": 1}'))
    as_v2 = v2.FromString(v1_bytes)
    assert as_v2.schema_version == 1 and as_v2.tenant == "acme" and as_v2.trace_id == ""

    newer = v2.FromString(v1_bytes)
    newer.schema_version = 2
    newer.trace_id = "abc"
    decoded = envelope.decode_envelope(newer.SerializeToString())
    assert decoded.schema_version == 2 and decoded.payload == b'{"a": 1}' and decoded.tenant == "acme"


@pytest.mark.parametrize(
    "data", [b"\xff\xff\xff", b"", envelope_pb2.WebhookEvent(schema_version=0).SerializeToString()]
)
def test_garbage_is_a_corrupt_envelope(data: bytes) -> None:
    with pytest.raises(CorruptEnvelope):
        envelope.decode_envelope(data)


def test_a_payload_that_does_not_decompress_is_a_corrupt_envelope() -> None:
    message = envelope_pb2.WebhookEvent(schema_version=1, compression=1, payload=b"not zstd")
    with pytest.raises(CorruptEnvelope):
        envelope.decode_envelope(message.SerializeToString())


async def test_schema_versions_are_recorded_in_postgres(machine_rt: Runtime) -> None:
    ledger = Ledger(machine_rt.db)
    await ledger.register_schema(envelope.SCHEMA_VERSION, envelope.descriptor())
    await ledger.register_schema(envelope.SCHEMA_VERSION, envelope.descriptor())  # idempotent
    assert envelope.SCHEMA_VERSION in await ledger.schema_versions()
    async with machine_rt.db.connection() as conn:
        row = await (
            await conn.execute("SELECT descriptor FROM envelope_schemas WHERE version = 1")
        ).fetchone()
    assert row is not None
    stored = descriptor_pb2.FileDescriptorProto.FromString(bytes(row[0]))
    assert stored.message_type[0].name == "WebhookEvent"

"""The versioned envelope (``envelope.proto``) that carries an accepted webhook through the stream."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import zstandard
from google.protobuf.message import DecodeError

from ingest import envelope_pb2
from memory.errors import CorruptEnvelope
from memory.models import Event

SCHEMA_VERSION = 1
COMPRESS_ABOVE_BYTES = 8192

# zstd contexts are not thread-safe but are cheap to keep per process; intake runs on one loop.
_compressor = zstandard.ZstdCompressor(level=1)  # intake's hot path: speed over ratio
_decompressor = zstandard.ZstdDecompressor()


@dataclass(frozen=True, slots=True)
class Envelope:
    tenant: str
    source: str
    provider: str
    event_type: str
    delivery_id: str
    dedup_key: str
    received_at: datetime
    payload: bytes  # the verified raw body, redacted where a redaction hook ran
    headers: Mapping[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


def encode(envelope: Envelope, *, compress_above: int = COMPRESS_ABOVE_BYTES) -> bytes:
    message = envelope_pb2.WebhookEvent(
        schema_version=SCHEMA_VERSION,
        tenant=envelope.tenant,
        source=envelope.source,
        provider=envelope.provider,
        event_type=envelope.event_type,
        delivery_id=envelope.delivery_id,
        dedup_key=envelope.dedup_key,
        received_at_ms=int(envelope.received_at.timestamp() * 1000),
        headers=dict(envelope.headers),
    )
    if len(envelope.payload) > compress_above:
        message.compression = envelope_pb2.WebhookEvent.COMPRESSION_ZSTD
        message.payload = _compressor.compress(envelope.payload)
    else:
        message.payload = envelope.payload
    return message.SerializeToString()


def decode_envelope(data: bytes) -> Envelope:
    message = envelope_pb2.WebhookEvent()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise CorruptEnvelope(f"stream entry is not a WebhookEvent: {exc}") from exc
    # Every version is readable: fields are only ever added, and proto3 skips unknown ones.
    if message.schema_version < 1:
        raise CorruptEnvelope("envelope has no schema version")
    payload = message.payload
    if message.compression == envelope_pb2.WebhookEvent.COMPRESSION_ZSTD:
        try:
            payload = _decompressor.decompress(payload)
        except zstandard.ZstdError as exc:
            raise CorruptEnvelope(f"envelope payload does not decompress: {exc}") from exc
    return Envelope(
        tenant=message.tenant,
        source=message.source,
        provider=message.provider,
        event_type=message.event_type,
        delivery_id=message.delivery_id,
        dedup_key=message.dedup_key,
        received_at=datetime.fromtimestamp(message.received_at_ms / 1000, tz=UTC),
        payload=payload,
        headers=dict(message.headers),
        schema_version=message.schema_version,
    )


def to_event(envelope: Envelope, stream_id: str = "") -> Event:
    """The worker's view of an envelope: the payload parsed (intake already validated it)."""
    try:
        payload = orjson.loads(envelope.payload)
    except orjson.JSONDecodeError as exc:
        raise CorruptEnvelope(f"envelope payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        payload = {"value": payload}
    return Event(
        id=envelope.dedup_key,
        tenant=envelope.tenant,
        source=envelope.source,
        provider=envelope.provider,
        event_type=envelope.event_type,
        received_at=envelope.received_at,
        payload=payload,
        stream_id=stream_id,
        delivery_id=envelope.delivery_id,
        schema_version=envelope.schema_version,
    )


def descriptor() -> bytes:
    """The serialized FileDescriptorProto of this version, for the schema registry."""
    return bytes(envelope_pb2.DESCRIPTOR.serialized_pb)


def entry_event(data: bytes, entry_id: str) -> Event:
    """A stream entry's event (what ``memory.forget`` needs to recognise a context's entries)."""
    return to_event(decode_envelope(data), entry_id)

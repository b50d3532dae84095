"""Linear: ``Linear-Signature`` is the hex HMAC-SHA256 of the body.

The signed body carries ``webhookTimestamp`` (milliseconds since the epoch), which must be within
``tolerance`` seconds (default 60, as in Linear's SDK) of now; it is read only once the signature
has matched, so unsigned bytes are never parsed. Delivery id: the ``Linear-Delivery`` header.
Event type: ``<entity>.<action>``, e.g. ``Issue.create``, ``Comment.remove``: the entity is the
``Linear-Event`` header, else payload ``type``; without an ``action`` it is the entity alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ingest.providers.base import (
    MalformedRequest,
    VerificationError,
    check_fresh,
    decode_hex,
    hmac_digest,
    matches_any,
    secret_keys,
)
from memory.models import Source

SIGNATURE_HEADER = "linear-signature"


def _timestamp_ms(body: bytes) -> float:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise VerificationError("Linear body is not JSON, so it has no webhookTimestamp") from exc
    stamp = payload.get("webhookTimestamp") if isinstance(payload, dict) else None
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise VerificationError("Linear body has no numeric webhookTimestamp")
    return float(stamp)


class Linear:
    name = "linear"

    def signs_timestamp(self, source: Source) -> bool:
        return True

    def verify(self, headers: Mapping[str, str], body: bytes, source: Source, now: float) -> None:
        keys = secret_keys(source)
        header = headers.get(SIGNATURE_HEADER, "").strip()
        if not header:
            raise VerificationError(f"missing {SIGNATURE_HEADER} header")
        presented = decode_hex(header, SIGNATURE_HEADER)
        if not matches_any([hmac_digest(key, body) for key in keys], [presented]):
            raise VerificationError("signature does not match any active secret")
        check_fresh(_timestamp_ms(body) / 1000, now, source, 60)

    def delivery_id(self, headers: Mapping[str, str], payload: Any, source: Source) -> str | None:
        return headers.get("linear-delivery", "").strip() or None

    def event_type(self, headers: Mapping[str, str], payload: Any, source: Source) -> str:
        fields = payload if isinstance(payload, dict) else {}
        entity = headers.get("linear-event", "").strip() or fields.get("type")
        if not isinstance(entity, str) or not entity:
            raise MalformedRequest("Linear event has neither a Linear-Event header nor a type")
        action = fields.get("action")
        return f"{entity}.{action}" if isinstance(action, str) and action else entity

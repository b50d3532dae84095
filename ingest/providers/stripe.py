"""Stripe: ``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=...]``.

The signed message is ``<t>.<body>``, keyed with the whole ``whsec_...`` string. Stripe sends one
``v1`` per live secret while one of yours is being rolled; ``v0`` (test-mode legacy) is ignored.
The timestamp must be within ``tolerance`` seconds (default 300) of now, in either direction.
Delivery id: the event's ``id`` (``evt_...``), the same on every retry. Event type: ``type``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.providers.base import (
    MalformedRequest,
    VerificationError,
    check_fresh,
    decode_hex,
    hmac_digest,
    matches_any,
    parse_timestamp,
    secret_keys,
)
from memory.models import Source

SIGNATURE_HEADER = "stripe-signature"


def _parse(header: str) -> tuple[str, list[bytes]]:
    """The timestamp (as sent) and every ``v1`` signature; anything ambiguous is rejected."""
    stamps: list[str] = []
    signatures: list[bytes] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise VerificationError(f"{SIGNATURE_HEADER} has an item without '='")
        if key == "t":
            stamps.append(value.strip())
        elif key == "v1":
            signatures.append(decode_hex(value, f"{SIGNATURE_HEADER} v1"))
    if len(stamps) != 1:
        raise VerificationError(f"{SIGNATURE_HEADER} must carry exactly one t=")
    if not signatures:
        raise VerificationError(f"{SIGNATURE_HEADER} carries no v1 signature")
    return stamps[0], signatures


class Stripe:
    name = "stripe"

    def signs_timestamp(self, source: Source) -> bool:
        return True

    def verify(self, headers: Mapping[str, str], body: bytes, source: Source, now: float) -> None:
        keys = secret_keys(source)
        header = headers.get(SIGNATURE_HEADER, "").strip()
        if not header:
            raise VerificationError(f"missing {SIGNATURE_HEADER} header")
        stamp, presented = _parse(header)
        check_fresh(parse_timestamp(stamp, f"{SIGNATURE_HEADER} t="), now, source, 300)
        message = stamp.encode() + b"." + body
        if not matches_any([hmac_digest(key, message) for key in keys], presented):
            raise VerificationError("signature does not match any active secret")

    def delivery_id(self, headers: Mapping[str, str], payload: Any, source: Source) -> str | None:
        event_id = payload.get("id") if isinstance(payload, dict) else None
        return event_id if isinstance(event_id, str) and event_id else None

    def event_type(self, headers: Mapping[str, str], payload: Any, source: Source) -> str:
        kind = payload.get("type") if isinstance(payload, dict) else None
        if not isinstance(kind, str) or not kind:
            raise MalformedRequest("Stripe event has no type")
        return kind

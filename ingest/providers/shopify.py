"""Shopify: ``X-Shopify-Hmac-SHA256`` is the base64 HMAC-SHA256 of the body.

Shopify signs no timestamp, so there is no replay window here: within the dedup window a replay
is a duplicate by its delivery id, or by the body's hash under a fresh id (``signs_timestamp``).
Delivery id: ``X-Shopify-Webhook-Id`` (the same on retries), else ``X-Shopify-Event-Id``. Event
type: the ``X-Shopify-Topic`` header, e.g. ``orders/create``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.providers.base import (
    MalformedRequest,
    VerificationError,
    decode_base64,
    hmac_digest,
    matches_any,
    secret_keys,
)
from memory.models import Source

SIGNATURE_HEADER = "x-shopify-hmac-sha256"


class Shopify:
    name = "shopify"

    def signs_timestamp(self, source: Source) -> bool:
        return False

    def verify(self, headers: Mapping[str, str], body: bytes, source: Source, now: float) -> None:
        keys = secret_keys(source)
        header = headers.get(SIGNATURE_HEADER, "").strip()
        if not header:
            raise VerificationError(f"missing {SIGNATURE_HEADER} header")
        presented = decode_base64(header, SIGNATURE_HEADER)
        if not matches_any([hmac_digest(key, body) for key in keys], [presented]):
            raise VerificationError("signature does not match any active secret")

    def delivery_id(self, headers: Mapping[str, str], payload: Any, source: Source) -> str | None:
        return headers.get("x-shopify-webhook-id") or headers.get("x-shopify-event-id") or None

    def event_type(self, headers: Mapping[str, str], payload: Any, source: Source) -> str:
        topic = headers.get("x-shopify-topic", "").strip()
        if not topic:
            raise MalformedRequest("missing X-Shopify-Topic header")
        return topic

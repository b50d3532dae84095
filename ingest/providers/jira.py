"""Jira (Cloud admin webhooks with a secret, and Data Center): ``X-Hub-Signature: <method>=<hex>``.

The method is the WebSub one: ``sha256`` is what Atlassian sends; ``sha384`` and ``sha512`` are
accepted too (the method is matched case-insensitively), ``sha1`` and anything else are not.
Jira signs no timestamp, so there is no replay window here (dedup also keys on the body's hash).
Delivery id: the ``X-Atlassian-Webhook-Identifier`` header (the same on retries). Event type:
payload ``webhookEvent``, e.g. ``jira:issue_updated``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.providers.base import (
    MalformedRequest,
    VerificationError,
    decode_hex,
    hmac_digest,
    matches_any,
    secret_keys,
)
from memory.models import Source

SIGNATURE_HEADER = "x-hub-signature"
METHODS = ("sha256", "sha384", "sha512")


class Jira:
    name = "jira"

    def signs_timestamp(self, source: Source) -> bool:
        return False

    def verify(self, headers: Mapping[str, str], body: bytes, source: Source, now: float) -> None:
        keys = secret_keys(source)
        header = headers.get(SIGNATURE_HEADER, "").strip()
        if not header:
            raise VerificationError(f"missing {SIGNATURE_HEADER} header")
        method, _, hex_signature = header.partition("=")
        method = method.strip().lower()
        if method not in METHODS:
            raise VerificationError(f"{SIGNATURE_HEADER} must look like sha256=<hex>")
        presented = decode_hex(hex_signature, SIGNATURE_HEADER)
        if not matches_any([hmac_digest(key, body, method) for key in keys], [presented]):
            raise VerificationError("signature does not match any active secret")

    def delivery_id(self, headers: Mapping[str, str], payload: Any, source: Source) -> str | None:
        return headers.get("x-atlassian-webhook-identifier", "").strip() or None

    def event_type(self, headers: Mapping[str, str], payload: Any, source: Source) -> str:
        event = payload.get("webhookEvent") if isinstance(payload, dict) else None
        if not isinstance(event, str) or not event:
            raise MalformedRequest("Jira payload has no webhookEvent")
        return event

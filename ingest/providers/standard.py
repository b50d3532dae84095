"""Standard Webhooks (standardwebhooks.com; Svix, Clerk, Resend, ...).

Headers ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``: a
space-separated list of ``v1,<base64 HMAC-SHA256>`` over ``<id>.<timestamp>.<body>``; other
versions (``v1a`` asymmetric, ...) are ignored. The key is the base64 after ``whsec_``; a secret
without that prefix is used as its UTF-8 bytes. Timestamp within ``tolerance`` (default 300 s).
Delivery id: ``webhook-id`` (the same on retries). Event type: payload ``type``, else ``event``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.providers.base import (
    VerificationError,
    active_secrets,
    check_fresh,
    decode_base64,
    hmac_digest,
    matches_any,
    parse_timestamp,
    secret_keys,
)
from memory.models import Source

PREFIX = "whsec_"


def _keys(source: Source) -> list[bytes]:
    keys: list[bytes] = []
    for secret, raw in zip(active_secrets(source), secret_keys(source), strict=True):
        if secret.startswith(PREFIX):
            # An undecodable or empty key is a misconfiguration: decode_base64 rejects it.
            keys.append(decode_base64(secret[len(PREFIX) :], f"a {PREFIX} secret of {source.name!r}"))
        else:
            keys.append(raw)
    return keys


def _signatures(header: str) -> list[bytes]:
    signatures: list[bytes] = []
    for entry in header.split():
        version, sep, value = entry.partition(",")
        if not sep:
            raise VerificationError("webhook-signature entries must look like v1,<base64>")
        if version == "v1":
            signatures.append(decode_base64(value, "webhook-signature v1"))
    if not signatures:
        raise VerificationError("webhook-signature carries no v1 signature")
    return signatures


class StandardWebhooks:
    name = "standard"

    def signs_timestamp(self, source: Source) -> bool:
        return True

    def verify(self, headers: Mapping[str, str], body: bytes, source: Source, now: float) -> None:
        keys = _keys(source)
        webhook_id = headers.get("webhook-id", "").strip()
        if not webhook_id:
            raise VerificationError("missing webhook-id header")
        stamp = headers.get("webhook-timestamp", "").strip()
        check_fresh(parse_timestamp(stamp, "webhook-timestamp header"), now, source, 300)
        presented = _signatures(headers.get("webhook-signature", ""))
        try:
            message = f"{webhook_id}.{stamp}.".encode() + body
        except UnicodeEncodeError as exc:  # lone surrogates: nothing a sender could have signed
            raise VerificationError("webhook-id is not valid text") from exc
        if not matches_any([hmac_digest(key, message) for key in keys], presented):
            raise VerificationError("signature does not match any active secret")

    def delivery_id(self, headers: Mapping[str, str], payload: Any, source: Source) -> str | None:
        return headers.get("webhook-id", "").strip() or None

    def event_type(self, headers: Mapping[str, str], payload: Any, source: Source) -> str:
        kind = payload.get("type") if isinstance(payload, dict) else None
        return kind if isinstance(kind, str) and kind else "event"

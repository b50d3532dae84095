"""GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC>``, ``X-GitHub-Delivery``, ``X-GitHub-Event``."""

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

SIGNATURE_HEADER = "x-hub-signature-256"


class GitHub:
    name = "github"

    def signs_timestamp(self, source: Source) -> bool:
        return False

    def verify(self, headers: Mapping[str, str], body: bytes, source: Source, now: float) -> None:
        keys = secret_keys(source)
        header = headers.get(SIGNATURE_HEADER)
        if not header:
            raise VerificationError(f"missing {SIGNATURE_HEADER} header")
        scheme, _, hex_signature = header.strip().partition("=")
        if scheme != "sha256":
            raise VerificationError(f"{SIGNATURE_HEADER} must look like sha256=<hex>")
        presented = decode_hex(hex_signature, SIGNATURE_HEADER)
        if not matches_any([hmac_digest(key, body) for key in keys], [presented]):
            raise VerificationError("signature does not match any active secret")

    def delivery_id(self, headers: Mapping[str, str], payload: Any, source: Source) -> str | None:
        return headers.get("x-github-delivery") or None

    def event_type(self, headers: Mapping[str, str], payload: Any, source: Source) -> str:
        event = headers.get("x-github-event")
        if not event:
            raise MalformedRequest("missing X-GitHub-Event header")
        return event

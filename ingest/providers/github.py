"""GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC>``, ``X-GitHub-Delivery``, ``X-GitHub-Event``."""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from typing import Any

from ingest.providers.base import MalformedRequest, VerificationError, hmac_digest, matches_any
from memory.models import Source

SIGNATURE_HEADER = "x-hub-signature-256"


class GitHub:
    name = "github"

    def verify(self, headers: Mapping[str, str], body: bytes, source: Source, now: float) -> None:
        header = headers.get(SIGNATURE_HEADER)
        if not header:
            raise VerificationError(f"missing {SIGNATURE_HEADER} header")
        scheme, _, hex_signature = header.strip().partition("=")
        if scheme != "sha256" or not hex_signature:
            raise VerificationError(f"{SIGNATURE_HEADER} must look like sha256=<hex>")
        try:
            presented = binascii.unhexlify(hex_signature)
        except (binascii.Error, ValueError) as exc:
            raise VerificationError(f"{SIGNATURE_HEADER} is not hex") from exc
        expected = [hmac_digest(secret.encode(), body) for secret in source.secrets]
        if not matches_any(expected, [presented]):
            raise VerificationError("signature does not match any active secret")

    def delivery_id(self, headers: Mapping[str, str], payload: Any, source: Source) -> str | None:
        return headers.get("x-github-delivery") or None

    def event_type(self, headers: Mapping[str, str], payload: Any, source: Source) -> str:
        event = headers.get("x-github-event")
        if not event:
            raise MalformedRequest("missing X-GitHub-Event header")
        return event

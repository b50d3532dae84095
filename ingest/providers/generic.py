"""Generic HMAC: a configurable signature header, algorithm and encoding, with an optional timestamp.

Options (``hookline source add ... --option key=value``):
- ``header`` (default ``X-Signature``): carries the signature, optionally prefixed ``<algorithm>=``;
- ``algorithm``: sha1, sha256 (default) or sha512;  ``encoding``: hex (default) or base64;
- ``timestamp_header`` (off by default): when set, the signed message is ``<timestamp>.<body>`` and
  the timestamp must be within ``tolerance`` seconds (default 300) of now;
- ``event_header`` (default ``X-Event-Type``) and ``delivery_header`` (default ``X-Delivery-Id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.providers.base import (
    VerificationError,
    check_fresh,
    decode_base64,
    decode_hex,
    hmac_digest,
    matches_any,
    parse_timestamp,
    secret_keys,
)
from memory.models import Source

ALGORITHMS = ("sha1", "sha256", "sha512")
ENCODINGS = ("hex", "base64")


def _option(source: Source, key: str, default: str) -> str:
    return str(source.options.get(key, default))


class Generic:
    name = "generic"

    def verify(self, headers: Mapping[str, str], body: bytes, source: Source, now: float) -> None:
        header = _option(source, "header", "X-Signature").lower()
        algorithm = _option(source, "algorithm", "sha256").lower()
        encoding = _option(source, "encoding", "hex").lower()
        if algorithm not in ALGORITHMS or encoding not in ENCODINGS:
            # A misconfigured source must fail closed, never fall back to "accept".
            raise VerificationError(f"source {source.name!r} has an invalid algorithm or encoding")
        keys = secret_keys(source)
        raw = headers.get(header, "").strip()
        if not raw:
            raise VerificationError(f"missing {header} header")
        prefix = f"{algorithm}="
        if raw.lower().startswith(prefix):
            raw = raw[len(prefix) :]
        presented = decode_hex(raw, header) if encoding == "hex" else decode_base64(raw, header)

        message = body
        timestamp_header = source.options.get("timestamp_header")
        if timestamp_header:
            name = str(timestamp_header).lower()
            stamp = headers.get(name, "").strip()
            check_fresh(parse_timestamp(stamp, f"{name} header"), now, source, 300)
            message = stamp.encode() + b"." + body  # signed as sent

        expected = [hmac_digest(key, message, algorithm) for key in keys]
        if not matches_any(expected, [presented]):
            raise VerificationError("signature does not match any active secret")

    def delivery_id(self, headers: Mapping[str, str], payload: Any, source: Source) -> str | None:
        header = _option(source, "delivery_header", "X-Delivery-Id").lower()
        return headers.get(header) or headers.get("idempotency-key") or None

    def event_type(self, headers: Mapping[str, str], payload: Any, source: Source) -> str:
        declared = headers.get(_option(source, "event_header", "X-Event-Type").lower())
        if declared:
            return declared
        if isinstance(payload, dict):
            for key in ("type", "event", "event_type", "webhookEvent"):
                value = payload.get(key)
                if isinstance(value, str) and value:
                    return value
        return "event"

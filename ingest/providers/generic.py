"""Generic HMAC: a configurable signature header, algorithm and encoding, with an optional timestamp.

Options (``hookline source add ... --option key=value``, checked then by ``memory.source_options``):
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
from memory.source_options import ALGORITHMS, ENCODINGS, GENERIC_PROVIDER

# Header names are compared lower-case (the route lower-cases the request's).
HEADER = "x-signature"
ALGORITHM = "sha256"
ENCODING = "hex"
EVENT_HEADER = "x-event-type"
DELIVERY_HEADER = "x-delivery-id"


class Generic:
    name = GENERIC_PROVIDER

    def signs_timestamp(self, source: Source) -> bool:
        return source.options.timestamp_header is not None  # signed as "<timestamp>.<body>"

    def verify(self, headers: Mapping[str, str], body: bytes, source: Source, now: float) -> None:
        options = source.options
        header = options.header or HEADER
        algorithm = options.algorithm or ALGORITHM
        encoding = options.encoding or ENCODING
        if algorithm not in ALGORITHMS or encoding not in ENCODINGS:
            # Options are checked on add and on load; should one slip through, fail closed anyway.
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
        if options.timestamp_header:
            name = options.timestamp_header
            stamp = headers.get(name, "").strip()
            check_fresh(parse_timestamp(stamp, f"{name} header"), now, source, 300)
            message = stamp.encode() + b"." + body  # signed as sent

        expected = [hmac_digest(key, message, algorithm) for key in keys]
        if not matches_any(expected, [presented]):
            raise VerificationError("signature does not match any active secret")

    def delivery_id(self, headers: Mapping[str, str], payload: Any, source: Source) -> str | None:
        header = source.options.delivery_header or DELIVERY_HEADER
        return headers.get(header) or headers.get("idempotency-key") or None

    def event_type(self, headers: Mapping[str, str], payload: Any, source: Source) -> str:
        declared = headers.get(source.options.event_header or EVENT_HEADER)
        if declared:
            return declared
        if isinstance(payload, dict):
            for key in ("type", "event", "event_type", "webhookEvent"):
                value = payload.get(key)
                if isinstance(value, str) and value:
                    return value
        return "event"

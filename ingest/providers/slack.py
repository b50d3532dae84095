"""Slack: ``X-Slack-Signature: v0=<hex>`` over ``v0:<X-Slack-Request-Timestamp>:<body>``.

The timestamp must be within ``tolerance`` seconds (default 300) of now. Event types:
- Events API ``event_callback``: the inner event's type (``message``, ``app_mention``, ...);
- ``url_verification``: raises ``Challenge`` so the route echoes ``{"challenge": ...}``;
- interactivity (the ``payload=`` form field): its ``type`` (``block_actions``, ``view_submission``);
- slash commands (form fields with ``command``): ``slash_command``.
Delivery id: the Events API ``event_id`` (kept across Slack's retries); none for the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.providers.base import (
    Challenge,
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

SIGNATURE_HEADER = "x-slack-signature"
TIMESTAMP_HEADER = "x-slack-request-timestamp"


class Slack:
    name = "slack"

    def signs_timestamp(self, source: Source) -> bool:
        return True

    def verify(self, headers: Mapping[str, str], body: bytes, source: Source, now: float) -> None:
        keys = secret_keys(source)
        header = headers.get(SIGNATURE_HEADER, "").strip()
        if not header:
            raise VerificationError(f"missing {SIGNATURE_HEADER} header")
        version, _, hex_signature = header.partition("=")
        if version != "v0":
            raise VerificationError(f"{SIGNATURE_HEADER} must look like v0=<hex>")
        presented = decode_hex(hex_signature, SIGNATURE_HEADER)
        stamp = headers.get(TIMESTAMP_HEADER, "").strip()
        check_fresh(parse_timestamp(stamp, f"{TIMESTAMP_HEADER} header"), now, source, 300)
        message = b"v0:" + stamp.encode() + b":" + body
        if not matches_any([hmac_digest(key, message) for key in keys], [presented]):
            raise VerificationError("signature does not match any active secret")

    def delivery_id(self, headers: Mapping[str, str], payload: Any, source: Source) -> str | None:
        event_id = payload.get("event_id") if isinstance(payload, dict) else None
        return event_id if isinstance(event_id, str) and event_id else None

    def event_type(self, headers: Mapping[str, str], payload: Any, source: Source) -> str:
        if not isinstance(payload, dict):
            raise MalformedRequest("Slack payload is not an object")
        kind = payload.get("type")
        if kind == "url_verification":
            challenge = payload.get("challenge")
            if not isinstance(challenge, str) or not challenge:
                raise MalformedRequest("url_verification without a challenge")
            raise Challenge({"challenge": challenge})
        if kind == "event_callback":
            event = payload.get("event")
            inner = event.get("type") if isinstance(event, dict) else None
            return inner if isinstance(inner, str) and inner else "event_callback"
        if isinstance(kind, str) and kind:
            return kind
        if isinstance(payload.get("command"), str):
            return "slash_command"
        raise MalformedRequest("cannot tell the Slack event type")

"""What every webhook provider module supplies: verification, delivery id and event type.

Also the small pieces every verifier shares, so each one fails closed the same way: secrets,
signature decoding and the timestamp window all raise ``VerificationError`` on anything odd.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from memory.errors import HooklineError
from memory.models import Source

# Longer than any real Unix timestamp in seconds or milliseconds; keeps int() and float() cheap and safe.
MAX_TIMESTAMP_DIGITS = 15


class VerificationError(HooklineError):
    """The request's signature is missing, malformed, wrong, or its timestamp is stale (401)."""


class MalformedRequest(HooklineError):
    """The request is structurally unusable for this provider (400)."""


class Challenge(Exception):
    """A verified handshake (Slack's ``url_verification``) the route answers at once with ``body``.

    Providers raise it from ``event_type()``, which the route calls only after ``verify()`` passed,
    so an unsigned request can never obtain a reply.
    """

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("provider handshake")
        self.body = body


class Provider(Protocol):
    name: str

    # Does the signature cover a timestamp (checked against ``tolerance``)? If not, a captured body
    # could be replayed under a fresh delivery id, so dedup also keys on the body's hash.
    def signs_timestamp(self, source: Source) -> bool: ...

    def verify(self, headers: Mapping[str, str], body: bytes, source: Source, now: float) -> None:
        """Return if one of the source's secrets signed this body; raise VerificationError otherwise."""

    def delivery_id(self, headers: Mapping[str, str], payload: Any, source: Source) -> str | None:
        """The provider's own id of this delivery (stable across its retries), if it sends one."""

    def event_type(self, headers: Mapping[str, str], payload: Any, source: Source) -> str: ...


def hmac_digest(secret: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret, message, getattr(hashlib, algorithm)).digest()


def matches_any(expected: Sequence[bytes], presented: Sequence[bytes]) -> bool:
    """Constant-time: every pair is compared, so timing does not reveal which one matched."""
    found = False
    for want in expected:
        for got in presented:
            found |= hmac.compare_digest(want, got)
    return found


def active_secrets(source: Source) -> tuple[str, ...]:
    """The source's secrets; none, or a blank one, is a misconfiguration and rejects every request."""
    if not source.secrets:
        raise VerificationError(f"source {source.name!r} has no secret configured")
    if any(not secret.strip() for secret in source.secrets):
        raise VerificationError(f"source {source.name!r} has a blank secret")
    return source.secrets


def secret_keys(source: Source) -> list[bytes]:
    """The HMAC keys of the common case: each secret's UTF-8 bytes."""
    try:
        return [secret.encode() for secret in active_secrets(source)]
    except UnicodeEncodeError as exc:
        raise VerificationError(f"source {source.name!r} has a secret that is not valid text") from exc


def decode_hex(text: str, what: str) -> bytes:
    try:
        decoded = binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"{what} is not hex") from exc
    if not decoded:
        raise VerificationError(f"{what} is empty")
    return decoded


def decode_base64(text: str, what: str) -> bytes:
    try:
        decoded = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"{what} is not base64") from exc
    if not decoded:
        raise VerificationError(f"{what} is empty")
    return decoded


def parse_timestamp(text: str | None, what: str) -> int:
    """A decimal timestamp from a header: ASCII digits only (``isdigit`` alone admits superscripts)."""
    text = (text or "").strip()
    if not (0 < len(text) <= MAX_TIMESTAMP_DIGITS and text.isascii() and text.isdigit()):
        raise VerificationError(f"missing or malformed {what}")
    return int(text)


def check_fresh(timestamp_s: float, now: float, source: Source, default_tolerance: float) -> None:
    """Reject a timestamp more than the source's ``tolerance`` seconds in the past or the future
    (the option was checked when the source was added and again when it was loaded)."""
    tolerance = default_tolerance if source.options.tolerance is None else source.options.tolerance
    if not math.isfinite(timestamp_s) or abs(now - timestamp_s) > tolerance:
        raise VerificationError("timestamp is outside the tolerance window")

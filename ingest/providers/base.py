"""What every webhook provider module supplies: verification, delivery id and event type."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from memory.errors import HooklineError
from memory.models import Source


class VerificationError(HooklineError):
    """The request's signature is missing, malformed, wrong, or its timestamp is stale (401)."""


class MalformedRequest(HooklineError):
    """The request is structurally unusable for this provider (400)."""


class Provider(Protocol):
    name: str

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

"""PII and secret masking: the built-in ``Redactor`` (``ingest.accept``), applied to every event's
body before anything is stored, embedded or summarized.

What it masks, by kind (``HOOKLINE_PII_MASK``, per source ``--option pii_mask=...``):

- ``secrets`` (default on): private key blocks, GitHub, Stripe, Slack and AWS keys and tokens, JWTs,
  ``Bearer`` credentials;
- ``card`` (default on): payment card numbers (13-19 digits, spaces or dashes allowed, Luhn-valid);
- ``email``, ``phone`` (E.164, ``+`` and 8-15 digits), ``ssn`` (US, ddd-dd-dddd): off by default,
  since an engineering memory often wants to know who did what; ``all`` turns every kind on.

Each match becomes ``[<kind>]`` (``[secret:github_token]``, ``[card]``, ``[email]`` ...). The
patterns (RE2: linear time, whatever the input) never cross a JSON string boundary (no ``"`` or
``\\`` inside a match, except the escaped newlines of a key block), so a JSON body stays valid JSON
when masked in place as bytes, and a body with nothing to mask is returned as is after one scan
(the intake's hot path). Form-encoded bodies (Slack) are decoded, masked value by value and
encoded again. Signatures were checked on the original bytes before this runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
import re2

from memory.errors import ConfigError
from memory.models import Source
from memory.settings import Settings
from memory.source_options import PII_KINDS, parse_pii_kinds

# RE2 syntax (linear time, no backtracking, no look-around: boundaries are checked per match).
SECRET_PATTERNS: dict[str, str] = {
    "private_key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----[^\"]+?-----END [A-Z ]*PRIVATE KEY-----",
    "github_token": r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}",
    "stripe_key": r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,247}",
    "slack_token": r"xox[abposr]-[A-Za-z0-9-]{10,250}",
    "aws_key": r"A[KS]IA[0-9A-Z]{16}",
    "jwt": r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    "bearer": r"[Bb]earer [A-Za-z0-9._~+/-]{20,}=*",
}
OTHER_PATTERNS: dict[str, str] = {
    "card": r"\d(?:[ -]?\d){12,18}",
    "email": r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}",
    "phone": r"\+\d(?:[ ().-]{0,2}\d){7,14}",
    "ssn": r"\d{3}-\d{2}-\d{4}",
}
# A match glued to one of these on either side is part of something longer (an id, a version, a
# word), not a card, phone or SSN.
_GLUE = {"card": b"0123456789.", "phone": b"0123456789+", "ssn": b"0123456789-"}
KINDS = PII_KINDS  # named where source options are parsed; a pattern set for each (tests check)
DEFAULT = ("secrets", "card")


def parse_kinds(spec: str) -> tuple[str, ...]:
    """``secrets,card`` / ``all`` / ``none`` → the kinds to mask. Raises ConfigError."""
    try:
        return parse_pii_kinds(spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


class Masker:
    """Masks the chosen kinds in a body: one RE2 pattern with a named group per kind, one linear
    scan of the body (about 2 µs per KB here; the intake's budget is some 200 µs per event)."""

    def __init__(self, kinds: Iterable[str]) -> None:
        chosen = tuple(kinds)
        patterns = dict(SECRET_PATTERNS) if "secrets" in chosen else {}
        patterns |= {kind: pattern for kind, pattern in OTHER_PATTERNS.items() if kind in chosen}
        self.kinds = chosen
        joined = "|".join(f"(?P<{name}>{pattern})" for name, pattern in patterns.items())
        self._pattern = re2.compile(joined.encode()) if joined else None

    def mask(self, body: bytes) -> bytes:
        if self._pattern is None:
            return body
        if _form_encoded(body):
            return self._mask_form(body)
        if body[:1] not in (b"{", b"["):
            return self._mask(body)
        if b"\\u" in body:  # \uXXXX escapes hide what a value says: decode them first
            return self._mask_json(body)
        masked = self._mask(body)
        if masked is not body:
            try:
                orjson.loads(masked)
            except orjson.JSONDecodeError:  # a match outside a string (a bare number): by value
                return self._mask_json(body)
        return masked

    def mask_text(self, text: str) -> str:
        return self._mask(text.encode()).decode("utf-8", "replace")

    def _mask(self, data: bytes) -> bytes:
        """``data`` itself when nothing is masked (no copy), else the masked bytes."""
        assert self._pattern is not None
        pieces: list[bytes] = []
        last = 0
        for match in self._pattern.finditer(data):
            start, end = match.start(), match.end()
            replacement = _placeholder(match.lastgroup.decode(), data, start, end)
            if replacement is not None:
                pieces += [data[last:start], replacement]
                last = end
        if not pieces:
            return data
        pieces.append(data[last:])
        return b"".join(pieces)

    def _mask_json(self, body: bytes) -> bytes:
        """Mask a JSON body by what its values say. Re-encoded by orjson (UTF-8, no \\u escapes
        but for control characters) it can mostly be masked as bytes again; else value by value."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._mask(body)  # not JSON after all: as text
        plain = orjson.dumps(document)
        if b"\\u" not in plain:
            masked = self._mask(plain)
            if masked is plain:
                return body  # nothing to mask: the original bytes stay
            try:
                orjson.loads(masked)
            except orjson.JSONDecodeError:
                return orjson.dumps(self._mask_value(document))
            return masked
        return orjson.dumps(self._mask_value(document))

    def _mask_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, list):
            return [self._mask_value(item) for item in value]
        if isinstance(value, dict):
            return {key: self._mask_value(item) for key, item in value.items()}
        return value

    def _mask_form(self, body: bytes) -> bytes:
        """Values decoded, masked, encoded again; the body untouched when nothing was masked."""
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        masked = [(key, self.mask_text(value)) for key, value in pairs]
        return body if masked == pairs else urlencode(masked).encode()


def _placeholder(kind: str, data: bytes, start: int, end: int) -> bytes | None:
    """What replaces ``data[start:end]``, a match of ``kind``; None to keep it."""
    glue = _GLUE.get(kind, b"")  # secrets and addresses: masked wherever they are
    if glue and ((start > 0 and data[start - 1] in glue) or (end < len(data) and data[end] in glue)):
        return None
    if kind == "card" and not _luhn(bytes(c for c in data[start:end] if 48 <= c <= 57).decode()):
        return None  # a long number that is no card
    return f"[secret:{kind}]".encode() if kind in SECRET_PATTERNS else f"[{kind}]".encode()


def _form_encoded(body: bytes) -> bool:
    """A form body (``a=1&b=2``, Slack's interactivity and slash commands), not JSON or text."""
    head = body[:1]
    return bool(body) and head not in (b"{", b"[") and b"=" in body and b" " not in body and b"\n" not in body


def redactor_for(settings: Settings) -> Callable[[Source, str, bytes], bytes]:
    """The settings' redactor (``HOOKLINE_PII_MASK``). Raises ConfigError for a bad value."""
    return make_redactor(parse_kinds(settings.pii_mask))


def make_redactor(default_kinds: tuple[str, ...]) -> Callable[[Source, str, bytes], bytes]:
    """The ``Redactor`` for the intake: the settings' kinds, or a source's own ``pii_mask`` option."""
    maskers: dict[tuple[str, ...], Masker] = {}

    def redact(source: Source, event_type: str, body: bytes) -> bytes:
        kinds = default_kinds if source.options.pii_mask is None else source.options.pii_mask
        masker = maskers.get(kinds)
        if masker is None:
            masker = maskers[kinds] = Masker(kinds)
        return masker.mask(body)

    return redact

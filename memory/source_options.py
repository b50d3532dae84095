"""A webhook source's options, parsed once into a typed, frozen ``SourceOptions``.

``hookline source add NAME --option key=value`` parses every option when the source is added: an
unknown key, a key the source's provider does not take, or a value it cannot use is refused with
the reason, before anything is stored. What is stored is the normalized form (``dedup_window=24h``
is stored as 86400 seconds). Loading a source parses that form again, so a row edited by hand is
caught there, once per load, and not at each delivery (the intake answers 503
``source_misconfigured`` for such a source).

Durations take plain seconds or a number with a unit: ``90``, ``90s``, ``15m``, ``24h``, ``7d``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from memory.errors import InvalidArgument
from memory.settings import parse_duration

# The kinds the intake's masker knows (ingest.pii has one pattern set per kind).
PII_KINDS = ("secrets", "card", "email", "phone", "ssn")
# The generic provider's choices (ingest.providers.generic).
GENERIC_PROVIDER = "generic"
ALGORITHMS = ("sha1", "sha256", "sha512")
ENCODINGS = ("hex", "base64")
GENERIC_ONLY = ("header", "algorithm", "encoding", "timestamp_header", "event_header", "delivery_header")

MAX_DURATION_S = 365 * 86400
MAX_RATE = 1_000_000_000.0
MAX_RETRY_ATTEMPTS = 1000
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]{1,128}")  # an HTTP token (RFC 9110)


class BadSourceOption(InvalidArgument):
    """An option no source takes, one this source's provider does not take, or an unusable value."""


def parse_pii_kinds(spec: str) -> tuple[str, ...]:
    """``secrets,card`` / ``all`` / ``none`` → the kinds to mask. ValueError for an unknown kind."""
    text = spec.strip().lower()
    if text in ("", "none", "off"):
        return ()
    if text == "all":
        return PII_KINDS
    kinds = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in PII_KINDS]
    if unknown:
        raise ValueError(f"unknown PII kinds {unknown}: choose from {', '.join(PII_KINDS)}, all or none")
    return kinds


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """Every per-source option; None means "the default" (a setting, or the provider's own)."""

    dedup_window: int | None = None  # seconds; None: HOOKLINE_DEDUP_WINDOW
    rate_limit: float | None = None  # events per second, 0 = unlimited; None: the intake's default
    priority: float = 0.5  # 0..1: under load, low-priority sources are throttled first
    retry_base_s: float | None = None  # the workers' retry policy for this source's failing events
    retry_cap_s: float | None = None
    retry_max_attempts: int | None = None
    pii_mask: tuple[str, ...] | None = None  # None: HOOKLINE_PII_MASK; (): mask nothing
    tolerance: float | None = None  # seconds a signed timestamp may be off; None: the provider's
    # The generic provider's signature scheme (None: its defaults).
    header: str | None = None
    algorithm: str | None = None
    encoding: str | None = None
    timestamp_header: str | None = None
    event_header: str | None = None
    delivery_header: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, object], provider: str) -> SourceOptions:
        """Options from stored or given values (text or numbers). Raises BadSourceOption."""
        values: dict[str, Any] = {}
        for key, value in raw.items():
            parser = _PARSERS.get(key)
            if parser is None:
                known = ", ".join(sorted(_PARSERS))
                raise BadSourceOption(f"unknown option {_shown(key)}: options are {known}")
            if key in GENERIC_ONLY and provider != GENERIC_PROVIDER:
                raise BadSourceOption(f"option {key!r} applies only to the {GENERIC_PROVIDER} provider")
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise BadSourceOption(f"option {key!r} takes text or a number, got {_shown(value)}")
            try:
                values[key] = parser(str(value))
            except ValueError as exc:
                raise BadSourceOption(f"option {key}={_shown(value)}: {exc}") from None
        options = cls(**values)
        if options.retry_base_s and options.retry_cap_s and options.retry_base_s > options.retry_cap_s:
            raise BadSourceOption("option retry_base_s must not exceed retry_cap_s")
        return options

    @classmethod
    def from_pairs(cls, pairs: Iterable[str], provider: str) -> SourceOptions:
        """Options from the command line's ``KEY=VALUE`` pairs; a key given twice is refused."""
        raw: dict[str, str] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                raise BadSourceOption(f"--option takes KEY=VALUE, got {_shown(pair)}")
            if key in raw:
                raise BadSourceOption(f"option {key!r} is given twice")
            raw[key] = value.strip()
        return cls.parse(raw, provider)

    def stored(self) -> dict[str, str | int | float]:
        """The normalized form kept in the sources table: only what differs from the defaults."""
        out: dict[str, str | int | float] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value == spec.default:
                continue
            out[spec.name] = (",".join(value) or "none") if isinstance(value, tuple) else value
        return out


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _seconds(minimum: float, integer: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            seconds = parse_duration(text)
        except ValueError:
            raise ValueError("expected seconds or a duration like 90s, 15m, 24h or 7d") from None
        if integer:
            seconds = int(seconds)
        if not minimum <= seconds <= MAX_DURATION_S:
            raise ValueError(f"must be between {minimum:g} s and {MAX_DURATION_S // 86400} days")
        return seconds

    return parse


def _positive_seconds(text: str) -> float:
    seconds = _seconds(0)(text)
    if seconds <= 0:
        raise ValueError("must be more than 0 seconds")
    return seconds


def _number(low: float, high: float, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected {what}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"expected {what}")
        return value

    return parse


def _attempts(text: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_RETRY_ATTEMPTS):
        raise ValueError(f"expected a whole number from 1 to {MAX_RETRY_ATTEMPTS}")
    return int(text)


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"choose from {', '.join(choices)}")
        return value

    return parse


def _header(text: str) -> str:
    name = text.strip().lower()
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError("expected an HTTP header name (letters, digits and -, at most 128)")
    return name


_PARSERS: dict[str, Callable[[str], Any]] = {
    "dedup_window": _seconds(1, integer=True),
    "rate_limit": _number(0, MAX_RATE, "events per second, a number >= 0 (0: unlimited)"),
    "priority": _number(0, 1, "a number from 0 to 1"),
    "retry_base_s": _positive_seconds,
    "retry_cap_s": _positive_seconds,
    "retry_max_attempts": _attempts,
    "pii_mask": parse_pii_kinds,
    "tolerance": _seconds(0),
    "header": _header,
    "algorithm": _choice(ALGORITHMS),
    "encoding": _choice(ENCODINGS),
    "timestamp_header": _header,
    "event_header": _header,
    "delivery_header": _header,
}

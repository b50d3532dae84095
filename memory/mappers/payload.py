"""Typed, forgiving readers for untrusted webhook JSON.

Providers omit fields, send ``null`` where a document promises an object, and change shapes between
API versions. Mappers read payloads only through these helpers so that a missing or oddly typed
field yields ``None`` (or an empty value) instead of a ``KeyError`` or ``TypeError``.

``MappingError`` lives here, in the leaf module, so that the mappers can raise it without importing
``memory.mappers.base`` (which imports them for its registry); ``base`` re-exports it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from memory.errors import HooklineError

# Epoch values above this are taken as milliseconds (it is the year 5138 in seconds).
_MILLIS_THRESHOLD = 100_000_000_000
_WHITESPACE = re.compile(r"\s+")
_EPOCH = re.compile(r"\d{9,13}(\.\d+)?", re.ASCII)


class MappingError(HooklineError, ValueError):
    """The payload cannot be mapped at all, e.g. its top level is not a JSON object."""


def require_object(payload: object) -> dict[str, Any]:
    """Return ``payload`` if it is a JSON object, else raise ``MappingError``."""
    if not isinstance(payload, dict):
        raise MappingError(f"payload must be a JSON object, got {type(payload).__name__}")
    return payload


def get(value: object, *path: str) -> Any:
    """Walk ``path`` through nested objects; ``None`` as soon as a step is missing or not an object."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def obj(value: object, *path: str) -> dict[str, Any]:
    """The object at ``path``, or an empty dict if it is missing or not an object."""
    found = get(value, *path)
    return found if isinstance(found, dict) else {}


def string(value: object, *path: str) -> str | None:
    """The non-blank string at ``path``, stripped, or ``None``."""
    found = get(value, *path)
    if isinstance(found, str) and found.strip():
        return found.strip()
    return None


def integer(value: object, *path: str) -> int | None:
    """The integer at ``path`` (booleans excluded), or ``None``."""
    found = get(value, *path)
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def objects(value: object, *path: str) -> list[dict[str, Any]]:
    """The objects in the list at ``path``; anything else in it, or a non-list, is skipped."""
    found = get(value, *path)
    return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []


def scalar_text(value: object) -> str | None:
    """A string or integer rendered as a non-blank string (for ids that come either way)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def login(value: object) -> str | None:
    """A user's handle from a GitHub-style user object (``login``, else ``name``)."""
    return string(value, "login") or string(value, "name")


def timestamp(value: object) -> datetime | None:
    """Parse an ISO 8601 string or a Unix epoch (seconds or milliseconds) to an aware UTC datetime."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= _MILLIS_THRESHOLD else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _EPOCH.fullmatch(text):  # e.g. Slack's ts "1355517523.000005"
        return timestamp(float(text))
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: a zone shifts year 1 or 9999 out of range
        return None


def first_timestamp(value: object, *keys: str) -> datetime | None:
    """The first of ``keys`` in ``value`` that parses as a timestamp."""
    for key in keys:
        parsed = timestamp(get(value, key))
        if parsed is not None:
            return parsed
    return None


def one_line(text: str) -> str:
    """Collapse all whitespace, newlines included, to single spaces."""
    return _WHITESPACE.sub(" ", text).strip()


def excerpt(text: str | None, limit: int) -> str:
    """The text on one line, cut to ``limit`` characters with an ellipsis when cut."""
    if not text:
        return ""
    line = one_line(text)
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def first_line(text: str | None) -> str:
    """The first non-blank line of a (commit) message."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def unique(items: Iterable[str | None]) -> tuple[str, ...]:
    """Drop ``None`` and blanks and repeated items, keeping first-seen order."""
    return tuple(dict.fromkeys(item for item in items if item))

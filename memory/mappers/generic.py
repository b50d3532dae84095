"""Map any provider's JSON object to a context, by the conventions most webhook senders share.

The subject comes from the first identifier found among common shapes (Stripe's ``data.object.id``,
a Slack thread, Jira's ``issue.key``, Linear's ``data.id``, a top-level ``id``), prefixed with the
event type's namespace (``invoice.paid`` → ``invoice:in_123``), so every event about one object
lands in one context. The text flattens the payload's first scalar leaves so full-text search can
find the words in it.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from memory.mappers.payload import (
    excerpt,
    first_timestamp,
    get,
    obj,
    require_object,
    scalar_text,
    string,
    unique,
)
from memory.models import MappedEvent

_MAX_LEAVES = 30
_LEAF_CHARS = 80
_KEY_CHARS = 200
_NAMESPACE = re.compile(r"[^.:/\s]+")

_Finder = Callable[[dict[str, Any]], tuple[str, str] | None]

# Where to look for titles, times, states and people: the top level, then where providers nest
# the object an event is about.
_CONTAINERS: tuple[tuple[str, ...], ...] = (
    (),
    ("data", "object"),
    ("data",),
    ("issue", "fields"),
    ("issue",),
    ("event",),
    ("object",),
)
_TITLE_KEYS = ("title", "name", "summary", "subject")
_TIME_KEYS = (
    "occurred_at",
    "timestamp",
    "time",
    "created_at",
    "updated_at",
    "createdAt",
    "updatedAt",
    "created",
    "event_time",
    "ts",
)
_ACTOR_KEYS = ("user", "actor", "sender", "author", "creator")
_PERSON_KEYS = ("login", "username", "name", "email", "id")


def _at(*path: str) -> _Finder:
    def find(payload: dict[str, Any]) -> tuple[str, str] | None:
        value = scalar_text(get(payload, *path))
        return (".".join(path), value) if value is not None else None

    return find


def _slack_thread(payload: dict[str, Any]) -> tuple[str, str] | None:
    """``channel/thread_ts`` (or the channel alone) of a Slack-like message, top level or in ``event``."""
    for prefix in ((), ("event",)):
        channel = get(payload, *prefix, "channel")
        channel_id = scalar_text(channel) or scalar_text(get(channel, "id"))
        thread = scalar_text(get(payload, *prefix, "thread_ts"))
        if thread is not None:
            return ".".join((*prefix, "thread_ts")), f"{channel_id}/{thread}" if channel_id else thread
        if channel_id is not None:
            return ".".join((*prefix, "channel")), channel_id
    return None


# Each finder returns the dotted path and value of an identifier; the first that finds one wins.
_SUBJECT_FINDERS: tuple[_Finder, ...] = (
    _at("subject"),
    _at("data", "object", "id"),  # Stripe
    _slack_thread,
    _at("issue", "key"),  # Jira
    _at("data", "id"),  # Linear
    _at("id"),
)


def _subject_key(payload: dict[str, Any]) -> tuple[str, str] | None:
    return next((found for find in _SUBJECT_FINDERS if (found := find(payload)) is not None), None)


def _containers(payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path in _CONTAINERS:
        found = obj(payload, *path) if path else payload
        if found:
            yield found


def _first_string(payload: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for container in _containers(payload):
        for key in keys:
            value = string(container, key)
            if value is not None:
                return value
    return None


def _leaves(payload: dict[str, Any]) -> Iterator[tuple[str, object]]:
    """Scalar leaves breadth first, so top-level facts come before deeply nested ones."""
    queue: deque[tuple[str, object]] = deque(payload.items())
    while queue:
        key, value = queue.popleft()
        if isinstance(value, dict):
            queue.extend(value.items())
        elif isinstance(value, list):
            queue.extend((key, item) for item in value)
        elif value is not None and value != "":
            yield key, value


def _flatten(payload: dict[str, Any]) -> str:
    parts: list[str] = []
    for key, value in _leaves(payload):
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        else:
            rendered = excerpt(str(value), _LEAF_CHARS)
        parts.append(f"{excerpt(str(key), 40)}={rendered}")
        if len(parts) >= _MAX_LEAVES:
            break
    return " ".join(parts)


def _occurred_at(payload: dict[str, Any]) -> datetime | None:
    for container in _containers(payload):
        found = first_timestamp(container, *_TIME_KEYS)
        if found is not None:
            return found
    return None


def _person(value: object) -> str | None:
    if isinstance(value, dict):
        return next((name for key in _PERSON_KEYS if (name := scalar_text(value.get(key)))), None)
    return scalar_text(value)


def _labels(payload: dict[str, Any]) -> tuple[str, ...]:
    for container in _containers(payload):
        for key in ("labels", "tags"):
            value = container.get(key)
            if isinstance(value, list):
                names = (
                    string(item, "name") if isinstance(item, dict) else scalar_text(item) for item in value
                )
                return unique(names)
    return ()


class GenericMapper:
    """Maps a JSON object from any provider; same payload, same subject."""

    def map(self, event_type: str, payload: dict[str, Any]) -> MappedEvent:
        body = require_object(payload)
        event_type = excerpt(event_type, _KEY_CHARS) or "event"
        match = _NAMESPACE.search(event_type)
        namespace = match.group(0) if match else "generic"
        found = _subject_key(body)
        if found is not None:
            path, value = found
            subject = f"{namespace}:{excerpt(value, _KEY_CHARS)}"
        else:
            path, value, subject = None, None, f"generic:{event_type}"
        title = _first_string(body, _TITLE_KEYS) or (f"{event_type} {value}" if value else event_type)
        flat = _flatten(body)
        url = _first_string(body, ("html_url", "url", "permalink"))
        actors = (_person(container.get(key)) for container in _containers(body) for key in _ACTOR_KEYS)
        return MappedEvent(
            subject=subject,
            kind=namespace.lower() if found is not None else "event",
            title=excerpt(title, _KEY_CHARS),
            text=f"{event_type}: {flat}" if flat else event_type,
            occurred_at=_occurred_at(body),
            url=url if url and url.startswith(("http://", "https://")) else None,
            state=_first_string(body, ("state", "status")),
            actors=unique(actors)[:5],
            labels=_labels(body),
            fields={"event_type": event_type, **({"subject_key": path} if path else {})},
        )

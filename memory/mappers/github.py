"""Map GitHub webhook events to contexts.

One context per thing people talk about: a pull request (its reviews and comments included), an
issue, a branch or tag, a workflow (each run an event in it), a release. Event types without a
handler of their own land in one context per repository and event type, or per numbered item
(``github:octo/repo#discussion/90``) when the payload names one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from memory.mappers.github_about import ABOUT
from memory.mappers.github_ci import map_check, map_workflow_job, map_workflow_run
from memory.mappers.github_event import COMMENT_CHARS, GitHubEvent, label_names
from memory.mappers.github_facts import FACTS, facts, occurred_at
from memory.mappers.github_refs import map_create_delete, map_popularity, map_push, map_release
from memory.mappers.github_threads import map_issue, map_pull_request, map_review_activity
from memory.mappers.payload import excerpt, get, integer, login, obj, require_object, string
from memory.models import MappedEvent

_Handler = Callable[[GitHubEvent], MappedEvent | None]

_HANDLERS: dict[str, _Handler] = {
    "pull_request": map_pull_request,
    "pull_request_review": map_review_activity,
    "pull_request_review_comment": map_review_activity,
    "pull_request_review_thread": map_review_activity,
    "issues": map_issue,
    "issue_comment": map_issue,
    "push": map_push,
    "create": map_create_delete,
    "delete": map_create_delete,
    "workflow_run": map_workflow_run,
    "workflow_job": map_workflow_job,
    "check_run": map_check,
    "check_suite": map_check,
    "release": map_release,
    "star": map_popularity,
    "watch": map_popularity,
    "fork": map_popularity,
}

EVENT_TYPES: frozenset[str] = frozenset(_HANDLERS)
"""The event types with a mapping of their own; any other type takes the fallback."""


class GitHubMapper:
    """Maps an ``X-GitHub-Event`` type and its payload; a missing field never raises.

    A handler returns ``None`` when the payload lacks what its subject needs (say, a pull request
    without a number); the event then takes the fallback path instead of being lost.
    """

    def map(self, event_type: str, payload: dict[str, Any]) -> MappedEvent:
        event = GitHubEvent.read(event_type, require_object(payload))
        handler = _HANDLERS.get(event_type)
        mapped = handler(event) if handler is not None else None
        if mapped is None:
            return map_fallback(event)
        about = ABOUT.get(event_type)  # e.g. a fork is someone copying the repository
        return replace(mapped, text=f"{mapped.text} ({about})") if about else mapped


def map_fallback(ev: GitHubEvent) -> MappedEvent:
    """Any other event: one context per repository and event type, or per numbered item."""
    # The item is the object named like the event; discussion_comment reads its discussion, so
    # comments join the discussion's context.
    candidates = (ev.event_type, ev.event_type.removesuffix("_comment"))
    key = next((name for name in candidates if obj(ev.payload, name)), None)
    item = obj(ev.payload, key) if key else {}
    comment = obj(ev.payload, "comment")
    number = integer(item, "number")
    noun = ev.event_type.replace("_", " ") + (f" #{number}" if number is not None else "")
    if ev.repo is not None:
        numbered = f"github:{ev.repo}#{key}/{number}" if key and number is not None else None
        subject = numbered or f"github:{ev.repo}#{ev.event_type}"
        text = f"{ev.who} {ev.did('sent')} {noun} in {ev.repo}"
    else:
        subject = f"github:{ev.sender or 'unknown'}"
        org = string(ev.payload, "organization", "login")
        text = f"{ev.who} {ev.did('sent')} {noun}" + (f" in {org}" if org else "")
    name = string(item, "title") or string(item, "name")
    text += f": {name}" if name else ""
    body = string(comment, "body") or string(item, "body")
    text += f" - {excerpt(body, COMMENT_CHARS)}" if body else ""
    if ev.event_type in FACTS:
        details = facts(ev.event_type, ev.payload)
    else:
        fields = ("summary", "description", "state", "environment", "severity")
        details = [excerpt(detail, 160) for detail in (string(item, f) for f in fields) if detail]
    text += "".join(f"; {detail}" for detail in details)
    about = ABOUT.get(ev.event_type)
    text += f" ({about})" if about else ""
    title = " ".join(part for part in (ev.repo or ev.sender or "github", noun, name) if part)
    return ev.build(
        subject,
        key or "event",
        title,
        text,
        comment or item,
        occurred_at=occurred_at(ev.event_type, ev.payload),
        state=string(item, "state") or string(ev.payload, "state"),  # commit statuses: top level
        actors=(login(get(item, "user")), login(get(comment, "user"))),
        labels=label_names(item.get("labels")),
        fields={"number": number, "event_type": ev.event_type},
    )

"""GitHub pull requests and issues, with their reviews and comments, one context per thread.

A comment on a pull request arrives as ``issue_comment`` with ``issue.pull_request`` set; it gets
the pull request's subject so that the PR and its whole conversation live in one context.
"""

from __future__ import annotations

from typing import Any

from memory.mappers.github_event import COMMENT_CHARS, GitHubEvent, label_names
from memory.mappers.payload import excerpt, first_timestamp, get, integer, login, obj, string
from memory.models import MappedEvent

_PR_VERBS = {
    "synchronize": "pushed to",
    "review_requested": "requested a review on",
    "review_request_removed": "removed a review request on",
    "ready_for_review": "marked ready for review",
    "converted_to_draft": "converted to draft",
    "auto_merge_enabled": "enabled auto-merge on",
    "auto_merge_disabled": "disabled auto-merge on",
}


def _detail(payload: dict[str, Any]) -> str:
    """What an action applied (a label, a reviewer, an assignee, a milestone), as a suffix."""
    parts = [
        ("label", string(payload, "label", "name")),
        ("reviewer", login(get(payload, "requested_reviewer")) or string(payload, "requested_team", "name")),
        ("assignee", login(get(payload, "assignee"))),
        ("milestone", string(payload, "milestone", "title")),
        ("moved to", string(payload, "changes", "new_repository", "full_name")),  # a transfer
    ]
    found = [f"{name}: {value}" for name, value in parts if value]
    return f" ({', '.join(found)})" if found else ""


def _state(item: dict[str, Any]) -> str | None:
    """open/closed, or merged for a pull request (also when seen through its issue)."""
    if item.get("merged") is True or get(item, "pull_request", "merged_at"):
        return "merged"
    return string(item, "state")


def _thread(ev: GitHubEvent, is_pr: bool, item: dict[str, Any]) -> tuple[str, str, str] | None:
    """Subject, title and a ``#12 'Title'`` reference, or ``None`` without repository or number."""
    number = integer(item, "number")
    if ev.repo is None or number is None:
        return None
    name = string(item, "title") or ""
    subject = f"github:{ev.repo}#{'pr' if is_pr else 'issue'}/{number}"
    return subject, f"{ev.repo}#{number} {name}".strip(), f"#{number} '{name}'"


def map_pull_request(ev: GitHubEvent) -> MappedEvent | None:
    pr = obj(ev.payload, "pull_request")
    thread = _thread(ev, True, pr)
    if thread is None:
        return None
    subject, title, ref = thread
    state = _state(pr)
    verb = "merged" if ev.action == "closed" and state == "merged" else _PR_VERBS.get(ev.action, ev.did())
    text = f"{ev.who} {verb} pull request {ref} in {ev.repo}{_detail(ev.payload)}"
    fields: dict[str, Any] = {
        "number": integer(pr, "number"),
        "branch": string(pr, "head", "ref"),
        "base": string(pr, "base", "ref"),
        "head_sha": string(pr, "head", "sha"),
        "draft": pr.get("draft") is True,
        "merged": state == "merged",
    }
    return ev.build(
        subject,
        "pull_request",
        title,
        text,
        pr,
        state=state,
        actors=(login(get(pr, "user")), login(get(ev.payload, "requested_reviewer"))),
        labels=label_names(pr.get("labels")),
        fields=fields,
    )


def map_review_activity(ev: GitHubEvent) -> MappedEvent | None:
    """Reviews, review comments and review threads, as events in the pull request's context."""
    pr = obj(ev.payload, "pull_request")
    thread = _thread(ev, True, pr)
    if thread is None:
        return None
    subject, title, ref = thread
    review, comment = obj(ev.payload, "review"), obj(ev.payload, "comment")
    keys: tuple[str, ...]
    if ev.event_type == "pull_request_review":
        verdict = (string(review, "state") or "").lower()
        verb = {"approved": "approved", "changes_requested": "requested changes on"}.get(verdict, "reviewed")
        verb = "dismissed a review on" if ev.action == "dismissed" else verb
        source, keys = review, ("submitted_at",)
    elif ev.event_type == "pull_request_review_comment":
        verb = "commented on" if ev.action == "created" else f"{ev.did()} a comment on"
        source, keys = comment, ("updated_at", "created_at")
    else:
        verb, source, keys = f"{ev.did()} a review thread on", pr, ("updated_at",)
    path = string(comment, "path")
    text = f"{ev.who} {verb} pull request {ref} in {ev.repo}" + (f" ({path})" if path else "")
    body = string(source, "body") if source is not pr else None
    text += f": {excerpt(body, COMMENT_CHARS)}" if body else ""
    fields = {"number": integer(pr, "number"), "review_state": string(review, "state"), "path": path}
    return ev.build(
        subject,
        "pull_request",
        title,
        text,
        source or pr,
        time_keys=keys,
        occurred_at=first_timestamp(pr, "updated_at"),
        state=_state(pr),
        actors=(login(get(review, "user")), login(get(comment, "user"))),
        labels=label_names(pr.get("labels")),
        fields=fields,
    )


def map_issue(ev: GitHubEvent) -> MappedEvent | None:
    """``issues`` and ``issue_comment`` events."""
    issue = obj(ev.payload, "issue")
    is_pr = "pull_request" in issue  # GitHub sends this key only for pull requests
    thread = _thread(ev, is_pr, issue)
    if thread is None:
        return None
    subject, title, ref = thread
    comment = obj(ev.payload, "comment")
    if ev.event_type == "issue_comment":
        verb = "commented on" if ev.action == "created" else f"{ev.did()} a comment on"
        text = f"{ev.who} {verb} {'pull request' if is_pr else 'issue'} {ref} in {ev.repo}"
        body = string(comment, "body")
        text += f": {excerpt(body, COMMENT_CHARS)}" if body else ""
    else:
        verb = _PR_VERBS.get(ev.action, ev.did())
        text = (
            f"{ev.who} {verb} {'pull request' if is_pr else 'issue'} {ref} in {ev.repo}{_detail(ev.payload)}"
        )
    return ev.build(
        subject,
        "pull_request" if is_pr else "issue",
        title,
        text,
        comment or issue,
        state=_state(issue),
        actors=(login(get(issue, "user")), login(get(comment, "user"))),
        labels=label_names(issue.get("labels")),
        fields={"number": integer(issue, "number"), "comment_id": integer(comment, "id")},
    )

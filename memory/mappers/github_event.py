"""What every GitHub handler shares: the envelope facts, the importance rule and the result builder."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memory.mappers.payload import first_timestamp, get, login, scalar_text, string, unique
from memory.models import MappedEvent

COMMENT_CHARS = 200

_URGENT_WORDS = frozenset({"critical", "p0", "sev0", "sev1", "security", "urgent", "blocker", "incident"})
_FAILED = frozenset({"failure", "timed_out", "startup_failure"})
_CI_EVENTS = frozenset({"workflow_run", "workflow_job", "check_run", "check_suite", "status"})
_SECURITY_EVENTS = frozenset(
    {"code_scanning_alert", "dependabot_alert", "repository_vulnerability_alert", "security_advisory"}
)


def importance(event_type: str, action: str, labels: Iterable[str], state: str | None) -> float:
    """How much an event matters, in [0, 1], from GitHub's own signals.

    0.5 by default; +0.3 for an urgent label (critical, P0, sev1, security, urgent, blocker, also as
    a word of e.g. ``priority: critical`` or ``bug/urgent``), else +0.1 for ``bug``; +0.3 for a
    failed CI run or a security alert; +0.2 for a review request or a published release; +0.1 for a
    merged pull request. Stars, watches and forks are 0.2.
    """
    if event_type in ("star", "watch", "fork"):
        return 0.2
    words = {word for label in labels for word in _words(label)}
    score = 0.5
    score += 0.3 if words & _URGENT_WORDS else 0.1 if "bug" in words else 0.0
    if (event_type in _CI_EVENTS and state in _FAILED) or event_type in _SECURITY_EVENTS:
        score += 0.3
    if action == "review_requested" or (event_type == "release" and action in ("published", "released")):
        score += 0.2
    if state == "merged" and action == "closed":
        score += 0.1
    return round(max(0.0, min(1.0, score)), 3)


def _words(label: str) -> list[str]:
    return "".join(ch if ch.isalnum() else " " for ch in label.lower()).split()


def label_names(value: object) -> tuple[str, ...]:
    """Names from a list of label objects (or plain strings)."""
    if not isinstance(value, list):
        return ()
    return unique(string(item, "name") if isinstance(item, dict) else scalar_text(item) for item in value)


@dataclass(frozen=True, slots=True)
class GitHubEvent:
    """One delivery's envelope facts, read once; handlers turn it into a ``MappedEvent``."""

    event_type: str
    payload: dict[str, Any]
    action: str
    repo: str | None
    sender: str | None

    @classmethod
    def read(cls, event_type: str, payload: dict[str, Any]) -> GitHubEvent:
        return cls(
            event_type=event_type,
            payload=payload,
            action=string(payload, "action") or "",
            repo=string(payload, "repository", "full_name"),
            sender=login(get(payload, "sender")),
        )

    @property
    def who(self) -> str:
        return self.sender or "someone"

    def did(self, default: str = "updated") -> str:
        """The action as a verb phrase: ``review_requested`` reads "review requested"."""
        return (self.action or default).replace("_", " ")

    def build(
        self,
        subject: str,
        kind: str,
        title: str,
        text: str,
        source: dict[str, Any],
        *,
        time_keys: tuple[str, ...] = ("updated_at", "created_at"),
        occurred_at: datetime | None = None,
        url: str | None = None,
        state: str | None = None,
        actors: Iterable[str | None] = (),
        labels: tuple[str, ...] = (),
        fields: dict[str, Any] | None = None,
    ) -> MappedEvent:
        """Assemble the result.

        ``source`` is the object that changed: the first of its ``time_keys`` that parses dates
        the event (else ``occurred_at``) and its ``html_url`` links to it (unless ``url`` is given).
        """
        if labels:
            text = f"{text} [labels: {', '.join(labels)}]"
        facts = {"repo": self.repo, "action": self.action or None, **(fields or {})}
        return MappedEvent(
            subject=subject,
            kind=kind,
            title=title,
            text=text,
            occurred_at=first_timestamp(source, *time_keys) or occurred_at,
            url=url or string(source, "html_url"),
            state=state,
            actors=unique((self.sender, *actors)),
            labels=labels,
            importance=importance(self.event_type, self.action, labels, state),
            fields={key: value for key, value in facts.items() if value is not None},
        )

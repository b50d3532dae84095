"""What an event without a handler of its own says, read from where GitHub puts it.

The fallback mapper names the object called like the event (``discussion``, ``label``); many events
keep their substance elsewhere: a code scanning alert's rule and tool under ``alert``, a deployment
status's environment beside it, a Pages build's outcome under ``build``. Each entry lists those
facts as paths (``*`` walks a list) with an optional word before the value, and where the event's
own time is, so the context is dated by the change rather than by its receipt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memory.mappers.payload import excerpt, first_line, first_timestamp, get, scalar_text, unique

FACT_CHARS = 160
LIST_ITEMS = 5


@dataclass(frozen=True, slots=True)
class Fact:
    path: tuple[str, ...]
    label: str = ""


def _f(dotted: str, label: str = "") -> Fact:
    return Fact(tuple(dotted.split(".")), label)


_ALERT_TIME = ("alert.updated_at", "alert.created_at")

FACTS: dict[str, tuple[Fact, ...]] = {
    "branch_protection_rule": (_f("rule.name", "rule"),),
    "code_scanning_alert": (
        _f("alert.tool.name", "tool"),
        _f("alert.rule.id", "rule"),
        _f("alert.rule.description"),
        _f("alert.rule.severity", "severity"),
        _f("alert.most_recent_instance.location.path", "in"),
        _f("alert.state", "state"),
    ),
    "dependabot_alert": (
        _f("alert.dependency.package.name", "package"),
        _f("alert.dependency.package.ecosystem", "ecosystem"),
        _f("alert.security_advisory.summary"),
        _f("alert.security_advisory.cve_id"),
        _f("alert.security_advisory.severity", "severity"),
        _f("alert.dependency.manifest_path", "in"),
        _f("alert.state", "state"),
    ),
    "repository_vulnerability_alert": (
        _f("alert.affected_package_name", "package"),
        _f("alert.affected_range", "versions"),
        _f("alert.external_identifier"),
        _f("alert.severity", "severity"),
        _f("alert.fixed_in", "fixed in"),
    ),
    "secret_scanning_alert": (
        _f("alert.secret_type_display_name", "secret"),
        _f("alert.secret_type", "type"),
        _f("alert.state", "state"),
        _f("alert.resolution", "resolution"),
    ),
    "secret_scanning_alert_location": (
        _f("alert.secret_type_display_name", "secret"),
        _f("location.details.path", "in"),
    ),
    "deploy_key": (_f("key.title", "key"),),
    "deployment": (
        _f("deployment.environment", "to"),
        _f("deployment.task", "task"),
        _f("deployment.ref", "from"),
        _f("deployment.description"),
        _f("workflow.name", "workflow"),
    ),
    "deployment_status": (
        _f("deployment_status.state", "state"),
        _f("deployment_status.environment", "environment"),
        _f("deployment_status.description"),
        _f("deployment.task", "task"),
        _f("deployment.ref", "from"),
    ),
    "deployment_review": (
        _f("environment", "environment"),
        _f("workflow_run.name", "run"),
        _f("workflow_job_run.name", "job"),
        _f("workflow_job_run.status", "status"),
        _f("reviewers.*.reviewer.name", "reviewers"),
        _f("reviewers.*.reviewer.login", "reviewers"),
    ),
    "deployment_protection_rule": (_f("environment", "environment"), _f("event", "on")),
    "gollum": (_f("pages.*.title", "pages"), _f("pages.*.action", "")),
    "installation": (_f("repositories.*.full_name", "repositories"),),
    "installation_repositories": (
        _f("repositories_added.*.full_name", "added"),
        _f("repositories_removed.*.full_name", "removed"),
    ),
    "marketplace_purchase": (
        _f("marketplace_purchase.plan.name", "plan"),
        _f("marketplace_purchase.billing_cycle", "billed"),
        _f("marketplace_purchase.plan.unit_name", "per"),
    ),
    "member": (_f("member.login", "member"), _f("changes.permission.to", "permission")),
    "membership": (_f("member.login", "member"), _f("team.name", "team")),
    "merge_group": (
        _f("merge_group.base_ref", "into"),
        _f("merge_group.head_commit.message"),
        _f("reason", "reason"),
    ),
    "meta": (_f("hook.name", "hook"), _f("hook.events.*", "for")),
    "org_block": (_f("blocked_user.login", "user"),),
    "organization": (_f("membership.user.login", "member"), _f("membership.role", "role")),
    "page_build": (_f("build.status", "status"), _f("build.error.message", "error")),
    "ping": (_f("hook.events.*", "for"), _f("zen")),
    "repository_dispatch": (_f("branch", "on"),),
    "repository_import": (_f("status", "status"),),
    "sponsorship": (
        _f("sponsorship.sponsor.login", "sponsor"),
        _f("sponsorship.sponsorable.login", "of"),
        _f("sponsorship.tier.name", "tier"),
    ),
    "status": (
        _f("context", "context"),
        _f("state", "state"),
        _f("description"),
        _f("commit.commit.message", "commit"),
        _f("branches.*.name", "branches"),
    ),
    "team_add": (_f("team.name", "team"),),
    "workflow_dispatch": (_f("workflow", "workflow"), _f("ref", "on")),
}

# Where each event's own time is, when its item (the object named like it) has none.
TIMES: dict[str, tuple[str, ...]] = {
    "code_scanning_alert": _ALERT_TIME,
    "dependabot_alert": _ALERT_TIME,
    "repository_vulnerability_alert": _ALERT_TIME,
    "secret_scanning_alert": _ALERT_TIME,
    "deploy_key": ("key.created_at",),
    "deployment_review": ("workflow_job_run.updated_at", "since"),
    "marketplace_purchase": ("effective_date",),
    "merge_group": ("merge_group.head_commit.timestamp",),
    "page_build": ("build.updated_at", "build.created_at"),
    "status": ("updated_at", "created_at"),
}


def _values(value: object, path: tuple[str, ...]) -> Iterator[str]:
    if not path:
        text = scalar_text(value)
        if text is not None:
            yield text
        return
    head, rest = path[0], path[1:]
    if head == "*":
        for item in value[:LIST_ITEMS] if isinstance(value, list) else ():
            yield from _values(item, rest)
    elif isinstance(value, dict):
        yield from _values(value.get(head), rest)


def facts(event_type: str, payload: dict[str, Any]) -> list[str]:
    """The event's facts as short phrases ("tool Rubocop", "to production"), in table order."""
    found = []
    for fact in FACTS.get(event_type, ()):
        values = unique(excerpt(first_line(v), FACT_CHARS) for v in _values(payload, fact.path))
        if values and not (values[0].startswith(("http://", "https://"))):
            found.append(" ".join(part for part in (fact.label, ", ".join(values)) if part))
    return list(unique(found))


def occurred_at(event_type: str, payload: dict[str, Any]) -> datetime | None:
    for dotted in TIMES.get(event_type, ()):
        *parent, key = dotted.split(".")
        found = first_timestamp(get(payload, *parent) if parent else payload, key)
        if found is not None:
            return found
    return None

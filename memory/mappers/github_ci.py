"""GitHub Actions and checks: one context per workflow, job or check, each run an event in it."""

from __future__ import annotations

from typing import Any

from memory.mappers.github_event import GitHubEvent
from memory.mappers.payload import excerpt, first_line, get, integer, login, obj, objects, scalar_text, string
from memory.models import MappedEvent


def _outcome(run: dict[str, Any]) -> str | None:
    """The conclusion once there is one (success, failure, ...), else the status (queued, ...)."""
    return string(run, "conclusion") or string(run, "status")


# Conclusions as words: "fail" (the stem of failed) is what people search for, not "failure".
_SAID = {"failure": "failed", "timed_out": "timed out, failed", "startup_failure": "failed to start"}


def _said(outcome: str | None) -> str:
    return _SAID.get(outcome, outcome.replace("_", " ")) if outcome else "unknown"


def _on(branch: str | None) -> str:
    return f" on {branch}" if branch else ""


def map_workflow_run(ev: GitHubEvent) -> MappedEvent | None:
    run, workflow = obj(ev.payload, "workflow_run"), obj(ev.payload, "workflow")
    name = string(run, "name") or string(workflow, "name")
    key = scalar_text(run.get("workflow_id")) or scalar_text(workflow.get("id")) or name
    if ev.repo is None or key is None:
        return None
    branch, number, outcome = string(run, "head_branch"), integer(run, "run_number"), _outcome(run)
    text = f"workflow {name or key} run #{number if number is not None else '?'} {ev.did()}"
    text += f": {_said(outcome)}{_on(branch)} in {ev.repo}"
    message = first_line(string(run, "head_commit", "message"))
    text += f" ({string(run, 'event') or 'run'}: {excerpt(message, 120)})" if message else ""
    fields: dict[str, Any] = {
        "workflow_id": integer(run, "workflow_id"),
        "run_id": integer(run, "id"),
        "run_number": number,
        "branch": branch,
        "head_sha": string(run, "head_sha"),
        "conclusion": string(run, "conclusion"),
        "status": string(run, "status"),
        "event": string(run, "event"),
    }
    return ev.build(
        f"github:{ev.repo}#workflow/{key}",
        "workflow_run",
        f"{ev.repo} workflow {name or key}",
        text,
        run,
        state=outcome,
        actors=(login(get(run, "actor")), login(get(run, "triggering_actor"))),
        fields=fields,
    )


def map_workflow_job(ev: GitHubEvent) -> MappedEvent | None:
    """Jobs carry no workflow id, so they cannot join their run's context: one per job name."""
    job = obj(ev.payload, "workflow_job")
    name, workflow = string(job, "name"), string(job, "workflow_name")
    if ev.repo is None or name is None:
        return None
    key = f"{workflow}/{name}" if workflow else name
    branch, outcome, runner = string(job, "head_branch"), _outcome(job), string(job, "runner_name")
    text = f"job {name}" + (f" of workflow {workflow}" if workflow else "")
    text += f" {ev.did()}: {_said(outcome)}{_on(branch)} in {ev.repo}"
    text += f" (runner {runner})" if runner else ""
    fields: dict[str, Any] = {
        "run_id": integer(job, "run_id"),
        "job_id": integer(job, "id"),
        "branch": branch,
        "head_sha": string(job, "head_sha"),
        "conclusion": string(job, "conclusion"),
        "status": string(job, "status"),
    }
    return ev.build(
        f"github:{ev.repo}#job/{key}",
        "workflow_job",
        f"{ev.repo} job {key}",
        text,
        job,
        time_keys=("completed_at", "started_at", "created_at"),
        state=outcome,
        fields=fields,
    )


def map_check(ev: GitHubEvent) -> MappedEvent | None:
    """``check_run`` (one context per check name) and ``check_suite`` (one per app)."""
    if ev.repo is None:
        return None
    is_run = ev.event_type == "check_run"
    item = obj(ev.payload, ev.event_type)
    suite = obj(item, "check_suite") if is_run else item
    name = (string(item, "name") if is_run else string(item, "app", "name")) or "checks"
    numbers = [n for n in (integer(pr, "number") for pr in objects(item, "pull_requests")) if n is not None]
    branch, outcome = string(suite, "head_branch"), _outcome(item)
    noun = "check" if is_run else "check suite"
    text = f"{noun} {name} {ev.did()}: {_said(outcome)}{_on(branch)} in {ev.repo}"
    text += "".join(f" PR #{n}" for n in numbers)
    summary = string(item, "output", "title") or first_line(string(item, "head_commit", "message"))
    text += f": {excerpt(summary, 120)}" if summary else ""
    fields: dict[str, Any] = {
        "branch": branch,
        "head_sha": string(item, "head_sha"),
        "conclusion": string(item, "conclusion"),
        "status": string(item, "status"),
        "pull_requests": numbers or None,
    }
    return ev.build(
        f"github:{ev.repo}#{'check' if is_run else 'checks'}/{name}",
        ev.event_type,
        f"{ev.repo} {noun} {name}",
        text,
        item,
        time_keys=("completed_at", "started_at") if is_run else ("updated_at", "created_at"),
        state=outcome,
        fields=fields,
    )

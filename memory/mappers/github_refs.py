"""GitHub branches, tags, releases and the repository's popularity.

A branch or tag is one context (``github:octo/repo@main``, ``github:octo/repo@tag/v1``) fed by
``push``, ``create`` and ``delete``; a release is one context per tag.
"""

from __future__ import annotations

from typing import Any

from memory.mappers.github_event import COMMENT_CHARS, GitHubEvent
from memory.mappers.payload import (
    excerpt,
    first_line,
    first_timestamp,
    get,
    integer,
    login,
    obj,
    objects,
    string,
)
from memory.models import MappedEvent

_MAX_COMMIT_LINES = 5


def _ref(repo: str, ref: str, ref_type: str | None = None) -> tuple[str, str]:
    """Subject and display name of a branch or tag; takes ``refs/heads/x`` or a bare name."""
    if ref.startswith("refs/tags/") or ref_type == "tag":
        name = f"tag/{ref.removeprefix('refs/tags/')}"
    else:
        name = ref.removeprefix("refs/heads/")
    return f"github:{repo}@{name}", name


def map_push(ev: GitHubEvent) -> MappedEvent | None:
    p = ev.payload
    ref = string(p, "ref")
    if ev.repo is None or ref is None:
        return None
    subject, name = _ref(ev.repo, ref)
    pusher = string(p, "pusher", "name")
    commits, head = objects(p, "commits"), obj(p, "head_commit")
    messages = [first_line(string(c, "message")) for c in commits[:_MAX_COMMIT_LINES]]
    messages = messages or [first_line(string(head, "message"))]
    if p.get("deleted") is True:
        text = f"{pusher or ev.who} deleted {name} in {ev.repo}"
    else:
        verb = "force-pushed" if p.get("forced") is True else "pushed"
        if commits:
            count = f"{len(commits)} commit{'' if len(commits) == 1 else 's'}"
            text = f"{pusher or ev.who} {verb} {count} to {name} in {ev.repo}"
        else:  # a new tag, or a branch created at an existing commit
            verb = "created" if p.get("created") is True else verb
            text = f"{pusher or ev.who} {verb} {name} in {ev.repo}"
        summary = "; ".join(m for m in messages if m)
        text += f": {excerpt(summary, 600)}" if summary else ""
    fields: dict[str, Any] = {
        "branch": name,
        "head_sha": string(p, "after"),
        "before": string(p, "before"),
        "commits": len(commits),
    }
    return ev.build(
        subject,
        "push",
        f"{ev.repo}@{name}",
        text,
        head,
        time_keys=("timestamp",),
        # head_commit is null when a branch is deleted; the repository's pushed_at is next best.
        occurred_at=first_timestamp(obj(p, "repository"), "pushed_at"),
        url=string(p, "compare"),
        actors=(pusher,),
        fields=fields,
    )


def map_create_delete(ev: GitHubEvent) -> MappedEvent | None:
    ref = string(ev.payload, "ref")
    if ev.repo is None or ref is None:
        return None
    ref_type = string(ev.payload, "ref_type")
    subject, name = _ref(ev.repo, ref, ref_type)
    verb = "created" if ev.event_type == "create" else "deleted"
    text = f"{ev.who} {verb} {ref_type or 'ref'} {ref} in {ev.repo}"
    fields = {"branch": name, "ref_type": ref_type}
    return ev.build(subject, "push", f"{ev.repo}@{name}", text, {}, fields=fields)


def map_release(ev: GitHubEvent) -> MappedEvent | None:
    release = obj(ev.payload, "release")
    tag = string(release, "tag_name")
    if ev.repo is None or tag is None:
        return None
    name = string(release, "name") or tag
    if ev.action == "deleted":
        state: str | None = "deleted"
    elif release.get("draft") is True:
        state = "draft"
    elif release.get("prerelease") is True:
        state = "prereleased"
    else:
        state = "published" if release.get("published_at") else ev.action or None
    text = f"{ev.who} {ev.did()} release {name}" + (f" ({tag})" if name != tag else "") + f" in {ev.repo}"
    body = string(release, "body")
    text += f": {excerpt(body, COMMENT_CHARS)}" if body else ""
    fields: dict[str, Any] = {
        "tag": tag,
        "name": name,
        "target": string(release, "target_commitish"),
        "prerelease": release.get("prerelease") is True,
        "draft": release.get("draft") is True,
    }
    return ev.build(
        f"github:{ev.repo}#release/{tag}",
        "release",
        f"{ev.repo} release {name}",
        text,
        release,
        time_keys=("published_at", "created_at"),
        state=state,
        actors=(login(get(release, "author")),),
        fields=fields,
    )


def map_popularity(ev: GitHubEvent) -> MappedEvent | None:
    """Stars, watches (GitHub's older name for starring) and forks: low-importance contexts."""
    if ev.repo is None:
        return None
    if ev.event_type == "fork":
        forkee = obj(ev.payload, "forkee")
        target = string(forkee, "full_name")
        text = f"{ev.who} forked {ev.repo}" + (f" to {target}" if target else "")
        return ev.build(f"github:{ev.repo}#forks", "fork", f"{ev.repo} forks", text, forkee)
    count = integer(ev.payload, "repository", "stargazers_count")
    verb = {"deleted": "unstarred", "started": "started watching"}.get(ev.action, "starred")
    text = f"{ev.who} {verb} {ev.repo}" + (
        f" ({count} star{'' if count == 1 else 's'})" if count is not None else ""
    )
    subject = f"github:{ev.repo}#stars"
    return ev.build(subject, "star", f"{ev.repo} stars", text, ev.payload, time_keys=("starred_at",))

"""The GitHub mapper on real payloads from @octokit/webhooks-examples."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memory.mappers.base import MappingError, mapper_for
from memory.mappers.github import EVENT_TYPES, GitHubMapper
from memory.mappers.github_event import importance
from memory.models import MappedEvent
from tests.fixtures.github_examples import fixture_names, load_examples, load_fixture

REPO = "Codertocat/Hello-World"
PR_SUBJECT = f"github:{REPO}#pr/2"
SETUP_HINT = "GitHub webhook examples are not installed: run bench/setup_examples.sh"

mapper = GitHubMapper()


def _example_params() -> list[Any]:
    try:
        examples = load_examples()
    except FileNotFoundError:
        return [pytest.param(None, None, id="examples-missing", marks=pytest.mark.skip(reason=SETUP_HINT))]
    seen: dict[str, int] = {}
    params = []
    for event_type, payload in examples:
        seen[event_type] = seen.get(event_type, 0) + 1
        params.append(pytest.param(event_type, payload, id=f"{event_type}-{seen[event_type]}"))
    return params


_FIXTURE_TYPES = (
    "pull_request_review",
    "pull_request",
    "issue_comment",
    "issues",
    "push",
    "workflow_run",
    "release",
)


def _event_type(fixture: str) -> str:
    """Fixtures are named after their event type: ``pull_request_closed`` is a ``pull_request``."""
    return next(t for t in _FIXTURE_TYPES if fixture.startswith(t))


def _map(fixture: str) -> MappedEvent:
    return mapper.map(_event_type(fixture), load_fixture(fixture))


def _pr_comment() -> dict[str, Any]:
    """An ``issue_comment`` on pull request #2.

    The examples package has no comment on a pull request, so this takes its real issue comment
    and gives the issue what GitHub sends for a PR: the PR's number and title, and the
    ``pull_request`` object of links.
    """
    payload = load_fixture("issue_comment_created")
    pr = load_fixture("pull_request_opened")["pull_request"]
    payload["issue"]["number"] = pr["number"]
    payload["issue"]["title"] = pr["title"]
    payload["issue"]["pull_request"] = {
        "url": pr["url"],
        "html_url": pr["html_url"],
        "diff_url": pr["diff_url"],
        "patch_url": pr["patch_url"],
        "merged_at": None,
    }
    return payload


@pytest.mark.parametrize(("event_type", "payload"), _example_params())
def test_every_example_maps(event_type: str, payload: dict[str, Any]) -> None:
    mapped = mapper.map(event_type, payload)

    assert mapped.subject.startswith("github:")
    assert mapped.title.strip()
    assert mapped.text.strip()
    assert "\n" not in mapped.text
    assert 0.0 <= mapped.importance <= 1.0
    assert mapped.occurred_at is None or mapped.occurred_at.tzinfo is UTC


def test_all_examples_are_there() -> None:
    try:
        examples = load_examples()
    except FileNotFoundError:
        pytest.skip(SETUP_HINT)
    assert len(examples) == 329
    assert len({event_type for event_type, _ in examples}) == 58


def test_pull_request_opened() -> None:
    mapped = _map("pull_request_opened")

    assert mapped.subject == PR_SUBJECT
    assert mapped.kind == "pull_request"
    assert mapped.title == f"{REPO}#2 Update the README with new information."
    assert mapped.text == (
        f"Codertocat opened pull request #2 'Update the README with new information.' in {REPO}"
    )
    assert mapped.state == "open"
    assert mapped.occurred_at == datetime(2019, 5, 15, 15, 20, 33, tzinfo=UTC)
    assert mapped.url == "https://github.com/Codertocat/Hello-World/pull/2"
    assert mapped.actors == ("Codertocat",)
    assert mapped.importance == 0.5
    assert mapped.fields["branch"] == "changes"
    assert mapped.fields["number"] == 2


def test_pull_request_closed_without_merge_is_closed() -> None:
    mapped = _map("pull_request_closed")

    assert mapped.subject == PR_SUBJECT
    assert mapped.state == "closed"
    assert "closed pull request #2" in mapped.text
    assert mapped.labels == ("bug",)
    assert "[labels: bug]" in mapped.text


def test_pull_request_closed_with_merge_is_merged() -> None:
    payload = load_fixture("pull_request_closed")
    payload["pull_request"]["merged"] = True
    closed = _map("pull_request_closed")

    merged = mapper.map("pull_request", payload)

    assert merged.state == "merged"
    assert "merged pull request #2" in merged.text
    assert merged.importance > closed.importance


def test_review_requested_raises_importance() -> None:
    payload = load_fixture("pull_request_opened")
    payload["action"] = "review_requested"
    payload["requested_reviewer"] = copy.deepcopy(payload["sender"]) | {"login": "octocat"}

    mapped = mapper.map("pull_request", payload)

    assert mapped.importance > 0.5
    assert mapped.actors == ("Codertocat", "octocat")
    assert "reviewer: octocat" in mapped.text


def test_comment_on_issue_is_in_the_issue_context() -> None:
    mapped = _map("issue_comment_created")

    assert mapped.subject == f"github:{REPO}#issue/1"
    assert mapped.kind == "issue"
    assert mapped.text.startswith("Codertocat commented on issue #1 'Spelling error in the README file'")
    assert "You are totally right! I'll get this fixed right away." in mapped.text
    assert mapped.occurred_at == datetime(2019, 5, 15, 15, 20, 21, tzinfo=UTC)


def test_comment_on_pull_request_shares_the_pull_request_context() -> None:
    pr = _map("pull_request_opened")

    comment = mapper.map("issue_comment", _pr_comment())

    assert comment.subject == pr.subject == PR_SUBJECT
    assert comment.kind == pr.kind == "pull_request"
    assert comment.title == pr.title
    assert "commented on pull request #2" in comment.text


def test_review_is_in_the_pull_request_context() -> None:
    mapped = _map("pull_request_review_submitted")

    assert mapped.subject == PR_SUBJECT
    assert mapped.fields["review_state"] == "commented"
    assert mapped.occurred_at == datetime(2019, 5, 15, 15, 20, 38, tzinfo=UTC)


def test_issue_opened() -> None:
    mapped = _map("issues_opened")

    assert mapped.subject == f"github:{REPO}#issue/1"
    assert mapped.kind == "issue"
    assert mapped.state == "open"
    assert mapped.labels == ("bug",)
    assert mapped.text.startswith("Codertocat opened issue #1 'Spelling error in the README file'")
    assert mapped.importance > 0.5  # the bug label


def test_push_to_branch() -> None:
    mapped = _map("push")

    assert mapped.subject == f"github:{REPO}@master"
    assert mapped.kind == "push"
    assert mapped.text == f"Codertocat pushed 1 commit to master in {REPO}: Initial commit"
    assert mapped.occurred_at == datetime(2019, 5, 15, 15, 19, 25, tzinfo=UTC)
    assert mapped.fields["head_sha"] == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    assert mapped.url is not None and mapped.url.startswith("https://github.com/")


def test_push_lists_first_lines_of_up_to_five_commits() -> None:
    payload = load_fixture("push")
    commit = payload["commits"][0]
    payload["commits"] = [commit | {"message": f"Change {i}\n\nDetails {i}"} for i in range(7)]

    mapped = mapper.map("push", payload)

    assert "pushed 7 commits to master" in mapped.text
    assert "Change 0; Change 1; Change 2; Change 3; Change 4" in mapped.text
    assert "Change 5" not in mapped.text
    assert "Details" not in mapped.text


def test_push_of_tag_and_deleted_branch() -> None:
    tag = load_fixture("push") | {"ref": "refs/tags/v1.2"}
    deleted = load_fixture("push") | {"deleted": True, "head_commit": None, "commits": []}

    assert mapper.map("push", tag).subject == f"github:{REPO}@tag/v1.2"
    gone = mapper.map("push", deleted)
    assert gone.subject == f"github:{REPO}@master"
    assert gone.text == f"Codertocat deleted master in {REPO}"
    assert gone.occurred_at == datetime.fromtimestamp(1557933657, tz=UTC)  # repository.pushed_at


def test_workflow_run_completed() -> None:
    mapped = _map("workflow_run_completed")

    assert mapped.subject == "github:octo-org/octo-repo#workflow/2823525"
    assert mapped.kind == "workflow_run"
    assert mapped.state == "success"
    assert mapped.importance == 0.5
    assert "run #163 completed: success on master in octo-org/octo-repo" in mapped.text
    assert mapped.occurred_at == datetime(2020, 10, 5, 16, 33, 49, tzinfo=UTC)


def test_failed_workflow_run_is_important_and_in_the_same_context() -> None:
    success = _map("workflow_run_completed")
    payload = load_fixture("workflow_run_completed")
    payload["workflow_run"]["conclusion"] = "failure"

    failure = mapper.map("workflow_run", payload)

    assert failure.subject == success.subject
    assert failure.state == "failure"
    assert "completed: failed on master" in failure.text
    assert failure.importance > 0.5


def test_release_published() -> None:
    mapped = _map("release_published")

    assert mapped.subject == f"github:{REPO}#release/0.0.1"
    assert mapped.kind == "release"
    assert mapped.state == "published"
    assert mapped.importance > 0.5
    assert mapped.occurred_at == datetime(2019, 5, 15, 15, 20, 53, tzinfo=UTC)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [((), 0.5), (("bug",), 0.6), (("P0",), 0.8), (("priority: critical",), 0.8), (("bug/urgent",), 0.8)],
)
def test_importance_from_labels(labels: tuple[str, ...], expected: float) -> None:
    assert importance("issues", "opened", labels, "open") == expected


def test_stars_are_unimportant() -> None:
    assert importance("star", "created", (), None) < 0.5
    assert importance("watch", "started", ("critical",), None) < 0.5


def test_unknown_event_falls_back_to_repository_and_event_type() -> None:
    payload = load_fixture("push")
    payload["action"] = "created"

    mapped = mapper.map("some_future_event", payload)

    assert mapped.subject == f"github:{REPO}#some_future_event"
    assert mapped.kind == "event"
    assert mapped.text == f"Codertocat created some future event in {REPO}"


def test_pull_request_without_number_falls_back() -> None:
    payload = load_fixture("pull_request_opened")
    del payload["pull_request"]["number"]

    assert mapper.map("pull_request", payload).subject == f"github:{REPO}#pull_request"


@pytest.mark.parametrize(
    "event_type", ["pull_request", "issue_comment", "push", "workflow_run", "star", "meta"]
)
def test_empty_payload_maps_to_unknown(event_type: str) -> None:
    mapped = mapper.map(event_type, {})

    assert mapped.subject == "github:unknown"
    assert mapped.title and mapped.text


@pytest.mark.parametrize("odd", [None, [], {}, "x", 7, True, [1, "a"]])
@pytest.mark.parametrize("name", fixture_names())
def test_oddly_typed_fields_never_raise(name: str, odd: object) -> None:
    original, event_type = load_fixture(name), _event_type(name)
    for key in original:
        payload = copy.deepcopy(original)
        payload[key] = odd
        mapped = mapper.map(event_type, payload)
        assert mapped.subject and mapped.title and mapped.text
        for inner in original[key] if isinstance(original[key], dict) else ():
            nested = copy.deepcopy(original)
            nested[key][inner] = odd
            assert mapper.map(event_type, nested).subject


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
# Keys GitHub payloads use, so that generated objects hit the handlers' lookups, not just misses.
_GITHUB_KEYS = sorted(
    EVENT_TYPES
    | {"action", "repository", "sender", "comment", "review", "ref", "commits", "head_commit", "workflow"}
    | {"number", "full_name", "login", "title", "labels", "name", "merged", "state", "pull_requests"}
)
_github_keys = st.sampled_from(_GITHUB_KEYS)
_github_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_github_keys, children, max_size=5),
    max_leaves=25,
)


@given(
    event_type=st.sampled_from(sorted(EVENT_TYPES | {"discussion_comment", "anything"})),
    payload=st.dictionaries(_github_keys, _github_json, max_size=8) | st.dictionaries(st.text(), _json),
)
def test_arbitrary_objects_never_raise(event_type: str, payload: dict[str, Any]) -> None:
    mapped = mapper.map(event_type, payload)

    assert mapped.subject.startswith("github:")
    assert mapped.title and mapped.text


@pytest.mark.parametrize("payload", [[], None, "text", 3])
def test_non_object_payload_is_a_mapping_error(payload: Any) -> None:
    with pytest.raises(MappingError):
        mapper.map("push", payload)


def test_registry_returns_the_github_mapper() -> None:
    assert isinstance(mapper_for("github"), GitHubMapper)


def _example(event_type: str, index: int = 0) -> dict[str, Any]:
    try:
        examples = [payload for name, payload in load_examples() if name == event_type]
    except FileNotFoundError:
        pytest.skip(SETUP_HINT)
    return copy.deepcopy(examples[index])


@pytest.mark.parametrize(
    ("event_type", "said"),
    [
        # What an agent asks about and the payload says, though not under the event's own name.
        ("code_scanning_alert", ["tool Rubocop", "rule Style/FrozenStringLiteralComment", "frozen_string"]),
        ("dependabot_alert", ["package ansible", "Insertion of Sensitive Information into Log File"]),
        ("repository_vulnerability_alert", ["package rack", "CVE-2018-16470", "severity moderate"]),
        ("deployment", ["to production", "task deploy", "from master"]),
        ("deployment_status", ["state success", "environment production"]),
        ("deployment_review", ["environment TST", "reviewers admins", "waits for approval"]),
        ("status", ["context default", "state success", "commit Initial commit"]),
        ("page_build", ["status built", "GitHub Pages website"]),
        ("gollum", ["pages Home", "wiki pages"]),
        ("merge_group", ["into refs/heads/main", "merge queue"]),
        ("marketplace_purchase", ["plan Basic Plan", "billed monthly"]),
        ("member", ["member hacktocat"]),
    ],
)
def test_events_without_a_handler_say_what_their_payload_says(event_type: str, said: list[str]) -> None:
    mapped = mapper.map(event_type, _example(event_type))
    assert event_type not in EVENT_TYPES
    for phrase in said:
        assert phrase in mapped.text, mapped.text


@pytest.mark.parametrize(
    ("event_type", "when"),
    [
        ("code_scanning_alert", datetime(2020, 7, 22, 14, 6, 31, tzinfo=UTC)),
        ("status", datetime(2019, 5, 15, 15, 20, 55, tzinfo=UTC)),
        ("page_build", datetime(2019, 5, 15, 15, 20, 40, tzinfo=UTC)),
        ("deploy_key", datetime(2019, 4, 2, 17, 37, 7, tzinfo=UTC)),
    ],
)
def test_events_without_a_handler_are_dated_by_the_payload(event_type: str, when: datetime) -> None:
    assert mapper.map(event_type, _example(event_type)).occurred_at == when


def test_handled_events_say_what_the_event_means() -> None:
    fork = mapper.map("fork", _example("fork"))
    assert "someone copied it to their account" in fork.text
    assert fork.subject == f"github:{REPO}#forks"


def test_subjects_of_unhandled_events_do_not_move() -> None:
    """The facts enrich the text only: an alert stays in its repository's alert context."""
    assert mapper.map("dependabot_alert", _example("dependabot_alert")).subject == (
        "github:octocat/hello-world#dependabot_alert"
    )

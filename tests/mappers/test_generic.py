"""The generic mapper and the mapper registry."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memory.mappers.base import MappingError, mapper_for
from memory.mappers.generic import GenericMapper
from memory.mappers.github import GitHubMapper

mapper = GenericMapper()

STRIPE_INVOICE_PAID: dict[str, Any] = {
    "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
    "object": "event",
    "api_version": "2022-11-15",
    "created": 1686089970,
    "data": {
        "object": {
            "id": "in_1NG8Dt2eZvKYlo2C5nH1WbJx",
            "object": "invoice",
            "amount_paid": 4200,
            "currency": "usd",
            "customer": "cus_O2Dk0hIwzdp8Kc",
            "customer_email": "jenny.rosen@example.com",
            "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/test_YWNjdF8x",
            "status": "paid",
            "lines": {"object": "list", "data": [{"description": "Pro plan", "amount": 4200}]},
        }
    },
    "livemode": False,
    "pending_webhooks": 1,
    "request": {"id": None, "idempotency_key": None},
    "type": "invoice.paid",
}

SLACK_THREAD_REPLY: dict[str, Any] = {
    "token": "XXYYZZ",
    "team_id": "T061EG9RZ",
    "api_app_id": "A0FFV41KK",
    "event": {
        "type": "message",
        "channel": "C0LAN2Q65",
        "user": "U061F7AUR",
        "text": "the deploy to production is failing again",
        "ts": "1515449522.000016",
        "thread_ts": "1515449438.000011",
        "channel_type": "channel",
    },
    "type": "event_callback",
    "event_id": "Ev0PV52K25",
    "event_time": 1515449522,
}

JIRA_ISSUE_UPDATED: dict[str, Any] = {
    "timestamp": 1700000000123,
    "webhookEvent": "jira:issue_updated",
    "user": {"name": "admin", "displayName": "Ada Admin"},
    "issue": {
        "id": "10002",
        "key": "PROJ-7",
        "fields": {
            "summary": "Login fails with SSO",
            "status": {"name": "In Progress"},
            "labels": ["auth", "customer"],
        },
    },
}

LINEAR_ISSUE_UPDATE: dict[str, Any] = {
    "action": "update",
    "type": "Issue",
    "createdAt": "2024-03-01T10:00:00.000Z",
    "data": {
        "id": "2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9",
        "title": "Crash when saving a draft",
        "priority": 1,
        "updatedAt": "2024-03-01T10:00:00.000Z",
    },
    "url": "https://linear.app/acme/issue/ENG-12/crash-when-saving-a-draft",
    "updatedFrom": {"priority": 3},
}


def test_stripe_like_object_id_is_the_subject() -> None:
    paid = mapper.map("invoice.paid", STRIPE_INVOICE_PAID)
    failed = mapper.map("invoice.payment_failed", STRIPE_INVOICE_PAID | {"id": "evt_other"})

    assert paid.subject == "invoice:in_1NG8Dt2eZvKYlo2C5nH1WbJx"
    assert failed.subject == paid.subject  # every event about the invoice, one context
    assert paid.kind == "invoice"
    assert paid.state == "paid"
    assert paid.occurred_at == datetime.fromtimestamp(1686089970, tz=UTC)
    assert paid.fields == {"event_type": "invoice.paid", "subject_key": "data.object.id"}
    assert paid.text.startswith("invoice.paid: ")
    assert "customer=cus_O2Dk0hIwzdp8Kc" in paid.text
    assert "description=Pro plan" in paid.text


def test_slack_like_thread_is_the_subject() -> None:
    mapped = mapper.map("message", SLACK_THREAD_REPLY)

    assert mapped.subject == "message:C0LAN2Q65/1515449438.000011"
    assert "the deploy to production is failing again" in mapped.text
    assert mapped.actors == ("U061F7AUR",)
    assert mapped.occurred_at == datetime.fromtimestamp(1515449522, tz=UTC)  # event_time


def test_jira_like_issue_key_is_the_subject() -> None:
    mapped = mapper.map("jira:issue_updated", JIRA_ISSUE_UPDATED)

    assert mapped.subject == "jira:PROJ-7"
    assert mapped.title == "Login fails with SSO"
    assert mapped.labels == ("auth", "customer")
    assert mapped.actors == ("admin",)
    assert mapped.occurred_at == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


def test_linear_like_data_id_is_the_subject() -> None:
    mapped = mapper.map("Issue", LINEAR_ISSUE_UPDATE)

    assert mapped.subject == "Issue:2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9"
    assert mapped.title == "Crash when saving a draft"
    assert mapped.url == "https://linear.app/acme/issue/ENG-12/crash-when-saving-a-draft"
    assert mapped.occurred_at == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def test_explicit_subject_and_top_level_id() -> None:
    assert mapper.map("deploy.finished", {"subject": "api", "id": 9}).subject == "deploy:api"
    assert mapper.map("deploy.finished", {"id": 9}).subject == "deploy:9"


def test_without_an_identifier_the_subject_is_the_event_type() -> None:
    mapped = mapper.map("custom.thing", {"foo": "bar", "n": 3, "ok": True, "none": None})

    assert mapped.subject == "generic:custom.thing"
    assert mapped.kind == "event"
    assert mapped.title == "custom.thing"
    assert mapped.text == "custom.thing: foo=bar n=3 ok=true"
    assert mapped.importance == 0.5


def test_text_is_one_bounded_line() -> None:
    payload = {f"key{i}": f"value {i}\nsecond line" for i in range(100)} | {"long": "x" * 1000}

    mapped = mapper.map("bulk", payload)

    assert mapped.text.count("=") == 30
    assert "\n" not in mapped.text
    assert len(mapped.text) < 30 * 100


def test_long_strings_are_truncated() -> None:
    mapped = mapper.map("note", {"title": "t" * 500, "body": "word " * 200})

    assert len(mapped.title) <= 200
    assert "body=" in mapped.text
    assert len(mapped.text) < 200


def test_top_level_scalars_first() -> None:
    mapped = mapper.map("nested", {"deep": {"deeper": {"deepest": "last"}}, "shallow": "first"})

    assert mapped.text == "nested: shallow=first deepest=last"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)
_objects = st.dictionaries(st.text(), _json)
_shaped = st.fixed_dictionaries(
    {},
    optional={
        "subject": _json,
        "id": _json,
        "data": st.fixed_dictionaries({}, optional={"id": _json, "object": _json}) | _json,
        "event": st.fixed_dictionaries({}, optional={"channel": _json, "thread_ts": _json}) | _json,
        "channel": _json,
        "thread_ts": _json,
        "issue": st.fixed_dictionaries({}, optional={"key": _json, "fields": _json}) | _json,
        "created": _json,
        "timestamp": _json,
        "ts": _json | st.from_regex(r"\d{9,13}(\.\d{1,6})?", fullmatch=True),
        "labels": _json,
        "user": _json,
        "url": _json,
    },
)


def _reversed(value: Any) -> Any:
    """The same JSON with every object's keys in the opposite order."""
    if isinstance(value, dict):
        return {key: _reversed(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed(item) for item in value]
    return value


@given(event_type=st.text(), payload=_objects | _shaped)
def test_any_object_maps(event_type: str, payload: dict[str, Any]) -> None:
    mapped = mapper.map(event_type, payload)

    assert mapped.subject and mapped.title and mapped.text
    assert "\n" not in mapped.text
    assert mapped.occurred_at is None or mapped.occurred_at.tzinfo is UTC


@given(event_type=st.sampled_from(["invoice.paid", "message", "jira:issue_updated", ""]), payload=_shaped)
def test_same_payload_same_subject(event_type: str, payload: dict[str, Any]) -> None:
    first = mapper.map(event_type, payload)

    assert mapper.map(event_type, copy.deepcopy(payload)) == first
    assert mapper.map(event_type, _reversed(payload)).subject == first.subject


@pytest.mark.parametrize("payload", [[], [{"id": 1}], None, 3, "text", 1.5])
def test_non_object_payload_is_a_mapping_error(payload: Any) -> None:
    with pytest.raises(MappingError):
        mapper.map("anything", payload)


def test_mapping_error_is_a_value_error() -> None:
    assert issubclass(MappingError, ValueError)


@pytest.mark.parametrize("provider", ["stripe", "slack", "jira", "linear", "generic", ""])
def test_registry_falls_back_to_the_generic_mapper(provider: str) -> None:
    assert isinstance(mapper_for(provider), GenericMapper)


def test_registry_knows_github() -> None:
    assert isinstance(mapper_for("github"), GitHubMapper)
    assert isinstance(mapper_for(" GitHub "), GitHubMapper)

"""Delivery ids and event types per provider, and Slack's url_verification handshake via the route."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.providers import provider_for
from ingest.providers.base import Challenge, MalformedRequest
from memory.models import Source
from memory.source_options import SourceOptions


def source(provider: str, **options: Any) -> Source:
    return Source("src", "acme", provider, ("s3cret",), SourceOptions.parse(options, provider))


@pytest.mark.parametrize(
    ("provider", "headers", "payload", "delivery", "event"),
    [
        ("github", {"x-github-delivery": "d-1", "x-github-event": "push"}, {}, "d-1", "push"),
        ("stripe", {}, {"id": "evt_1", "type": "invoice.paid"}, "evt_1", "invoice.paid"),
        (
            "slack",
            {},
            {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention"}},
            "Ev1",
            "app_mention",
        ),
        ("slack", {}, {"type": "event_callback", "event_id": "Ev2", "event": {}}, "Ev2", "event_callback"),
        ("slack", {}, {"type": "block_actions", "trigger_id": "t"}, None, "block_actions"),
        ("slack", {}, {"command": "/deploy", "text": "prod"}, None, "slash_command"),
        ("standard", {"webhook-id": "msg_1"}, {"type": "user.created"}, "msg_1", "user.created"),
        ("standard", {"webhook-id": "msg_2"}, {"data": {}}, "msg_2", "event"),
        (
            "shopify",
            {"x-shopify-webhook-id": "w-1", "x-shopify-event-id": "e-1", "x-shopify-topic": "orders/create"},
            {},
            "w-1",
            "orders/create",
        ),
        (
            "shopify",
            {"x-shopify-event-id": "e-1", "x-shopify-topic": "orders/paid"},
            {},
            "e-1",
            "orders/paid",
        ),
        (
            "linear",
            {"linear-delivery": "l-1", "linear-event": "Issue"},
            {"type": "Issue", "action": "update"},
            "l-1",
            "Issue.update",
        ),
        ("linear", {}, {"type": "Comment", "action": "remove"}, None, "Comment.remove"),
        ("linear", {}, {"type": "OAuthApp"}, None, "OAuthApp"),
        (
            "jira",
            {"x-atlassian-webhook-identifier": "j-1"},
            {"webhookEvent": "jira:issue_updated"},
            "j-1",
            "jira:issue_updated",
        ),
        ("generic", {"x-delivery-id": "g-1", "x-event-type": "build"}, {"type": "ignored"}, "g-1", "build"),
        ("generic", {"idempotency-key": "k-1"}, {"type": "invoice.paid"}, "k-1", "invoice.paid"),
    ],
)
def test_delivery_id_and_event_type(
    provider: str, headers: dict[str, str], payload: Any, delivery: str | None, event: str
) -> None:
    chosen = provider_for(provider)
    assert chosen.delivery_id(headers, payload, source(provider)) == delivery
    assert chosen.event_type(headers, payload, source(provider)) == event


@pytest.mark.parametrize(
    ("provider", "headers", "payload"),
    [
        ("github", {}, {}),
        ("stripe", {}, {"id": "evt_1"}),
        ("stripe", {}, ["not", "an", "object"]),
        ("slack", {}, {"text": "neither type nor command"}),
        ("slack", {}, {"type": "url_verification"}),
        ("slack", {}, "a string"),
        ("shopify", {}, {}),
        ("linear", {}, {"action": "create"}),
        ("jira", {}, {"issue": {}}),
    ],
)
def test_an_unusable_event_is_a_malformed_request(
    provider: str, headers: dict[str, str], payload: Any
) -> None:
    with pytest.raises(MalformedRequest):
        provider_for(provider).event_type(headers, payload, source(provider))


def test_slack_url_verification_raises_a_challenge_with_the_echo() -> None:
    payload = {
        "token": "t",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification",
    }
    with pytest.raises(Challenge) as raised:
        provider_for("slack").event_type({}, payload, source("slack"))
    assert raised.value.body == {"challenge": payload["challenge"]}

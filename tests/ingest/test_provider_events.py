"""Delivery ids and event types per provider, and Slack's url_verification handshake via the route."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.requests import Request

from ingest.intake import Intake
from ingest.providers import provider_for
from ingest.providers.base import Challenge, MalformedRequest
from memory.models import Source
from memory.settings import load_settings


def source(provider: str, **options: Any) -> Source:
    return Source("src", "acme", provider, ("s3cret",), options)


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


class OneSource:
    def __init__(self, configured: Source) -> None:
        self.configured = configured

    async def get(self, name: str) -> Source:
        assert name == self.configured.name
        return self.configured


class NoWrites:
    async def submit(self, item: object) -> str | None:
        raise AssertionError("a handshake must not be queued as an event")


def _request(path_source: str, headers: dict[str, str], body: bytes) -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/hooks/{path_source}",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "path_params": {"source": path_source},
    }
    return Request(scope, receive)


def _slack_headers(body: bytes, secret: str, ts: int) -> dict[str, str]:
    signature = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": f"v0={signature}",
    }


@pytest.mark.parametrize(("secret", "status"), [("s3cret", 200), ("forged", 401)])
async def test_the_route_answers_a_verified_slack_handshake_only(
    tmp_path: Path, secret: str, status: int
) -> None:
    settings = load_settings({"HOOKLINE_DATA_DIR": str(tmp_path)})
    intake = Intake(settings, OneSource(source("slack")), NoWrites())  # type: ignore[arg-type]
    body = orjson.dumps({"token": "t", "challenge": "abc123", "type": "url_verification"})
    response = await intake(_request("src", _slack_headers(body, secret, int(time.time())), body))
    assert response.status_code == status
    if status == 200:
        assert orjson.loads(response.body) == {"challenge": "abc123"}
    else:
        assert b"abc123" not in bytes(response.body)

"""Published signature vectors, and Stripe headers made by Stripe's own library."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
import stripe

from ingest.providers import provider_for
from ingest.providers.base import VerificationError
from memory.models import Source


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def source(provider: str, *secrets: str) -> Source:
    return Source("src", "acme", provider, secrets)


GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_documented_vector() -> None:
    headers = {"x-hub-signature-256": GITHUB_SIGNATURE}
    provider_for("github").verify(headers, b"Hello, World!", source("github", GITHUB_SECRET), 0.0)
    with pytest.raises(VerificationError):
        provider_for("github").verify(headers, b"Hello, World!", source("github", "It's a secret"), 0.0)


SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = 1531420618
SLACK_BODY = (
    # Slack's page signs token=xyzz0WbapA4vBCDEFasx0q6G; copies with another token do not verify.
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_HEADERS = {
    "x-slack-request-timestamp": str(SLACK_TIMESTAMP),
    "x-slack-signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
}


def test_slack_documented_vector() -> None:
    slack = provider_for("slack")
    slack.verify(SLACK_HEADERS, SLACK_BODY, source("slack", SLACK_SECRET), SLACK_TIMESTAMP + 12.5)
    with pytest.raises(VerificationError, match="tolerance"):
        slack.verify(SLACK_HEADERS, SLACK_BODY, source("slack", SLACK_SECRET), SLACK_TIMESTAMP + 301)
    with pytest.raises(VerificationError, match="does not match"):
        slack.verify(SLACK_HEADERS, SLACK_BODY + b"x", source("slack", SLACK_SECRET), SLACK_TIMESTAMP)


STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_HEADERS = {
    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "webhook-timestamp": "1614265330",
    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
STANDARD_BODY = b'{"test": 2432232314}'


def test_standard_webhooks_reference_vector() -> None:
    standard = provider_for("standard")
    standard.verify(STANDARD_HEADERS, STANDARD_BODY, source("standard", STANDARD_SECRET), 1614265330.0)
    several = {
        **STANDARD_HEADERS,
        "webhook-signature": "v1,AAAA v1a,Zm9v " + STANDARD_HEADERS["webhook-signature"],
    }
    standard.verify(several, STANDARD_BODY, source("standard", STANDARD_SECRET), 1614265330.0)
    with pytest.raises(VerificationError, match="tolerance"):
        standard.verify(STANDARD_HEADERS, STANDARD_BODY, source("standard", STANDARD_SECRET), 1700000000.0)
    other_id = {**STANDARD_HEADERS, "webhook-id": "msg_other"}
    with pytest.raises(VerificationError, match="does not match"):
        standard.verify(other_id, STANDARD_BODY, source("standard", STANDARD_SECRET), 1614265330.0)


def test_standard_webhooks_takes_a_secret_without_prefix_as_its_utf8_bytes() -> None:
    stamp = "1614265330"
    signed = hmac.new(b"plain secret", f"msg_1.{stamp}.".encode() + STANDARD_BODY, hashlib.sha256).digest()
    headers = {"webhook-id": "msg_1", "webhook-timestamp": stamp, "webhook-signature": "v1," + b64(signed)}
    standard = provider_for("standard")
    standard.verify(headers, STANDARD_BODY, source("standard", "plain secret"), 1614265330.0)
    standard.verify(headers, STANDARD_BODY, source("standard", "whsec_" + b64(b"plain secret")), 1614265330.0)
    with pytest.raises(VerificationError, match="does not match"):  # a prefixed secret is base64, not text
        standard.verify(headers, STANDARD_BODY, source("standard", "whsec_plainsecret0"), 1614265330.0)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_!!!not-base64", "whsec_AAA"])
def test_standard_webhooks_rejects_an_undecodable_whsec_secret(secret: str) -> None:
    with pytest.raises(VerificationError, match="whsec_"):
        provider_for("standard").verify(
            STANDARD_HEADERS, STANDARD_BODY, source("standard", secret), 1614265330.0
        )


STRIPE_SECRET = "whsec_test_secret_for_hookline"
STRIPE_BODY = '{"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "object": "event", "type": "invoice.paid"}'


def test_stripe_header_made_by_the_stripe_library() -> None:
    header = stripe.WebhookSignature.generate_signature_header(STRIPE_BODY, STRIPE_SECRET, 1686089970)
    assert header.startswith("t=1686089970,v1=")
    stripe_provider = provider_for("stripe")
    headers = {"stripe-signature": header}
    stripe_provider.verify(headers, STRIPE_BODY.encode(), source("stripe", STRIPE_SECRET), 1686089970.0)
    with pytest.raises(VerificationError, match="tolerance"):
        stripe_provider.verify(
            headers, STRIPE_BODY.encode(), source("stripe", STRIPE_SECRET), 1686089970.0 + 301
        )
    with pytest.raises(VerificationError, match="does not match"):  # the key is the whole whsec_ string
        stripe_provider.verify(
            headers, STRIPE_BODY.encode(), source("stripe", "test_secret_for_hookline"), 1686089970.0
        )


def test_stripe_header_with_several_v1_and_a_v0_during_a_secret_roll() -> None:
    real = stripe.WebhookSignature.generate_signature_header(STRIPE_BODY, STRIPE_SECRET, 1686089970)
    stamp, v1 = real.split(",")
    other = stripe.WebhookSignature.generate_signature_header(STRIPE_BODY, "whsec_rolled", 1686089970).split(
        ","
    )[1]
    header = f"{stamp}, {other}, {v1}, v0={'6f' * 32}"
    provider_for("stripe").verify(
        {"stripe-signature": header}, STRIPE_BODY.encode(), source("stripe", STRIPE_SECRET), 1686089970.0
    )


def test_stripe_library_accepts_what_a_second_secret_signs() -> None:
    # Rotation: either active secret verifies, as Stripe's own verify_header does for each one.
    header = stripe.WebhookSignature.generate_signature_header(STRIPE_BODY, "whsec_new", 1686089970)
    assert stripe.WebhookSignature.verify_header(STRIPE_BODY, header, "whsec_new")
    provider_for("stripe").verify(
        {"stripe-signature": header},
        STRIPE_BODY.encode(),
        source("stripe", STRIPE_SECRET, "whsec_new"),
        1686089970.0,
    )

"""Every webhook verifier against the same attacks: signed by hand here, never by the code under test.

Each case signs independently (``hmac`` and ``hashlib`` directly; Stripe with the real ``stripe``
package), so a bug shared by a provider and its helper in ``base.py`` cannot hide.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import stripe

from ingest.providers import PROVIDERS, provider_for
from ingest.providers.base import VerificationError
from memory.models import Source
from memory.source_options import BadSourceOption, SourceOptions

NOW = 1_700_000_000
Mutate = Callable[[bytes], bytes]


def same(mac: bytes) -> bytes:
    return mac


def mac(key: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key, message, getattr(hashlib, algorithm)).digest()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def sign_github(body: bytes, secret: str, ts: int, mutate: Mutate) -> dict[str, str]:
    return {"x-hub-signature-256": "sha256=" + mutate(mac(secret.encode(), body)).hex()}


def sign_generic(body: bytes, secret: str, ts: int, mutate: Mutate) -> dict[str, str]:
    return {"x-signature": mutate(mac(secret.encode(), body)).hex()}


def sign_generic_ts(body: bytes, secret: str, ts: int, mutate: Mutate) -> dict[str, str]:
    signature = mutate(mac(secret.encode(), f"{ts}.".encode() + body, "sha512"))
    return {"x-sig": "sha512=" + b64(signature), "x-timestamp": str(ts)}


def sign_stripe(body: bytes, secret: str, ts: int, mutate: Mutate) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, ts)
    stamp, v1 = header.split(",")
    signature = mutate(bytes.fromhex(v1.removeprefix("v1=")))
    return {"stripe-signature": f"{stamp},v1={signature.hex()}"}


def sign_slack(body: bytes, secret: str, ts: int, mutate: Mutate) -> dict[str, str]:
    signature = mutate(mac(secret.encode(), f"v0:{ts}:".encode() + body))
    return {"x-slack-signature": "v0=" + signature.hex(), "x-slack-request-timestamp": str(ts)}


def sign_standard(body: bytes, secret: str, ts: int, mutate: Mutate) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    signature = mutate(mac(key, f"msg_2KWPBgLlAfxdpx2AI54pPJ85f4W.{ts}.".encode() + body))
    return {
        "webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1a,c29tZXRoaW5nIGVsc2U= v1," + b64(signature),
    }


def sign_shopify(body: bytes, secret: str, ts: int, mutate: Mutate) -> dict[str, str]:
    return {"x-shopify-hmac-sha256": b64(mutate(mac(secret.encode(), body)))}


def sign_linear(body: bytes, secret: str, ts: int, mutate: Mutate) -> dict[str, str]:
    return {"linear-signature": mutate(mac(secret.encode(), body)).hex()}


def sign_jira(body: bytes, secret: str, ts: int, mutate: Mutate) -> dict[str, str]:
    return {"x-hub-signature": "sha256=" + mutate(mac(secret.encode(), body)).hex()}


def raw_body(ts: int, content: bytes) -> bytes:
    return content


def utf8_body(ts: int, content: bytes) -> bytes:
    return content.decode("utf-8", "replace").encode()  # Stripe's signer takes text


def linear_body(ts: int, content: bytes) -> bytes:
    return orjson.dumps(
        {"action": "create", "type": "Issue", "data": content.hex(), "webhookTimestamp": ts * 1000}
    )


def whsec(secret: str) -> str:
    return "whsec_" + b64(secret.encode())


@dataclass(frozen=True)
class Case:
    id: str
    provider: str
    sign: Callable[[bytes, str, int, Mutate], dict[str, str]]
    signature_header: str
    malformed: tuple[str, ...]  # signature header values that must be rejected
    tolerance: int | None = None  # None: the provider signs no timestamp
    timestamp_header: str | None = None
    body: Callable[[int, bytes], bytes] = raw_body
    secret: Callable[[str], str] = str
    options: dict[str, Any] = field(default_factory=dict)

    def source(self, *secrets: str, **options: Any) -> Source:
        parsed = SourceOptions.parse({**self.options, **options}, self.provider)
        return Source("src", "acme", self.provider, tuple(secrets), parsed)

    def signed(
        self, secret: str, ts: int = NOW, content: bytes = b'{"hello": "world"}'
    ) -> tuple[dict[str, str], bytes]:
        body = self.body(ts, content)
        return self.sign(body, self.secret(secret), ts, same), body

    def verify(self, headers: dict[str, str], body: bytes, source: Source, now: float = NOW) -> None:
        provider_for(self.provider).verify(headers, body, source, now)


HEX_BAD = ("", "   ", "zz" * 32, "abc", "\u00e9" * 64)
GENERIC_TS = {
    "header": "X-Sig",
    "algorithm": "sha512",
    "encoding": "base64",
    "timestamp_header": "X-Timestamp",
}
CASES = [
    Case(
        "github",
        "github",
        sign_github,
        "x-hub-signature-256",
        (*(f"sha256={v}" for v in HEX_BAD), "sha1=00", "deadbeef"),
    ),
    Case("generic", "generic", sign_generic, "x-signature", HEX_BAD),
    Case(
        "generic-ts",
        "generic",
        sign_generic_ts,
        "x-sig",
        ("", "sha512=", "not base64!", "===="),
        300,
        "x-timestamp",
        options=GENERIC_TS,
    ),
    Case(
        "stripe",
        "stripe",
        sign_stripe,
        "stripe-signature",
        (
            "",
            f"t={NOW}",
            f"t={NOW},v1=zz",
            f"t={NOW},v1=",
            f"v1={'0' * 64}",
            f"t={NOW},t={NOW},v1=00",
            f"t={NOW},v0={'0' * 64}",
            "garbage",
        ),
        300,
        body=utf8_body,
    ),
    Case(
        "slack",
        "slack",
        sign_slack,
        "x-slack-signature",
        (*(f"v0={v}" for v in HEX_BAD), "v1=00", "00"),
        300,
        "x-slack-request-timestamp",
    ),
    Case(
        "standard",
        "standard",
        sign_standard,
        "webhook-signature",
        ("", "v1,", "v1,!!!", "v1a,AAAA", "v1 AAAA", "v2,AAAA"),
        300,
        "webhook-timestamp",
        secret=whsec,
    ),
    Case("shopify", "shopify", sign_shopify, "x-shopify-hmac-sha256", ("", "   ", "not base64!", "AAA", "=")),
    Case("linear", "linear", sign_linear, "linear-signature", HEX_BAD, 60, body=linear_body),
    Case(
        "jira",
        "jira",
        sign_jira,
        "x-hub-signature",
        (*(f"sha256={v}" for v in HEX_BAD), "sha1=00", "md5=00", "deadbeef"),
    ),
]
TIMED = [case for case in CASES if case.tolerance is not None]
HEADER_TIMED = [case for case in TIMED if case.timestamp_header]
by_id = pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
timed = pytest.mark.parametrize("case", TIMED, ids=lambda case: case.id)


def test_every_registered_provider_has_a_case() -> None:
    assert {case.provider for case in CASES} == set(PROVIDERS)
    assert all(PROVIDERS[name].name == name for name in PROVIDERS)


@by_id
def test_accepts_a_correctly_signed_delivery(case: Case) -> None:
    headers, body = case.signed("s3cret")
    case.verify(headers, body, case.source(case.secret("s3cret")))


@by_id
def test_rejects_a_wrong_secret(case: Case) -> None:
    headers, body = case.signed("not-the-secret")
    with pytest.raises(VerificationError, match="does not match"):
        case.verify(headers, body, case.source(case.secret("s3cret")))


@by_id
def test_rejects_a_missing_signature_header(case: Case) -> None:
    headers, body = case.signed("s3cret")
    del headers[case.signature_header]
    with pytest.raises(VerificationError):
        case.verify(headers, body, case.source(case.secret("s3cret")))


@by_id
def test_rejects_malformed_signature_headers(case: Case) -> None:
    headers, body = case.signed("s3cret")
    for value in case.malformed:
        with pytest.raises(VerificationError):
            case.verify({**headers, case.signature_header: value}, body, case.source(case.secret("s3cret")))


@by_id
def test_rejects_a_tampered_body(case: Case) -> None:
    headers, _ = case.signed("s3cret")
    tampered = case.body(NOW, b'{"hello": "w0rld"}')
    with pytest.raises(VerificationError, match="does not match"):
        case.verify(headers, tampered, case.source(case.secret("s3cret")))


@by_id
def test_accepts_every_active_secret_during_rotation(case: Case) -> None:
    source = case.source(case.secret("old-secret"), case.secret("new-secret"))
    for secret in ("old-secret", "new-secret"):
        case.verify(*case.signed(secret), source)
    with pytest.raises(VerificationError):
        case.verify(*case.signed("retired-secret"), source)


@by_id
def test_a_source_without_secrets_rejects_everything(case: Case) -> None:
    headers, body = case.signed("s3cret")
    with pytest.raises(VerificationError, match="no secret"):
        case.verify(headers, body, case.source())


@by_id
def test_a_blank_secret_is_a_misconfiguration_even_when_it_signed(case: Case) -> None:
    # An empty HMAC key is public knowledge: whoever knows the scheme could sign with it.
    blank = "whsec_" if case.provider == "standard" else ""
    headers, body = case.sign(case.body(NOW, b"{}"), blank, NOW, same), case.body(NOW, b"{}")
    for secrets in ((blank,), (case.secret("s3cret"), blank), ("  ",)):
        with pytest.raises(VerificationError):
            case.verify(headers, body, case.source(*secrets))


@timed
@pytest.mark.parametrize("offset", [-1, +1], ids=["stale", "future"])
def test_rejects_timestamps_outside_the_window(case: Case, offset: int) -> None:
    assert case.tolerance is not None
    source = case.source(case.secret("s3cret"))
    edge = NOW + offset * case.tolerance
    case.verify(*case.signed("s3cret", ts=edge), source)  # the boundary itself is inside
    with pytest.raises(VerificationError, match="tolerance"):
        case.verify(*case.signed("s3cret", ts=edge + offset), source)


@timed
def test_the_tolerance_option_narrows_the_window(case: Case) -> None:
    source = case.source(case.secret("s3cret"), tolerance="10")
    case.verify(*case.signed("s3cret", ts=NOW - 10), source)
    with pytest.raises(VerificationError, match="tolerance"):
        case.verify(*case.signed("s3cret", ts=NOW - 11), source)


@timed
@pytest.mark.parametrize("tolerance", ["ten", "-1", "nan", "inf", None, 10**400])
def test_a_broken_tolerance_option_is_refused_before_any_request(case: Case, tolerance: object) -> None:
    with pytest.raises(BadSourceOption, match="tolerance"):
        case.source(case.secret("s3cret"), tolerance=tolerance)


@pytest.mark.parametrize("case", HEADER_TIMED, ids=lambda case: case.id)
@pytest.mark.parametrize(
    "stamp", ["", "abc", f"{NOW}.0", f"-{NOW}", "1e9", "\u00b2", "\u0661" * 10, "9" * 400]
)
def test_rejects_malformed_timestamp_headers(case: Case, stamp: str) -> None:
    assert case.timestamp_header is not None
    headers, body = case.signed("s3cret")
    with pytest.raises(VerificationError):
        case.verify({**headers, case.timestamp_header: stamp}, body, case.source(case.secret("s3cret")))


@pytest.mark.parametrize("stamp", [None, "1700000000000", True, [NOW * 1000]])
def test_linear_requires_a_numeric_signed_webhook_timestamp(stamp: object) -> None:
    case = next(case for case in CASES if case.id == "linear")
    payload = {"type": "Issue", "action": "create"} | ({} if stamp is None else {"webhookTimestamp": stamp})
    body = orjson.dumps(payload)
    with pytest.raises(VerificationError, match="webhookTimestamp"):
        case.verify(case.sign(body, "s3cret", NOW, same), body, case.source("s3cret"))


def test_linear_rejects_a_signed_body_that_is_not_json() -> None:
    case = next(case for case in CASES if case.id == "linear")
    with pytest.raises(VerificationError, match="not JSON"):
        case.verify(case.sign(b"hello", "s3cret", NOW, same), b"hello", case.source("s3cret"))

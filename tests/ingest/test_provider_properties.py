"""Properties of every verifier: sign-then-verify holds, one flipped byte breaks it, garbage only 401/400s."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.providers import provider_for
from ingest.providers.base import Challenge, MalformedRequest, VerificationError
from memory.models import Source
from memory.source_options import BadSourceOption, SourceOptions
from tests.ingest.test_providers import CASES, NOW, Case, same

by_id = pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)

secrets_st = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")
content_st = st.binary(min_size=1, max_size=300)


@by_id
@settings(max_examples=60, deadline=None)
@given(secret=secrets_st, content=content_st, data=st.data())
def test_property_sign_then_verify_and_any_single_byte_mutation(
    case: Case, secret: str, content: bytes, data: st.DataObject
) -> None:
    source = case.source(case.secret(secret))
    body = case.body(NOW, content)
    headers = case.sign(body, case.secret(secret), NOW, same)
    case.verify(headers, body, source)

    at = data.draw(st.integers(0, len(body) - 1), label="body index")
    flip = data.draw(st.integers(1, 255), label="body xor")
    mutated = body[:at] + bytes([body[at] ^ flip]) + body[at + 1 :]
    with pytest.raises(VerificationError):
        case.verify(headers, mutated, source)

    sig_at = data.draw(st.integers(0, 63), label="signature index")  # sha512 is 64 bytes
    sig_flip = data.draw(st.integers(1, 255), label="signature xor")

    def mutate(signature: bytes) -> bytes:
        at = sig_at % len(signature)
        return signature[:at] + bytes([signature[at] ^ sig_flip]) + signature[at + 1 :]

    with pytest.raises(VerificationError):
        case.verify(case.sign(body, case.secret(secret), NOW, mutate), body, source)


NAMES = sorted(
    {case.signature_header for case in CASES}
    | {"x-slack-request-timestamp", "x-timestamp"}
    | {"webhook-id", "webhook-timestamp", "linear-event", "x-shopify-topic", "x-github-event", "x-event-type"}
)
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=80)  # surrogates included
near_valid = st.sampled_from(
    [
        "",
        str(NOW),
        f"t={NOW},v1={'ab' * 32}",
        "v0=" + "ab" * 32,
        "sha256=" + "ab" * 32,
        "v1,AAAA",
        "whsec_",
        ",",
    ]
)
header_value = st.one_of(any_text, near_valid, st.text(alphabet="0123456789abcdefv=,t. ", max_size=80))
garbage_options = st.dictionaries(
    st.sampled_from(["tolerance", "algorithm", "encoding", "header", "timestamp_header", "event_header"]),
    st.one_of(st.none(), any_text, st.integers(), st.floats(), near_valid),
)
json_st = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["type", "event", "event_id", "id", "challenge", "command", "action", "webhookEvent", "x"]
            )
            | any_text,
            inner,
            max_size=5,
        )
    ),
    max_leaves=12,
)


@by_id
@settings(max_examples=150, deadline=None)
@given(
    headers=st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=20), header_value, max_size=6),
    body=st.binary(max_size=200),
    secrets=st.lists(any_text, max_size=3),
    options=garbage_options,
    payload=json_st,
    now=st.floats(allow_nan=True, allow_infinity=True) | st.just(float(NOW)),
)
def test_property_garbage_is_rejected_and_only_with_the_documented_errors(
    case: Case,
    headers: dict[str, str],
    body: bytes,
    secrets: list[str],
    options: dict[str, Any],
    payload: Any,
    now: float,
) -> None:
    provider = provider_for(case.provider)
    try:  # garbage options are refused with BadSourceOption alone (at `source add`, and on load)
        parsed = SourceOptions.parse(options, case.provider)
    except BadSourceOption:
        parsed = SourceOptions()
    source = Source("src", "acme", case.provider, tuple(secrets), parsed)
    with pytest.raises((VerificationError, MalformedRequest)):
        provider.verify(headers, body, source, now)
    try:
        kind = provider.event_type(headers, payload, source)
        assert isinstance(kind, str) and kind
    except (MalformedRequest, Challenge):
        pass
    delivery = provider.delivery_id(headers, payload, source)
    assert delivery is None or (isinstance(delivery, str) and delivery)

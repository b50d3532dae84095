"""The built-in PII and secret masker (``ingest.pii``): each kind, JSON kept valid, forms, hostile
input, and the served intake masking by default (signatures checked on the original bytes)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import httpx2
import orjson
import pytest

from ingest.envelope import decode_envelope
from ingest.pii import KINDS, OTHER_PATTERNS, SECRET_PATTERNS, Masker, make_redactor, parse_kinds
from memory import keys
from memory.errors import ConfigError
from memory.models import Source
from memory.runtime import Runtime
from memory.source_options import BadSourceOption, SourceOptions
from memory.sources import SourceStore
from tests.conftest import make_settings
from tests.fixtures.github_examples import fixture_names, load_fixture
from tests.helpers import github_headers, serve_app

GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5" * 4  # 40 characters after the prefix
STRIPE_KEY = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"
SLACK_TOKEN = "xoxb-" + "1234567890-abcdefghij"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc==\n-----END RSA PRIVATE KEY-----"
CARD = "4242 4242 4242 4242"  # Luhn-valid
NOT_A_CARD = "4242 4242 4242 4241"  # Luhn-invalid: an id, left alone


@pytest.mark.parametrize(
    ("found", "placeholder"),
    [
        (GITHUB_TOKEN, "[secret:github_token]"),
        (STRIPE_KEY, "[secret:stripe_key]"),
        (AWS_KEY, "[secret:aws_key]"),
        (SLACK_TOKEN, "[secret:slack_token]"),
        (JWT, "[secret:jwt]"),
        (PRIVATE_KEY, "[secret:private_key]"),
        ("Bearer " + "Zm9vYmFyYmF6cXV4cXV1eA" * 2, "[secret:bearer]"),
        (CARD, "[card]"),
        ("4242-4242-4242-4242", "[card]"),
    ],
)
def test_default_kinds_mask_secrets_and_cards_inside_json(found: str, placeholder: str) -> None:
    body = orjson.dumps({"comment": {"body": f"oops, pasted {found} here", "id": 17}})
    masked = Masker(parse_kinds("secrets,card")).mask(body)
    parsed = orjson.loads(masked)  # still valid JSON, same shape
    assert parsed["comment"]["body"] == f"oops, pasted {placeholder} here"
    assert parsed["comment"]["id"] == 17
    assert found.encode() not in masked


@pytest.mark.parametrize(
    ("kind", "found"),
    [("email", "alice@example.com"), ("phone", "+1 (415) 555-2671"), ("ssn", "078-05-1120")],
)
def test_personal_kinds_are_opt_in(kind: str, found: str) -> None:
    body = orjson.dumps({"text": f"contact {found} today"})
    assert Masker(parse_kinds("secrets,card")).mask(body) == body
    masked = orjson.loads(Masker(parse_kinds(kind)).mask(body))
    assert masked == {"text": f"contact [{kind}] today"}
    assert orjson.loads(Masker(parse_kinds("all")).mask(body)) == masked


def test_json_escapes_and_bare_numbers_are_masked_by_value() -> None:
    """``\\u0020`` is a space: masked as raw bytes, the card behind it would be missed (or the
    escape cut); a card as a bare JSON number would leave invalid JSON. Both go value by value."""
    escaped = b'{"text": "pay\\u00204242 4242 4242 4242 now", "n": 1}'
    assert orjson.loads(Masker(parse_kinds("card")).mask(escaped)) == {"text": "pay [card] now", "n": 1}
    bare = b'{"card": 4242424242424242, "note": "card 4242424242424242"}'
    assert orjson.loads(Masker(parse_kinds("card")).mask(bare)) == {
        "card": 4242424242424242,  # a number, not text: kept (strings are what is masked)
        "note": "card [card]",
    }


def test_lookalikes_are_left_alone() -> None:
    masker = Masker(parse_kinds("all"))
    body = orjson.dumps({
        "id": "4242424242424241",  # long, but not Luhn-valid
        "note": NOT_A_CARD,
        "sha": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "at": "2019-05-15T15:20:33Z",
        "version": "1.2.3.4567890123456",
        "ghp": "ghp_short",
    })  # fmt: skip
    assert masker.mask(body) == body


def test_a_body_with_nothing_to_mask_is_returned_as_is() -> None:
    masker = Masker(parse_kinds("secrets,card"))
    for name in fixture_names():  # real GitHub payloads: nothing in them is a secret or a card
        body = orjson.dumps(load_fixture(name))
        assert masker.mask(body) is body, name


def test_form_bodies_are_masked_value_by_value() -> None:
    """Slack's slash commands and interactivity are form-encoded, with JSON inside ``payload``."""
    inner = orjson.dumps({"text": f"token {SLACK_TOKEN}", "user": "U1"}).decode()
    body = urlencode({"payload": inner, "command": "/deploy", "text": f"use {STRIPE_KEY}"}).encode()
    masked = dict(parse_qsl(Masker(parse_kinds("secrets")).mask(body).decode()))
    assert orjson.loads(masked["payload"]) == {"text": "token [secret:slack_token]", "user": "U1"}
    assert masked["command"] == "/deploy" and masked["text"] == "use [secret:stripe_key]"
    clean = urlencode({"command": "/deploy", "text": "to staging"}).encode()
    assert Masker(parse_kinds("secrets")).mask(clean) is clean  # nothing masked: not re-encoded


def test_hostile_bodies_do_not_blow_up_the_matcher() -> None:
    """Long runs that tempt backtracking (digits with separators, an address without a domain,
    a key block that never ends) stay linear: a 1 MiB body is masked in well under a second."""
    masker = Masker(KINDS)
    bodies = [
        ("1-" * 500_000).encode(),
        ("a" * 1_000_000 + "@").encode(),
        (b"-----BEGIN RSA PRIVATE KEY-----" + b"A" * 1_000_000),
        ("+1" + " 2" * 500_000).encode(),
        base64.b64encode(bytes(range(256)) * 3000),
        b"{" + b"4242424242424242," * 50_000,  # JSON-looking, invalid: masked as text
        b'{"a": "\\u0041' + b"9" * 1_000_000,  # an escape in an unterminated string
    ]
    for body in bodies:
        started = time.process_time()
        masker.mask(body)
        assert time.process_time() - started < 2.0, body[:40]


def test_kinds_are_validated() -> None:
    assert parse_kinds("none") == () and parse_kinds("") == ()
    assert parse_kinds("card, email,card") == ("card", "email")
    with pytest.raises(ConfigError, match="unknown PII kinds"):
        parse_kinds("secrets,passwords")


def test_every_kind_a_source_option_names_has_patterns() -> None:
    assert KINDS[0] == "secrets" and SECRET_PATTERNS
    assert set(KINDS[1:]) == set(OTHER_PATTERNS)


def test_a_source_option_overrides_the_default_and_a_bad_one_is_refused() -> None:
    redact = make_redactor(parse_kinds("secrets"))
    body = orjson.dumps({"text": "mail alice@example.com"})
    plain = Source("a", "t", "github", ())
    assert redact(plain, "push", body) == body
    emails = Source("b", "t", "github", (), SourceOptions.parse({"pii_mask": "email"}, "github"))
    assert b"[email]" in redact(emails, "push", body)
    unmasked = Source("c", "t", "github", (), SourceOptions.parse({"pii_mask": "none"}, "github"))
    token_body = orjson.dumps({"text": f"CI needs {GITHUB_TOKEN}"})
    assert redact(unmasked, "push", token_body) == token_body  # pii_mask=none: nothing masked
    assert GITHUB_TOKEN.encode() not in redact(plain, "push", token_body)
    with pytest.raises(BadSourceOption, match="unknown PII kinds"):
        SourceOptions.parse({"pii_mask": "bogus"}, "github")


async def test_the_served_intake_masks_by_default(tmp_root: Path, machine_rt: Runtime) -> None:
    secret = "pii-secret"
    await SourceStore(machine_rt.db).add("ghpii", "github", [secret], "default")
    settings = make_settings(tmp_root, machine_rt.redis_url, machine_rt.database_url)
    payload = load_fixture("issue_comment_created")
    payload["comment"]["body"] = f"CI needs {GITHUB_TOKEN}, card {CARD}"
    body = orjson.dumps(payload)
    with serve_app(settings, roles=("api",)) as url:
        async with httpx2.AsyncClient(base_url=url) as client:
            headers = github_headers(body, secret, "issue_comment", "pii-served-1")
            response = await client.post("/hooks/ghpii", content=body, headers=headers)
    assert response.status_code == 202, response.text  # the signature was checked on the original
    entries = []
    for p in range(machine_rt.settings.partitions):
        entries += await machine_rt.redis.xrange(keys.events_stream(p))
    stored = decode_envelope(entries[0][1][b"e"]).payload
    assert GITHUB_TOKEN.encode() not in stored and CARD.encode() not in stored
    assert orjson.loads(stored)["comment"]["body"] == "CI needs [secret:github_token], card [card]"

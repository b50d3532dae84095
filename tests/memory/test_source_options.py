"""Source options (``memory.source_options``): every option parsed once into a typed object, each
duration form, each bad value refused with its reason, and the stored form parsed back unchanged."""

from __future__ import annotations

import pytest

from memory.settings import parse_duration
from memory.source_options import PII_KINDS, BadSourceOption, SourceOptions


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800), (" 1.5H ", 5400), ("0.5", 0.5)],
)
def test_every_duration_form_is_read_by_the_one_parser(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "h", "-5s", "nan", "inf", "1e400", "5 days"])
def test_a_malformed_duration_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("given", "seconds"), [("86400", 86400), ("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800)]
)
def test_dedup_window_takes_every_duration_form_and_is_stored_in_seconds(given: str, seconds: int) -> None:
    options = SourceOptions.from_pairs([f"dedup_window={given}"], "github")
    assert options.dedup_window == seconds and isinstance(options.dedup_window, int)
    assert options.stored() == {"dedup_window": seconds}


def test_every_option_is_typed_and_the_stored_form_parses_back_the_same() -> None:
    generic = SourceOptions.from_pairs(
        [
            "dedup_window=2h", "rate_limit=50", "priority=0.9", "retry_base_s=0.5",
            "retry_cap_s=5m", "retry_max_attempts=8", "pii_mask=Card, email", "tolerance=2m",
            "header=X-Sig", "algorithm=SHA512", "encoding=base64", "timestamp_header=X-Timestamp",
            "event_header=X-Kind", "delivery_header=X-Id",
        ],
        "generic",
    )  # fmt: skip
    assert generic == SourceOptions(
        dedup_window=7200, rate_limit=50.0, priority=0.9, retry_base_s=0.5, retry_cap_s=300.0,
        retry_max_attempts=8, pii_mask=("card", "email"), tolerance=120.0, header="x-sig",
        algorithm="sha512", encoding="base64", timestamp_header="x-timestamp", event_header="x-kind",
        delivery_header="x-id",
    )  # fmt: skip
    stored = generic.stored()
    assert stored["pii_mask"] == "card,email" and stored["retry_cap_s"] == 300.0
    assert SourceOptions.parse(stored, "generic") == generic
    assert SourceOptions().stored() == {}  # defaults are not stored
    masks_nothing = SourceOptions.from_pairs(["pii_mask=none"], "github")
    assert (
        masks_nothing.pii_mask == ()
        and SourceOptions.parse(masks_nothing.stored(), "github") == masks_nothing
    )
    assert SourceOptions.from_pairs(["pii_mask=all"], "github").pii_mask == PII_KINDS
    assert SourceOptions.parse({"rate_limit": 0, "tolerance": 0}, "stripe").rate_limit == 0.0  # 0: unlimited


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("dedup_window", "soon", "duration like 90s"),
        ("dedup_window", "0", "between 1 s"),
        ("dedup_window", "0.4", "between 1 s"),
        ("dedup_window", "-5", "duration like 90s"),
        ("dedup_window", "inf", "duration like 90s"),
        ("dedup_window", "400d", "365 days"),
        ("rate_limit", "fast", "events per second"),
        ("rate_limit", "-1", "events per second"),
        ("rate_limit", "nan", "events per second"),
        ("priority", "1.5", "from 0 to 1"),
        ("priority", "-0.1", "from 0 to 1"),
        ("priority", "high", "from 0 to 1"),
        ("retry_base_s", "0", "more than 0"),
        ("retry_base_s", "later", "duration like 90s"),
        ("retry_cap_s", "-1", "duration like 90s"),
        ("retry_max_attempts", "0", "whole number from 1"),
        ("retry_max_attempts", "2.5", "whole number from 1"),
        ("retry_max_attempts", "1001", "whole number from 1"),
        ("retry_max_attempts", "five", "whole number from 1"),
        ("pii_mask", "secrets,passwords", "unknown PII kinds"),
        ("tolerance", "ten", "duration like 90s"),
        ("tolerance", "-1", "duration like 90s"),
        ("algorithm", "md5", "sha1, sha256, sha512"),
        ("encoding", "base32", "hex, base64"),
        ("header", "bad header", "HTTP header name"),
        ("header", "", "HTTP header name"),
        ("timestamp_header", "x:y", "HTTP header name"),
        ("delivery_header", "x" * 200, "HTTP header name"),
    ],
)
def test_each_bad_value_is_refused_with_its_reason(key: str, value: str, reason: str) -> None:
    with pytest.raises(BadSourceOption, match=reason) as refused:
        SourceOptions.from_pairs([f"{key}={value}"], "generic")
    assert key in str(refused.value)


@pytest.mark.parametrize(
    ("raw", "provider", "reason"),
    [
        ({"dedup": "1h"}, "github", "unknown option 'dedup'"),
        ({"header": "X-Sig"}, "github", "only to the generic provider"),
        ({"tolerance": None}, "stripe", "text or a number"),
        ({"priority": True}, "github", "text or a number"),
        ({"rate_limit": [1]}, "github", "text or a number"),
        ({"retry_base_s": "10m", "retry_cap_s": "1m"}, "github", "must not exceed"),
    ],
)
def test_unknown_keys_wrong_providers_and_wrong_types_are_refused(
    raw: dict[str, object], provider: str, reason: str
) -> None:
    with pytest.raises(BadSourceOption, match=reason):
        SourceOptions.parse(raw, provider)


@pytest.mark.parametrize(
    ("pairs", "reason"),
    [(["dedup_window"], "KEY=VALUE"), (["=5"], "KEY=VALUE"), (["priority=1", "priority=0"], "given twice")],
)
def test_command_line_pairs_must_be_key_value_once(pairs: list[str], reason: str) -> None:
    with pytest.raises(BadSourceOption, match=reason):
        SourceOptions.from_pairs(pairs, "github")

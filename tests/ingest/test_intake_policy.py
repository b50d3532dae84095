"""The intake's input policy (ingest.policy): a JSON object, at most HOOKLINE_MAX_JSON_DEPTH levels,
bounded event types and delivery ids without control characters; and what does flow (NUL inside
payload strings) is stored in every tier."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
import orjson
import pytest

from ingest.policy import check_label, nested_deeper_than
from ingest.providers.base import MalformedRequest
from memory import keys
from memory.errors import ConfigError
from memory.lifecycle import Lifecycle
from memory.runtime import Runtime
from memory.settings import load_settings
from memory.sources import SourceStore
from tests.conftest import make_settings
from tests.fixtures.github_examples import fixture_names, load_fixture
from tests.helpers import github_headers, serve_app, wait_until

SECRET = "policy-secret"


def nested(depth: int, kind: str = "array", leaf: Any = 1) -> Any:
    """``depth`` levels of arrays, objects, or both alternating (outermost an object for "mixed")."""
    value = leaf
    for level in range(depth):
        as_object = kind == "object" or (kind == "mixed" and (depth - level) % 2 == 1)
        value = {"k": value} if as_object else [value]
    return value


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


# -- the checks themselves ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["array", "object", "mixed"])
@pytest.mark.parametrize("limit", [1, 2, 127, 128, 200, 254])
def test_the_depth_check_is_exact_at_the_limit(kind: str, limit: int) -> None:
    for depth in (limit - 1, limit, limit + 1):
        if depth < 1:
            continue
        payload = nested(depth, kind)
        assert depth_of(payload) == depth
        assert nested_deeper_than(payload, json.dumps(payload).encode(), limit) is (depth > limit), depth


def test_the_depth_check_agrees_with_a_recursive_count_on_real_payloads() -> None:
    payloads = [load_fixture(name) for name in fixture_names()]
    # Brackets inside strings, and escaped quotes before them, must not count as nesting.
    payloads.append({"text": '[{"x": "\\"[[[' * 300, "list": [[[1]]]})
    for payload in payloads:
        depth = depth_of(payload)
        for body in (orjson.dumps(payload), orjson.dumps(payload, option=orjson.OPT_INDENT_2)):
            assert not nested_deeper_than(payload, body, depth)
            assert nested_deeper_than(payload, body, depth - 1)


@pytest.mark.parametrize(
    "label",
    ["a\x00b", "push\n", "\x1b[31mred", "tab\there", "del\x7f", "c1\x85", "x" * 201, ""],
    ids=["nul", "newline", "escape", "tab", "del", "c1", "too_long", "empty"],
)
def test_a_label_with_a_control_character_or_out_of_bounds_is_refused(label: str) -> None:
    with pytest.raises(MalformedRequest):
        check_label(label, "event type")


@pytest.mark.parametrize(
    "label", ["push", "jira:issue_updated", "orders/create", "évènement 事件 🎉", "x" * 200]
)
def test_ordinary_labels_pass(label: str) -> None:
    assert check_label(label, "event type") == label


def test_a_depth_limit_orjson_could_not_serialise_is_a_config_error(tmp_path: Path) -> None:
    base = {"HOOKLINE_DATA_DIR": str(tmp_path)}
    assert load_settings({**base, "HOOKLINE_MAX_JSON_DEPTH": "200"}).max_json_depth == 200
    with pytest.raises(ConfigError, match="MAX_JSON_DEPTH"):
        load_settings({**base, "HOOKLINE_MAX_JSON_DEPTH": "300"})


# -- over HTTP, with workers ----------------------------------------------------------------------


@pytest.fixture
async def server(
    tmp_root: Path, machine_rt: Runtime, tenant: str
) -> AsyncIterator[tuple[httpx2.AsyncClient, Runtime, str]]:
    store = SourceStore(machine_rt.db)
    await store.add("gh", "github", [SECRET], tenant)
    await store.add("hooks", "generic", [SECRET], tenant)
    settings = make_settings(tmp_root, machine_rt.redis_url, machine_rt.database_url)
    with serve_app(settings) as url:
        async with httpx2.AsyncClient(base_url=url) as client:
            yield client, machine_rt, tenant


def _generic(body: bytes, **headers: str) -> dict[str, str]:
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"content-type": "application/json", "x-signature": signature, **headers}


async def _queued(rt: Runtime) -> int:
    return sum([int(await rt.redis.xlen(keys.events_stream(p))) for p in range(rt.settings.partitions)])


async def _applied(rt: Runtime, tenant: str, event_id: str) -> bool:
    """The event is in the hot tier and in the PostgreSQL index."""
    async with rt.db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT context_id FROM events WHERE tenant = %s AND id = %s", (tenant, event_id)
            )
        ).fetchone()
    return row is not None and bool(await rt.redis.hexists(keys.context_events(tenant, row[0]), event_id))


FORM = "application/x-www-form-urlencoded"
REFUSED = {
    "null": (b"null", "application/json"),
    "array": (b"[1, 2]", "application/json"),
    "empty_array": (b"[]", "application/json"),
    "string": (b'"push"', "application/json"),
    "number": (b"42", "application/json"),
    "boolean": (b"true", "application/json"),
    "depth_129": (orjson.dumps(nested(129, "mixed")), "application/json"),
    "depth_300": (b"[" * 300 + b"]" * 300, "application/json"),
    "form_payload_array": (urlencode({"payload": "[1]"}).encode(), FORM),
    "form_payload_null": (urlencode({"payload": "null"}).encode(), FORM),
    "form_payload_deep": (
        urlencode({"payload": orjson.dumps(nested(200, "object")).decode()}).encode(),
        FORM,
    ),
    "nan": (b'{"a": NaN}', "application/json"),
    "infinity": (b'{"a": Infinity}', "application/json"),
    "overflowing_float": (b'{"a": 1e400}', "application/json"),
    "lone_surrogate": (b'{"a": "\\ud800"}', "application/json"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_a_body_that_is_not_an_acceptable_object_gets_400_and_nothing_is_queued(
    server: tuple[httpx2.AsyncClient, Runtime, str], case: str
) -> None:
    client, rt, _ = server
    body, content_type = REFUSED[case]
    headers = github_headers(body, SECRET, "push", f"refused-{case}") | {"content-type": content_type}
    response = await client.post("/hooks/gh", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed" and response.json()["detail"]
    assert await _queued(rt) == 0


ACCEPTED = {
    "depth_128": (orjson.dumps({"ref": "refs/heads/main", "deep": nested(127, "mixed")}), "application/json"),
    "huge_integer": (b'{"ref": "refs/heads/main", "n": 123456789012345678901234567890}', "application/json"),
    "form_payload_object": (
        urlencode({"payload": orjson.dumps(load_fixture("push")).decode()}).encode(),
        FORM,
    ),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
async def test_an_acceptable_object_at_the_edges_is_applied(
    server: tuple[httpx2.AsyncClient, Runtime, str], case: str
) -> None:
    client, rt, tenant = server
    body, content_type = ACCEPTED[case]
    headers = github_headers(body, SECRET, "push", f"edge-{case}") | {"content-type": content_type}
    response = await client.post("/hooks/gh", content=body, headers=headers)
    assert response.status_code == 202, response.text
    await wait_until(lambda: _applied(rt, tenant, f"gh:edge-{case}"))


# Header values reach the app latin-1 decoded; uvicorn's parser (httptools) already answers 400 to
# C0 controls in a header, so those that get through to a provider are TAB and C1 (0x80-0x9f).
LABELS = {
    "type_header_tab": ({"x-event-type": "a\tb"}, {}),
    "type_header_c1": ({"x-event-type": "order\x85"}, {}),
    "type_header_too_long": ({"x-event-type": "t" * 201}, {}),
    "type_field_nul": ({}, {"type": "order\u0000created"}),
    "type_field_escape": ({}, {"type": "\u001b[2J"}),
    "type_field_c1": ({}, {"type": "order\u009bcreated"}),
    "type_field_too_long": ({}, {"type": "t" * 201}),
    "delivery_tab": ({"x-delivery-id": "d\t1"}, {}),
    "delivery_too_long": ({"x-delivery-id": "d" * 201}, {}),
}


@pytest.mark.parametrize("case", sorted(LABELS))
async def test_an_event_type_or_delivery_id_with_control_characters_or_too_long_gets_400(
    server: tuple[httpx2.AsyncClient, Runtime, str], case: str
) -> None:
    client, rt, _ = server
    extra_headers, fields = LABELS[case]
    body = orjson.dumps({"id": "o_1", **fields})
    raw_headers = [(k.encode(), v.encode("latin-1")) for k, v in _generic(body, **extra_headers).items()]
    response = await client.post("/hooks/hooks", content=body, headers=raw_headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed"
    assert await _queued(rt) == 0


async def test_nul_inside_payload_strings_is_applied_in_every_tier(
    server: tuple[httpx2.AsyncClient, Runtime, str],
) -> None:
    """The issue's crash loop (``hookline tier run`` exit 1) came from a NUL that reached PostgreSQL
    through a cold summary. NUL inside payload strings is data: it flows, and every tier takes it."""
    client, rt, tenant = server
    payload = {
        "type": "order.created",
        "id": "o_\u0000nul",
        "title": "Order \u0000 with a NUL",
        "name": "n\u0000",
        "status": "open\u0000",
        "customer": {"name": "Zoë \u0000 Ünïcode 🎉"},
        "note": "\u0000" * 10,
    }
    body = orjson.dumps(payload)
    response = await client.post(
        "/hooks/hooks", content=body, headers=_generic(body, **{"x-delivery-id": "n1"})
    )
    assert response.status_code == 202, response.text
    await wait_until(lambda: _applied(rt, tenant, "hooks:n1"))

    report = await Lifecycle(rt).run_pass(datetime.now(UTC) + timedelta(days=3))
    assert report.failed == [] and report.to_cold == 1, report
    async with rt.db.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT tier, title, summary, subject FROM contexts WHERE tenant = %s", (tenant,)
            )
        ).fetchall()
    assert len(rows) == 1 and rows[0][0] == "cold"
    assert all("\x00" not in text for text in rows[0][1:]) and "\ufffd" in rows[0][1]


async def test_the_depth_limit_is_a_setting(tmp_root: Path, machine_rt: Runtime, tenant: str) -> None:
    await SourceStore(machine_rt.db).add("gh", "github", [SECRET], tenant)
    settings = make_settings(
        tmp_root, machine_rt.redis_url, machine_rt.database_url, HOOKLINE_MAX_JSON_DEPTH="5"
    )
    with serve_app(settings, roles=("api",)) as url:
        async with httpx2.AsyncClient(base_url=url) as client:
            for depth, status in ((5, 202), (6, 400)):
                body = json.dumps(nested(depth, "object")).encode()
                headers = github_headers(body, SECRET, "push", f"depth-{depth}")
                response = await client.post("/hooks/gh", content=body, headers=headers)
                assert response.status_code == status, (depth, response.text)
    assert await _queued(machine_rt) == 1

"""POST /hooks/{source} on a live server (uvicorn in this loop) with real Redis and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from ingest.envelope import decode_envelope
from memory import keys
from memory.embedded import EmbeddedRedis
from memory.models import Source
from memory.runtime import Runtime
from memory.source_options import SourceOptions
from memory.sources import SourceStore
from tests.conftest import make_settings
from tests.fixtures.github_examples import load_fixture
from tests.helpers import github_headers, serve_app, wait_until

SECRET = "It's a Secret to Everybody"


@pytest.fixture
async def server(tmp_root: Path, machine_rt: Runtime) -> AsyncIterator[tuple[httpx2.AsyncClient, Runtime]]:
    await SourceStore(machine_rt.db).add("gh", "github", ["old-secret", SECRET], "default")
    settings = make_settings(
        tmp_root, machine_rt.redis_url, machine_rt.database_url, HOOKLINE_MAX_BODY_BYTES="65536"
    )
    with serve_app(settings) as url:
        async with httpx2.AsyncClient(base_url=url) as client:
            yield client, machine_rt


def _signed(
    event: str = "push", delivery: str | None = None, secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    # A new body each time: GitHub signs no timestamp, so a byte-identical body is a replay (200).
    payload = load_fixture("push" if event == "push" else "pull_request_opened")
    body = orjson.dumps({**payload, "hook_id": uuid.uuid4().int % 10**9})
    return body, github_headers(body, secret, event, delivery or str(uuid.uuid4()))


async def _stream_total(rt: Runtime) -> int:
    return sum([int(await rt.redis.xlen(keys.events_stream(p))) for p in range(rt.settings.partitions)])


async def test_a_signed_delivery_is_accepted_once(server: tuple[httpx2.AsyncClient, Runtime]) -> None:
    client, rt = server
    body, headers = _signed(delivery="delivery-1")
    first = await client.post("/hooks/gh", content=body, headers=headers)
    assert first.status_code == 202 and first.json() == {"id": "gh:delivery-1", "duplicate": False}
    again = await client.post("/hooks/gh", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert await _stream_total(rt) == 1


async def test_any_active_secret_verifies(server: tuple[httpx2.AsyncClient, Runtime]) -> None:
    client, _ = server
    body, headers = _signed(secret="old-secret")
    assert (await client.post("/hooks/gh", content=body, headers=headers)).status_code == 202


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("wrong_signature", 401, "bad_signature"),
        ("missing_signature", 401, "bad_signature"),
        ("non_hex_signature", 401, "bad_signature"),
        ("unknown_source", 404, "unknown_source"),
        ("malformed_json", 400, "malformed"),
        ("invalid_utf8", 400, "malformed"),
        ("wrong_content_type", 415, "unsupported_media_type"),
        ("missing_event_header", 400, "malformed"),
        ("too_large", 413, "too_large"),
        ("deeply_nested", 400, "malformed"),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_nothing_is_queued(
    server: tuple[httpx2.AsyncClient, Runtime], case: str, status: int, code: str
) -> None:
    client, rt = server
    body, headers = _signed()
    path = "/hooks/gh"
    if case == "wrong_signature":
        headers = github_headers(body, "not the secret", "push", "x")
    elif case == "missing_signature":
        del headers["x-hub-signature-256"]
    elif case == "non_hex_signature":
        headers["x-hub-signature-256"] = "sha256=zz-not-hex"
    elif case == "unknown_source":
        path = "/hooks/nope"
    elif case == "malformed_json":
        body = b'{"truncated": '
        headers = github_headers(body, SECRET, "push", "x")
    elif case == "invalid_utf8":
        body = b'{"a": "\xff\xfe"}'
        headers = github_headers(body, SECRET, "push", "x")
    elif case == "wrong_content_type":
        headers["content-type"] = "text/plain"
    elif case == "missing_event_header":
        del headers["x-github-event"]
    elif case == "too_large":
        body = b'{"a": "' + b"x" * 70_000 + b'"}'
        headers = github_headers(body, SECRET, "push", "x")
    elif case == "deeply_nested":
        body = b"[" * 5000 + b"]" * 5000
        headers = github_headers(body, SECRET, "push", "x")
    response = await client.post(path, content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == code and response.json()["detail"]
    assert await _stream_total(rt) == 0
    ok_body, ok_headers = _signed()
    assert (await client.post("/hooks/gh", content=ok_body, headers=ok_headers)).status_code == 202


async def test_accepted_events_reach_the_context_and_metrics(
    server: tuple[httpx2.AsyncClient, Runtime],
) -> None:
    client, rt = server
    for _ in range(3):
        body, headers = _signed()
        assert (await client.post("/hooks/gh", content=body, headers=headers)).status_code == 202

    async def applied() -> bool:
        async with rt.db.connection() as conn:
            row = await (await conn.execute("SELECT count(*) FROM events")).fetchone()
        return row == (3,)

    await wait_until(applied)
    metrics = (await client.get("/metrics")).text
    assert 'hookline_webhooks_total{outcome="202",source="gh"}' in metrics
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    consumers = [name for name in ready.json()["checks"] if name.startswith("consumer:")]
    assert {name.split(":")[1] for name in consumers} == {"context", "index", "audit"}


async def test_redis_down_means_503_never_2xx(tmp_root: Path, machine_rt: Runtime) -> None:
    await SourceStore(machine_rt.db).add("gh", "github", [SECRET], "default")
    doomed = EmbeddedRedis(tmp_root / "doomed")  # a Redis of this test's own, to stop mid-test
    settings = make_settings(tmp_root, doomed.acquire(), machine_rt.database_url)
    try:
        with serve_app(settings, roles=("api",)) as url:
            async with httpx2.AsyncClient(base_url=url) as client:
                body, headers = _signed()
                assert (await client.post("/hooks/gh", content=body, headers=headers)).status_code == 202
                doomed.stop()
                body, headers = _signed()
                response = await client.post("/hooks/gh", content=body, headers=headers)
                assert response.status_code == 503 and response.headers["retry-after"]
                assert response.json()["error"] == "unavailable"
                doomed.acquire()  # Redis is back (with its AOF): the provider's retry is accepted
                response = await client.post("/hooks/gh", content=body, headers=headers)
                assert response.status_code == 202
    finally:
        doomed.release()


def _slack_headers(body: bytes, secret: str, ts: int) -> dict[str, str]:
    signature = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-slack-request-timestamp": str(ts),
        "x-slack-signature": f"v0={signature}",
    }


@pytest.mark.parametrize(("secret", "status"), [("s3cret", 200), ("forged", 401)])
async def test_only_a_verified_slack_handshake_is_answered(
    server: tuple[httpx2.AsyncClient, Runtime], secret: str, status: int
) -> None:
    client, rt = server
    await SourceStore(rt.db).add("slack", "slack", ["s3cret"], "default")
    body = orjson.dumps({"token": "t", "challenge": "abc123", "type": "url_verification"})
    response = await client.post(
        "/hooks/slack", content=body, headers=_slack_headers(body, secret, int(time.time()))
    )
    assert response.status_code == status
    assert (response.json() == {"challenge": "abc123"}) is (status == 200)
    assert await _stream_total(rt) == 0


async def test_a_flood_from_one_source_is_rate_limited_with_retry_after(
    server: tuple[httpx2.AsyncClient, Runtime],
) -> None:
    client, rt = server
    await SourceStore(rt.db).add("tiny", "github", [SECRET], "default", SourceOptions(rate_limit=1))
    statuses = []
    for _ in range(4):  # burst capacity is 2 seconds' worth: 2 events
        body, headers = _signed()
        response = await client.post("/hooks/tiny", content=body, headers=headers)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["retry-after"]) >= 1 and response.json()["error"] == "rate_limited"
    assert statuses[:2] == [202, 202] and 429 in statuses[2:]
    body, headers = _signed()
    assert (await client.post("/hooks/gh", content=body, headers=headers)).status_code == 202  # others flow


async def test_the_redaction_hook_runs_before_anything_is_stored(tmp_root: Path, machine_rt: Runtime) -> None:
    await SourceStore(machine_rt.db).add("gh", "github", [SECRET], "default")
    seen: list[str] = []

    def redact(source: Source, event_type: str, body: bytes) -> bytes:
        seen.append(f"{source.name}/{event_type}")
        return body.replace(b"alice@example.com", b"[email]")

    settings = make_settings(tmp_root, machine_rt.redis_url, machine_rt.database_url)
    with serve_app(settings, roles=("api",), redact=redact) as url:
        async with httpx2.AsyncClient(base_url=url) as client:
            body = orjson.dumps({"pusher": {"email": "alice@example.com"}, "ref": "refs/heads/main"})
            headers = github_headers(body, SECRET, "push", "pii-1")
            assert (await client.post("/hooks/gh", content=body, headers=headers)).status_code == 202
    assert seen == ["gh/push"]
    entries: list[Any] = []
    for p in range(machine_rt.settings.partitions):
        entries += await machine_rt.redis.xrange(keys.events_stream(p)) or []
    stored = decode_envelope(entries[0][1][b"e"]).payload
    assert b"alice@example.com" not in stored and b"[email]" in stored

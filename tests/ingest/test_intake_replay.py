"""Replay resistance: where nothing signed dates a body (GitHub, Shopify, Jira, generic without a
timestamp header), a captured body replayed under a fresh delivery id is a duplicate within the
dedup window. Where a timestamp is signed, a byte-identical body with its own delivery id is a new
event (invariant 2 holds for everything but byte-identical undated bodies)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx2
import orjson
import pytest

from ingest.providers import PROVIDERS
from memory import keys
from memory.models import Source
from memory.runtime import Runtime
from memory.source_options import SourceOptions
from memory.sources import SourceStore
from tests.conftest import make_settings
from tests.helpers import serve_app

SECRET = "replay-secret"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"replay-key-of-32-bytes-exactly!!").decode()

Signer = Callable[[bytes, str], dict[str, str]]


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _github(body: bytes, delivery: str) -> dict[str, str]:
    signature = _mac(SECRET.encode(), body).hex()
    return {
        "x-hub-signature-256": f"sha256={signature}",
        "x-github-event": "push",
        "x-github-delivery": delivery,
    }


def _shopify(body: bytes, delivery: str) -> dict[str, str]:
    signature = base64.b64encode(_mac(SECRET.encode(), body)).decode()
    return {
        "x-shopify-hmac-sha256": signature,
        "x-shopify-topic": "orders/paid",
        "x-shopify-webhook-id": delivery,
    }


def _jira(body: bytes, delivery: str) -> dict[str, str]:
    signature = _mac(SECRET.encode(), body).hex()
    return {"x-hub-signature": f"sha256={signature}", "x-atlassian-webhook-identifier": delivery}


def _generic(body: bytes, delivery: str) -> dict[str, str]:
    return {"x-signature": _mac(SECRET.encode(), body).hex(), "x-delivery-id": delivery}


def _generic_dated(body: bytes, delivery: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    signature = _mac(SECRET.encode(), stamp.encode() + b"." + body).hex()
    return {"x-signature": signature, "x-timestamp": stamp, "x-delivery-id": delivery}


def _standard(body: bytes, delivery: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    key = base64.b64decode(STANDARD_SECRET.removeprefix("whsec_"))
    signature = base64.b64encode(_mac(key, f"{delivery}.{stamp}.".encode() + body)).decode()
    return {"webhook-id": delivery, "webhook-timestamp": stamp, "webhook-signature": f"v1,{signature}"}


# source name -> (provider, secret, options, signer, body); one source per case.
SOURCES: dict[str, tuple[str, str, dict[str, str], Signer, bytes]] = {
    "gh": ("github", SECRET, {}, _github, orjson.dumps({"ref": "refs/heads/main", "after": "abc"})),
    "shop": ("shopify", SECRET, {}, _shopify, orjson.dumps({"id": 820982911946154508, "total": "1.00"})),
    "jira": ("jira", SECRET, {}, _jira, orjson.dumps({"webhookEvent": "jira:issue_updated", "issue": {}})),
    "plain": ("generic", SECRET, {}, _generic, orjson.dumps({"type": "invoice.paid", "id": "in_1"})),
    "dated": (
        "generic",
        SECRET,
        {"timestamp_header": "x-timestamp"},
        _generic_dated,
        orjson.dumps({"type": "invoice.paid", "id": "in_1"}),
    ),
    "std": ("standard", STANDARD_SECRET, {}, _standard, orjson.dumps({"type": "user.created", "id": "u_1"})),
}
UNDATED = ["gh", "shop", "jira", "plain"]
DATED = ["dated", "std"]


@pytest.fixture
async def server(tmp_root: Path, machine_rt: Runtime, tenant: str) -> AsyncIterator[httpx2.AsyncClient]:
    store = SourceStore(machine_rt.db)
    for name, (provider, secret, options, _, _) in SOURCES.items():
        await store.add(name, provider, [secret], tenant, SourceOptions.parse(options, provider))
    settings = make_settings(tmp_root, machine_rt.redis_url, machine_rt.database_url)
    with serve_app(settings, roles=("api",)) as url:
        async with httpx2.AsyncClient(base_url=url) as client:
            yield client


async def _post(client: httpx2.AsyncClient, name: str, body: bytes, delivery: str) -> httpx2.Response:
    sign, headers = SOURCES[name][3], {"content-type": "application/json"}
    return await client.post(f"/hooks/{name}", content=body, headers=headers | sign(body, delivery))


async def _queued(rt: Runtime) -> int:
    return sum([int(await rt.redis.xlen(keys.events_stream(p))) for p in range(rt.settings.partitions)])


def test_every_provider_says_whether_it_signs_a_timestamp() -> None:
    plain = {name: Source("s", "t", name, ("k",)) for name in PROVIDERS}
    undated = {name for name, provider in PROVIDERS.items() if not provider.signs_timestamp(plain[name])}
    assert undated == {"github", "shopify", "jira", "generic"}
    dated = Source("s", "t", "generic", ("k",), SourceOptions(timestamp_header="x-timestamp"))
    assert PROVIDERS["generic"].signs_timestamp(dated)


@pytest.mark.parametrize("name", UNDATED)
async def test_an_undated_body_replayed_under_a_fresh_delivery_id_is_a_duplicate(
    server: httpx2.AsyncClient, machine_rt: Runtime, tenant: str, name: str
) -> None:
    body = SOURCES[name][4]
    first = await _post(server, name, body, "delivery-1")
    assert first.status_code == 202 and first.json()["duplicate"] is False
    replay = await _post(server, name, body, "delivery-2")
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    assert await _queued(machine_rt) == 1
    # One byte more is another event: dedup by body is exact.
    other = await _post(server, name, body[:-1] + b" }", "delivery-3")
    assert other.status_code == 202, other.text
    assert await _queued(machine_rt) == 2
    # Past the window (its key expired) the same bytes are accepted again.
    partition = keys.partition_of(tenant, name, machine_rt.settings.partitions)
    body_key = keys.dedup_body(partition, tenant, name, hashlib.sha256(body).hexdigest())
    window_s = machine_rt.settings.dedup_window_s
    assert window_s - 5 <= int(await machine_rt.redis.ttl(body_key)) <= window_s
    await machine_rt.redis.delete(body_key)
    later = await _post(server, name, body, "delivery-4")
    assert later.status_code == 202 and later.json()["duplicate"] is False


@pytest.mark.parametrize("name", DATED)
async def test_a_dated_provider_accepts_a_byte_identical_body_under_a_new_delivery_id(
    server: httpx2.AsyncClient, machine_rt: Runtime, tenant: str, name: str
) -> None:
    body = SOURCES[name][4]
    for delivery in ("msg_1", "msg_2"):
        response = await _post(server, name, body, delivery)
        assert response.status_code == 202 and response.json()["duplicate"] is False, response.text
    again = await _post(server, name, body, "msg_2")  # the provider's own retry: same delivery id
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert await _queued(machine_rt) == 2
    partition = keys.partition_of(tenant, name, machine_rt.settings.partitions)
    body_keys = machine_rt.redis.scan_iter(match=keys.dedup_body(partition, tenant, name, "*"))
    assert [key async for key in body_keys] == []  # nothing keyed on the body

"""The hostile-tenant suite over the real transports: a live server (uvicorn in a thread, auth on, real
Redis and PostgreSQL), an attacker holding a valid token of its own tenant, through streamable HTTP
(/mcp) and WebSocket (/ws) with the SDK's client, and crafted source names on the webhook route.
Nothing of the victim is read or deleted, no answer is a 5xx, and the refused calls write nothing."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import PromptReference, ResourceTemplateReference

from mcp_server.ws_client import websocket_client
from memory.runtime import Runtime
from memory.service import MemoryService
from memory.tokens import TokenStore
from tests.conftest import make_settings
from tests.helpers import serve_app
from tests.mcp_server.test_hostile_tenants import (
    HUGE,
    VICTIM_SOURCE,
    Attacker,
    _attack_with_ids,
    _attack_with_names,
    _crafted,
    _marker,
    _redis_state,
    _seed_victim,
    _state,
    _victim_rows,
)
from tests.mcp_server.test_sampling import Model

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_root: Path, machine_rt: Runtime) -> Iterator[str]:
    settings = make_settings(tmp_root, machine_rt.redis_url, machine_rt.database_url)
    with serve_app(settings) as url:
        yield url


@asynccontextmanager
async def _over_http(url: str, token: str) -> AsyncIterator[Attacker]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        httpx2.AsyncClient(headers=headers, timeout=30) as legacy_http,
        Client(
            streamable_http_client(f"{url}/mcp", http_client=http), sampling_callback=Model("s")
        ) as client,
        Client(streamable_http_client(f"{url}/mcp", http_client=legacy_http), mode="legacy") as legacy,
    ):
        yield Attacker(client, legacy)


@asynccontextmanager
async def _over_websocket(url: str, token: str) -> AsyncIterator[Attacker]:
    ws_url = "ws" + url.removeprefix("http") + "/ws"
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        Client(websocket_client(ws_url, headers), sampling_callback=Model("s")) as client,
        Client(websocket_client(ws_url, headers), mode="legacy") as legacy,
    ):
        yield Attacker(client, legacy)


TRANSPORTS: dict[str, Any] = {"http": _over_http, "websocket": _over_websocket}


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_another_tenant_reads_and_deletes_nothing_over_the_wire(
    server: str, machine_rt: Runtime, transport: str
) -> None:
    victim, attacker_tenant = "acme-" + secrets.token_hex(3), "acme"
    marker = _marker()
    victim_id, subject = await _seed_victim(machine_rt, victim, marker)
    victim_source = VICTIM_SOURCE + victim[-6:]
    token = await TokenStore(machine_rt.db).create(attacker_tenant, "attacker")
    victim_keys = {k: v for k, v in (await _redis_state(machine_rt)).items() if victim.encode() in k}
    victim_rows = await _victim_rows(machine_rt, victim)

    async with TRANSPORTS[transport](server, token) as attacker:
        await _attack_with_ids(attacker, _crafted(victim, victim_id), subject)
        await _attack_with_names(attacker, victim, victim_source)
        await attacker.tool("search_context", {"query": marker})
        await attacker.tool("recent_events", {})
        await attacker.resource("hookline://recent")
        await attacker.prompt("summarize_activity", {"since": "2000-01-01T00:00:00Z"})
        template = ResourceTemplateReference(type="ref/resource", uri="hookline://context/{id}")
        prompt = PromptReference(type="ref/prompt", name="summarize_activity")
        for prefix in ("", "ctx_", victim_id[:8], victim_source[:3], HUGE):
            await attacker.complete(template, {"name": "id", "value": prefix})
            await attacker.complete(prompt, {"name": "source", "value": prefix})
    victim_texts = (f"{marker} leaked", f"{marker} fix", f"the {marker} is")
    assert not [text for text in attacker.seen if any(v in text for v in victim_texts)]
    assert victim_source not in attacker.completions and victim_id not in attacker.completions
    after = {k: v for k, v in (await _redis_state(machine_rt)).items() if victim.encode() in k}
    assert after == victim_keys
    assert await _victim_rows(machine_rt, victim) == victim_rows
    assert marker in (await MemoryService(machine_rt).get_context(victim, victim_id)).head.title


async def test_crafted_source_names_on_the_webhook_route_are_4xx_and_write_nothing(
    server: str, machine_rt: Runtime
) -> None:
    victim = "acme-" + secrets.token_hex(3)
    await _seed_victim(machine_rt, victim, _marker())
    victim_source = VICTIM_SOURCE + victim[-6:]
    before = await _state(machine_rt)
    names = [
        f"{victim_source}%00", "..%2F..%2Fadmin", "%2e%2e", "{p0}", "%7Bp0%7D", "a" * 5000, "ACME",
        f"{victim}:{victim_source}", "%F0%9F%92%A5", "gh%0d%0aX-Injected:%201", "*",
    ]  # fmt: skip
    async with httpx2.AsyncClient(timeout=30) as http:
        for name in names:
            answer = await http.post(
                f"{server}/hooks/{name}", content=b'{"a": 1}', headers={"content-type": "application/json"}
            )
            assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text)
            assert set(answer.json()) == {"error", "detail"}
        forged = await http.post(  # the victim's real source, without its secret
            f"{server}/hooks/{victim_source}",
            content=b'{"action": "opened"}',
            headers={"content-type": "application/json", "x-github-event": "issues",
                     "x-github-delivery": "d1", "x-hub-signature-256": "sha256=" + "0" * 64},
        )  # fmt: skip
        assert forged.status_code == 401
        assert (await http.get(f"{server}/healthz")).status_code == 200
    assert await _state(machine_rt) == before

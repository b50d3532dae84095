"""MCP sessions on a live server (uvicorn in a thread, real Redis and PostgreSQL): bound to the token
that opened them, capped per tenant across /mcp and /ws, ended when their token is revoked, and
failed authentication limited per client address.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import orjson
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import SubscriptionLost
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.typing import Subprotocol

from memory.runtime import Runtime
from memory.tokens import CACHE_TTL_S, TokenStore, hash_token, token_id
from tests.conftest import make_settings
from tests.helpers import serve_app, wait_until

TIMEOUT_S = 20
VERSION = "2025-11-25"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.fixture
def server(tmp_root: Path, machine_rt: Runtime) -> Iterator[str]:
    settings = make_settings(
        tmp_root, machine_rt.redis_url, machine_rt.database_url, HOOKLINE_MAX_SESSIONS_PER_TENANT="2"
    )
    with serve_app(settings) as url:
        yield url


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _public_id(token: str) -> str:
    return token_id(hash_token(token))


async def _post(
    http: httpx2.AsyncClient, url: str, token: str, body: object, session: str = ""
) -> httpx2.Response:
    headers = {**ACCEPT, **_bearer(token), "mcp-protocol-version": VERSION}
    if session:
        headers["mcp-session-id"] = session
    return await http.post(
        f"{url}/mcp", content=orjson.dumps(body), headers={"content-type": "application/json", **headers}
    )


async def _open_session(http: httpx2.AsyncClient, url: str, token: str) -> str:
    opened = await _post(http, url, token, INITIALIZE)
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    assert (await _post(http, url, token, INITIALIZED, session)).status_code == 202
    return session


@asynccontextmanager
async def _socket(url: str, token: str) -> AsyncIterator[ClientConnection]:
    ws_url = "ws" + url.removeprefix("http") + "/ws"
    async with connect(ws_url, subprotocols=[Subprotocol("mcp")], additional_headers=_bearer(token)) as ws:
        await ws.send(orjson.dumps(INITIALIZE).decode())
        assert "result" in orjson.loads(await ws.recv())
        await ws.send(orjson.dumps(INITIALIZED).decode())
        yield ws


async def _handshake_status(url: str, token: str) -> int:
    try:
        async with _socket(url, token):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


async def test_a_session_id_presented_with_another_token_gets_404(server: str, machine_rt: Runtime) -> None:
    tokens = TokenStore(machine_rt.db)
    owner, colleague = await tokens.create("default"), await tokens.create("default")  # one tenant
    stranger = await tokens.create("t_" + secrets.token_hex(4))
    async with httpx2.AsyncClient(timeout=TIMEOUT_S) as http:
        session = await _open_session(http, server, owner)
        for other in (colleague, stranger):
            refused = await _post(http, server, other, TOOLS_LIST, session)
            assert refused.status_code == 404, refused.text
            assert (
                await http.delete(f"{server}/mcp", headers={**_bearer(other), "mcp-session-id": session})
            ).status_code == 404
        listed = await _post(http, server, owner, TOOLS_LIST, session)
        assert listed.status_code == 200 and "search_context" in listed.text  # the session survived


async def test_open_sessions_are_capped_per_tenant_across_http_and_websocket(
    server: str, machine_rt: Runtime
) -> None:
    tokens = TokenStore(machine_rt.db)
    mine, also_mine = await tokens.create("default"), await tokens.create("default")
    theirs = await tokens.create("t_" + secrets.token_hex(4))
    async with httpx2.AsyncClient(timeout=TIMEOUT_S) as http:
        session = await _open_session(http, server, mine)
        async with _socket(server, also_mine):  # the tenant's second: at the cap (2)
            refused = await _post(http, server, mine, INITIALIZE)
            assert refused.status_code == 429 and refused.headers["retry-after"]
            assert refused.json()["error"] == "too_many_sessions" and "'default'" in refused.json()["detail"]
            assert await _handshake_status(server, mine) == 429
            assert await _handshake_status(server, theirs) == 101  # another tenant has its own cap
            assert (await _post(http, server, mine, TOOLS_LIST, session)).status_code == 200  # open ones work
            gone = await http.delete(f"{server}/mcp", headers={**_bearer(mine), "mcp-session-id": session})
            assert gone.status_code == 200
            session = await _open_session(http, server, mine)  # the DELETE freed its slot
            assert (await _post(http, server, mine, INITIALIZE)).status_code == 429

        async def a_socket_slot_is_free() -> bool:  # the closed socket frees its slot
            return await _handshake_status(server, mine) == 101

        await wait_until(a_socket_slot_is_free)


async def test_revocation_closes_an_open_websocket_within_the_ttl(server: str, machine_rt: Runtime) -> None:
    tokens = TokenStore(machine_rt.db)
    token = await tokens.create("default")
    async with _socket(server, token) as ws:
        await ws.send(orjson.dumps(TOOLS_LIST).decode())
        assert "result" in orjson.loads(await ws.recv())
        assert await TokenStore(machine_rt.db).revoke_id(_public_id(token))  # e.g. the CLI, elsewhere
        revoked_at = time.monotonic()
        with anyio.fail_after(CACHE_TTL_S), pytest.raises(ConnectionClosedError) as closed:
            await ws.recv()
        assert time.monotonic() - revoked_at < CACHE_TTL_S
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "token revoked")


async def test_revocation_ends_an_open_sse_stream_and_frees_the_session(
    server: str, machine_rt: Runtime
) -> None:
    tokens = TokenStore(machine_rt.db)
    token, colleague = await tokens.create("default"), await tokens.create("default")
    async with httpx2.AsyncClient(timeout=TIMEOUT_S) as http:
        session = await _open_session(http, server, token)
        await _open_session(http, server, colleague)  # the tenant is at its cap (2) now
        headers = {
            **_bearer(token),
            "Accept": "text/event-stream",
            "mcp-session-id": session,
            "mcp-protocol-version": VERSION,
        }
        async with http.stream("GET", f"{server}/mcp", headers=headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert await tokens.revoke_id(_public_id(token))
            revoked_at = time.monotonic()
            with anyio.fail_after(CACHE_TTL_S):
                async for _ in stream.aiter_bytes():
                    pass  # the stream ends (rather than waiting for events forever)
            assert time.monotonic() - revoked_at < CACHE_TTL_S
        assert (await _post(http, server, token, TOOLS_LIST, session)).status_code == 401
        # The revoked token's session was ended, not left to idle out: its slot is free again.
        await _open_session(http, server, colleague)


async def test_revocation_ends_a_modern_subscription_stream(server: str, machine_rt: Runtime) -> None:
    """A 2026-07-28 ``subscriptions/listen`` has no session: the request itself is cut short."""
    tokens = TokenStore(machine_rt.db)
    token = await tokens.create("default")
    async with (  # a read timeout well past the TTL, so that only the server can end the stream
        httpx2.AsyncClient(headers=_bearer(token), timeout=TIMEOUT_S) as http,
        Client(streamable_http_client(f"{server}/mcp", http_client=http)) as client,
    ):
        assert client.protocol_version in MODERN_PROTOCOL_VERSIONS
        async with client.listen(resource_subscriptions=["hookline://recent"]) as subscription:
            assert await tokens.revoke_id(_public_id(token))
            revoked_at = time.monotonic()
            with anyio.fail_after(CACHE_TTL_S), pytest.raises(SubscriptionLost):
                await anext(subscription)
            assert time.monotonic() - revoked_at < CACHE_TTL_S


async def test_failed_authentication_is_limited_per_client_address(
    tmp_root: Path, machine_rt: Runtime
) -> None:
    settings = make_settings(
        tmp_root, machine_rt.redis_url, machine_rt.database_url, HOOKLINE_AUTH_FAILURES_PER_MINUTE="3"
    )
    token = await TokenStore(machine_rt.db).create("default")
    with serve_app(settings) as url, anyio.fail_after(TIMEOUT_S):
        async with httpx2.AsyncClient() as http:
            for wrong in ("hl_guess-1", "hl_guess-2"):
                assert (await _post(http, url, wrong, TOOLS_LIST)).status_code == 401
            assert await _handshake_status(url, "hl_guess-3") == 401  # /ws counts too
            for attempt in ("hl_guess-4", token):  # past the limit, a right token is no different
                throttled = await _post(http, url, attempt, INITIALIZE)
                assert throttled.status_code == 429
                assert throttled.json()["error"] == "too_many_auth_failures"
                assert 0 < int(throttled.headers["retry-after"]) <= 60
            assert await _handshake_status(url, token) == 429

"""MCP over WebSocket (/ws) on a live server (uvicorn in a thread) with real Redis and PostgreSQL.

The SDK's ``Client`` drives it through ``websocket_client``; raw ``websockets`` connections check
the handshake, the error frames and the close codes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from mcp import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.typing import Origin, Subprotocol

from mcp_server.ws_client import websocket_client
from memory.runtime import Runtime
from memory.service import MemoryService
from memory.tokens import TokenStore
from tests.conftest import make_settings
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event, serve_app

TIMEOUT_S = 20
MCP = [Subprotocol("mcp")]
INITIALIZE = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "raw-websocket-test", "version": "0"},
}


@pytest.fixture
def ws_url(tmp_root: Path, machine_rt: Runtime) -> Iterator[str]:
    settings = make_settings(tmp_root, machine_rt.redis_url, machine_rt.database_url)
    with serve_app(settings) as url:
        yield "ws" + url.removeprefix("http") + "/ws"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _seed(rt: Runtime, tenant: str) -> str:
    """One pull request for ``tenant``; returns its title."""
    opened = load_fixture("pull_request_opened")
    await MemoryService(rt).apply_events([make_event(tenant, "pull_request", opened, f"gh:{tenant}")])
    return str(opened["pull_request"]["title"])


async def _rpc(ws: ClientConnection, message: dict[str, Any] | str | bytes) -> dict[str, Any]:
    await ws.send(message if isinstance(message, str | bytes) else orjson.dumps(message).decode())
    reply: dict[str, Any] = orjson.loads(await ws.recv())
    return reply


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_client_lists_tools_and_searches_over_websocket(
    ws_url: str, machine_rt: Runtime, tenant: str, mode: str
) -> None:
    title = await _seed(machine_rt, tenant)
    token = await TokenStore(machine_rt.db).create(tenant)
    with anyio.fail_after(TIMEOUT_S):
        async with Client(websocket_client(ws_url, _bearer(token)), mode=mode) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"search_context", "get_context", "recent_events", "compose_context", "forget"} <= tools
            found = await client.call_tool("search_context", {"query": "README information", "limit": 5})
            assert not found.is_error
            hits = found.structured_content["hits"]
            assert len(hits) == 1 and hits[0]["title"].endswith(title)
            got = await client.call_tool("get_context", {"id": hits[0]["id"]})
            assert got.structured_content["event_count"] == 1


async def test_bad_frames_get_json_rpc_errors_and_the_connection_survives(
    ws_url: str, machine_rt: Runtime
) -> None:
    token = await TokenStore(machine_rt.db).create("default")
    with anyio.fail_after(TIMEOUT_S):
        async with connect(ws_url, subprotocols=MCP, additional_headers=_bearer(token)) as ws:
            assert ws.subprotocol == "mcp"
            not_json = await _rpc(ws, "{not json")
            assert not_json["id"] is None and not_json["error"]["code"] == -32700
            not_rpc = await _rpc(ws, {"hello": "world"})
            assert not_rpc["id"] is None and not_rpc["error"]["code"] == -32600
            no_method = await _rpc(ws, {"jsonrpc": "2.0", "id": 7})
            assert no_method["id"] == 7 and no_method["error"]["code"] == -32600
            binary = await _rpc(ws, b'{"jsonrpc": "2.0", "id": 8, "method": "ping"}')
            assert binary["id"] is None and binary["error"]["code"] == -32600

            assert await _rpc(ws, {"jsonrpc": "2.0", "id": 1, "method": "ping"}) == {
                "jsonrpc": "2.0",
                "id": 1,
                "result": {},
            }
            init = await _rpc(ws, {"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": INITIALIZE})
            assert init["id"] == 2 and init["result"]["serverInfo"]["name"] == "hookline"
            await ws.send(orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).decode())
            assert (await _rpc(ws, "[1, 2")).get("error", {}).get("code") == -32700
            listed = await _rpc(ws, {"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
            names = {tool["name"] for tool in listed["result"]["tools"]}
            assert listed["id"] == 3 and {"search_context", "get_context", "summarize_context"} <= names
            assert len(names) == 8


async def test_pipelined_requests_all_get_their_answers(ws_url: str, machine_rt: Runtime) -> None:
    """More requests in flight than the bridge buffers: backpressure slows them, never drops one."""
    token = await TokenStore(machine_rt.db).create("default")
    with anyio.fail_after(TIMEOUT_S):
        async with connect(ws_url, subprotocols=MCP, additional_headers=_bearer(token)) as ws:
            for n in range(300):
                await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": n, "method": "ping"}).decode())
            replies = [orjson.loads(await ws.recv()) for _ in range(300)]
            assert sorted(reply["id"] for reply in replies) == list(range(300))
            assert all(reply["result"] == {} for reply in replies)


@pytest.mark.parametrize("headers", [{}, _bearer("hl_not-a-token"), {"Authorization": "Basic x"}])
async def test_a_missing_or_wrong_token_is_refused_before_the_upgrade(
    ws_url: str, headers: dict[str, str]
) -> None:
    with anyio.fail_after(TIMEOUT_S), pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url, subprotocols=MCP, additional_headers=headers):
            pytest.fail("the handshake was accepted")
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="hookline"'
    assert orjson.loads(response.body)["error"] == "unauthorized"


async def test_the_mcp_subprotocol_is_required_when_any_is_offered(ws_url: str, machine_rt: Runtime) -> None:
    token = await TokenStore(machine_rt.db).create("default")
    with anyio.fail_after(TIMEOUT_S):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                ws_url, subprotocols=[Subprotocol("graphql-ws")], additional_headers=_bearer(token)
            ):
                pytest.fail("the handshake was accepted")
        assert refused.value.response.status_code == 400
        async with connect(ws_url, additional_headers=_bearer(token)) as ws:
            assert ws.subprotocol is None
            assert (await _rpc(ws, {"jsonrpc": "2.0", "id": 1, "method": "ping"}))["result"] == {}


async def test_a_foreign_origin_is_refused_when_hosts_are_configured(
    tmp_root: Path, machine_rt: Runtime
) -> None:
    """With auth on, Host and Origin are checked once HOOKLINE_ALLOWED_HOSTS is set (see
    tests/e2e/test_edge_guard.py for the whole rule)."""
    settings = make_settings(
        tmp_root, machine_rt.redis_url, machine_rt.database_url, HOOKLINE_ALLOWED_HOSTS="127.0.0.1:*"
    )
    token = await TokenStore(machine_rt.db).create("default")
    with serve_app(settings) as url, anyio.fail_after(TIMEOUT_S), pytest.raises(InvalidStatus) as refused:
        async with connect(
            "ws" + url.removeprefix("http") + "/ws",
            subprotocols=MCP,
            additional_headers=_bearer(token),
            origin=Origin("https://evil.example"),
        ):
            pytest.fail("the handshake was accepted")
    response = refused.value.response
    assert response.status_code == 403 and orjson.loads(response.body)["error"] == "invalid_origin"


async def test_a_frame_over_the_limit_closes_with_1009(ws_url: str, machine_rt: Runtime) -> None:
    token = await TokenStore(machine_rt.db).create("default")
    with anyio.fail_after(TIMEOUT_S):
        async with connect(ws_url, subprotocols=MCP, additional_headers=_bearer(token)) as ws:
            params = {"padding": "x" * 1024 * 1024}
            await ws.send(
                orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": params}).decode()
            )
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_a_token_sees_only_its_own_tenant(ws_url: str, machine_rt: Runtime, tenant: str) -> None:
    await _seed(machine_rt, tenant)
    tokens = TokenStore(machine_rt.db)
    token_a = await tokens.create(tenant)
    token_b = await tokens.create("t_" + secrets.token_hex(4))
    with anyio.fail_after(TIMEOUT_S):
        async with Client(websocket_client(ws_url, _bearer(token_a))) as client_a:
            mine = await client_a.call_tool("search_context", {"query": "README"})
            hits = mine.structured_content["hits"]
            assert len(hits) == 1
        context_id = hits[0]["id"]
        async with Client(websocket_client(ws_url, _bearer(token_b))) as client_b:
            found = await client_b.call_tool("search_context", {"query": "README"})
            assert not found.is_error and found.structured_content["hits"] == []
            got = await client_b.call_tool("get_context", {"id": context_id})
            assert got.is_error and "NotFound" in got.content[0].text  # type: ignore[union-attr]
            recent = await client_b.call_tool("recent_events", {})
            assert recent.structured_content["events"] == []


async def test_with_auth_off_a_client_is_the_configured_tenant(
    tmp_root: Path, machine_rt: Runtime, tenant: str
) -> None:
    await _seed(machine_rt, tenant)
    settings = make_settings(
        tmp_root, machine_rt.redis_url, machine_rt.database_url, HOOKLINE_AUTH="none", HOOKLINE_TENANT=tenant
    )
    with serve_app(settings) as url, anyio.fail_after(TIMEOUT_S):
        async with Client(websocket_client("ws" + url.removeprefix("http") + "/ws")) as client:
            found = await client.call_tool("search_context", {"query": "README"})
            assert len(found.structured_content["hits"]) == 1

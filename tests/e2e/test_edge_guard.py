"""Host and Origin checks on a live server (uvicorn in a thread, real Redis and PostgreSQL): the
DNS-rebinding repro of issue 11, over streamable HTTP (/mcp) and WebSocket (/ws).

The rule itself, case by case, is in tests/mcp_server/test_hosts.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import orjson
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from mcp_server.ws_client import websocket_client
from memory.runtime import Runtime
from memory.tokens import TokenStore
from tests.conftest import make_settings
from tests.helpers import serve_app

TIMEOUT_S = 20
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "edge-guard-test", "version": "0"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.fixture
def local_url(tmp_root: Path, machine_rt: Runtime) -> Iterator[str]:
    """Auth off, bound to 127.0.0.2: the configuration the issue reproduced the attack on."""
    settings = make_settings(
        tmp_root,
        machine_rt.redis_url,
        machine_rt.database_url,
        HOOKLINE_AUTH="none",
        HOOKLINE_HOST="127.0.0.2",
    )
    with serve_app(settings, bind="127.0.0.2") as url:
        yield url


async def _initialize(url: str, headers: dict[str, str]) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.post(f"{url}/mcp", json=INITIALIZE, headers={**ACCEPT, **headers})


async def _handshake_status(
    url: str, host: str | None = None, origin: str | None = None, **headers: str
) -> int:
    """The HTTP status of a /ws handshake whose Host is ``host`` (the TCP connection goes to
    ``url``'s address whatever the Host says), or 101 when it was accepted."""
    parts = urlsplit(url)
    ws_url = f"ws://{host or parts.netloc}/ws"
    options: dict[str, Any] = {"host": parts.hostname, "port": parts.port, "proxy": None}
    try:
        async with connect(
            ws_url,
            subprotocols=[Subprotocol("mcp")],
            additional_headers=headers,
            origin=None if origin is None else Origin(origin),
            **options,
        ):
            return 101
    except InvalidStatus as refused:
        body = orjson.loads(refused.response.body) if refused.response.body else {}
        assert refused.response.status_code in (401, 403, 421) and "error" in body
        return refused.response.status_code


async def test_with_auth_off_a_foreign_host_or_origin_is_refused(local_url: str) -> None:
    """The repro: ``initialize`` with ``Host: evil.example`` and a foreign Origin was answered 200."""
    port = urlsplit(local_url).port
    with anyio.fail_after(TIMEOUT_S):
        evil = await _initialize(local_url, {"Host": f"evil.example:{port}", "Origin": "http://evil.example"})
        assert evil.status_code == 421
        assert evil.json()["error"] == "invalid_host" and "evil.example" in evil.json()["detail"]
        foreign = await _initialize(local_url, {"Origin": f"http://evil.example:{port}"})
        assert foreign.status_code == 403 and foreign.json()["error"] == "invalid_origin"
        for host in (f"127.0.0.2:{port}", f"localhost:{port}", f"127.0.0.1:{port}"):
            same = await _initialize(local_url, {"Host": host, "Origin": f"http://{host}"})
            assert same.status_code == 200, same.text
        assert await _handshake_status(local_url, host=f"evil.example:{port}") == 421
        assert await _handshake_status(local_url, origin="https://evil.example") == 403
        assert await _handshake_status(local_url, origin=f"http://127.0.0.2:{port}") == 101


async def test_with_auth_off_clients_on_the_bind_address_are_served(local_url: str) -> None:
    with anyio.fail_after(TIMEOUT_S):
        async with (
            httpx2.AsyncClient() as http,
            Client(streamable_http_client(f"{local_url}/mcp", http_client=http)) as client,
        ):
            assert not (await client.call_tool("recent_events", {})).is_error
        ws_url = "ws" + local_url.removeprefix("http") + "/ws"
        async with Client(websocket_client(ws_url)) as client:
            assert not (await client.call_tool("recent_events", {})).is_error


async def test_with_auth_on_the_allowed_hosts_setting_decides(tmp_root: Path, machine_rt: Runtime) -> None:
    settings = make_settings(
        tmp_root,
        machine_rt.redis_url,
        machine_rt.database_url,
        HOOKLINE_ALLOWED_HOSTS="hookline.test:*",
        HOOKLINE_ALLOWED_ORIGINS="https://console.example.com",
    )
    token = await TokenStore(machine_rt.db).create("default")
    bearer = {"Authorization": f"Bearer {token}"}
    with serve_app(settings) as url, anyio.fail_after(TIMEOUT_S):
        port = urlsplit(url).port
        assert (await _initialize(url, bearer)).status_code == 421  # 127.0.0.1 is not in the list
        served = f"hookline.test:{port}"
        assert (await _initialize(url, {**bearer, "Host": served})).status_code == 200
        for origin in ("https://hookline.test", "https://console.example.com"):
            answer = await _initialize(url, {**bearer, "Host": served, "Origin": origin})
            assert answer.status_code == 200, origin
        foreign = await _initialize(url, {**bearer, "Host": served, "Origin": "https://evil.example"})
        assert foreign.status_code == 403
        assert await _handshake_status(url, **bearer) == 421
        assert await _handshake_status(url, host=served, **bearer) == 101
        assert await _handshake_status(url, host=served, origin="https://evil.example", **bearer) == 403


async def test_with_auth_on_and_no_lists_the_token_alone_decides(tmp_root: Path, machine_rt: Runtime) -> None:
    settings = make_settings(tmp_root, machine_rt.redis_url, machine_rt.database_url)
    token = await TokenStore(machine_rt.db).create("default")
    with serve_app(settings) as url, anyio.fail_after(TIMEOUT_S):
        headers = {"Host": "anything.example", "Origin": "https://anywhere.example"}
        assert (await _initialize(url, headers)).status_code == 401
        answer = await _initialize(url, {**headers, "Authorization": f"Bearer {token}"})
        assert answer.status_code == 200

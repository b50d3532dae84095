"""Live updates end to end: a subscriber of ``hookline://context/{id}`` hears a webhook change it.

One ``hookline serve`` subprocess on its embedded defaults takes the webhooks and runs the workers.
Clients subscribe over streamable HTTP and WebSocket (to that process) and over stdio (a
``hookline stdio`` subprocess sharing its embedded Redis, so the update crosses processes through
Redis pub/sub), each as a legacy client (``resources/subscribe``) and as a modern one
(``subscriptions/listen``). The notification must arrive within a second of the POST.
"""

from __future__ import annotations

import copy
import itertools
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import orjson
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_server.ws_client import websocket_client
from memory.ids import context_id
from tests.e2e.serve_process import HOOKLINE, ServeProcess, hookline_env, run_cli, serve_process
from tests.fixtures.github_examples import load_fixture
from tests.helpers import github_headers, wait_until

pytestmark = pytest.mark.e2e

SECRET = "live-updates-secret"
REPO = "Codertocat/Hello-World"
DEADLINE_S = 1.0  # from the webhook's POST to the notification
SETTLE_S = 30.0  # a fresh context becoming readable (includes a stdio process starting)
_numbers = itertools.count(500)


@dataclass(frozen=True)
class Served:
    process: ServeProcess
    token: str


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with tempfile.TemporaryDirectory(prefix="hllive", dir="/tmp") as data_dir:
        env = hookline_env(Path(data_dir))
        (secret_file := Path(data_dir) / "secret").write_text(SECRET + "\n")
        run_cli(env, "source", "add", "github", "--provider", "github", "--secret-file", str(secret_file))
        token = run_cli(env, "token", "create").strip().splitlines()[-1]
        with serve_process(env) as process:
            yield Served(process, token)


def _pull_request(number: int, action: str) -> dict[str, Any]:
    payload = copy.deepcopy(load_fixture("pull_request_opened"))
    payload["number"] = payload["pull_request"]["number"] = number
    payload["pull_request"]["title"] = f"Live update {number}"
    payload["action"] = action
    if action == "closed":  # later than the fixture's "opened", so it decides the context's state
        payload["pull_request"].update(state="closed", updated_at="2030-01-01T00:00:00Z")
    return payload


async def _post(url: str, number: int, action: str) -> None:
    body = orjson.dumps(_pull_request(number, action))
    headers = github_headers(body, SECRET, "pull_request", f"live-{number}-{action}")
    async with httpx2.AsyncClient(base_url=url) as http:
        response = await http.post("/hooks/github", content=body, headers=headers)
    assert response.status_code == 202, response.text


def _connect(served: Served, transport: str, mode: str, handler: Any) -> AbstractAsyncContextManager[Client]:
    bearer = {"Authorization": f"Bearer {served.token}"}
    options: dict[str, Any] = {"mode": "legacy" if mode == "legacy" else "auto", "message_handler": handler}
    if transport == "stdio":
        return Client(
            StdioServerParameters(command=HOOKLINE, args=["stdio"], env=served.process.env), **options
        )
    if transport == "websocket":
        url = "ws" + served.process.url.removeprefix("http") + "/ws"
        return Client(websocket_client(url, bearer), **options)
    return _http_client(f"{served.process.url}/mcp", bearer, options)


@asynccontextmanager
async def _http_client(url: str, headers: dict[str, str], options: dict[str, Any]) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http), **options) as client,
    ):
        yield client


async def _readable(client: Client, ctx_id: str) -> None:
    async def found() -> bool:
        return not (await client.call_tool("get_context", {"id": ctx_id})).is_error

    await wait_until(found, within=SETTLE_S)


@pytest.mark.parametrize("mode", ["legacy", "modern"])
@pytest.mark.parametrize("transport", ["http", "stdio", "websocket"])
async def test_a_subscriber_hears_a_webhook_change_its_context_within_a_second(
    served: Served, transport: str, mode: str
) -> None:
    number = next(_numbers)
    ctx_id = context_id("default", f"github:{REPO}#pr/{number}")
    uri = f"hookline://context/{ctx_id}"
    await _post(served.process.url, number, "opened")
    heard: list[str] = []
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            heard.append(str(message.params.uri))
            arrived.set()

    async with _connect(served, transport, mode, on_message) as client:
        await _readable(client, ctx_id)
        if mode == "legacy":
            with pytest.warns(MCPDeprecationWarning):
                await client.subscribe_resource(uri)
            with anyio.fail_after(DEADLINE_S):
                await _post(served.process.url, number, "closed")
                await arrived.wait()
            assert heard == [uri]
        else:
            assert client.protocol_version in MODERN_PROTOCOL_VERSIONS
            async with client.listen(resource_subscriptions=[uri]) as subscription:
                with anyio.fail_after(DEADLINE_S):
                    await _post(served.process.url, number, "closed")
                    event = await anext(subscription)
            assert event == ResourceUpdated(uri)
        closed = (await client.call_tool("get_context", {"id": ctx_id})).structured_content
        assert closed["state"] == "closed"

"""`hookline serve` as a subprocess on its embedded defaults, driven by real clients.

20 signed GitHub deliveries of real shape go in over HTTP; an MCP client over streamable HTTP and
another over stdio (`hookline stdio`, sharing the embedded stores) find and read them.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import orjson
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.context import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.serve_process import HOOKLINE, hookline_env, run_cli, serve_process
from tests.fixtures.github_examples import load_fixture
from tests.helpers import github_headers, wait_until

SECRET = "e2e-secret"


@dataclass
class Server:
    url: str
    env: dict[str, str]
    token: str
    log: Path
    posted: bool = False  # the deliveries went in (once per module: a second time they are duplicates)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="hle2e", dir="/tmp") as data_dir:
        env = hookline_env(Path(data_dir))
        (secret_file := Path(data_dir) / "secret").write_text(SECRET + "\n")
        run_cli(env, "source", "add", "github", "--provider", "github", "--secret-file", str(secret_file))
        token = run_cli(env, "token", "create").strip().splitlines()[-1]
        with serve_process(env) as process:
            yield Server(process.url, process.env, token, process.log)
        assert '"worker.stop"' in process.log.read_text()  # a graceful stop, not a kill


def _deliveries() -> list[tuple[str, dict[str, Any]]]:
    """20 deliveries: PRs opened and closed, comments, pushes and workflow runs."""
    out: list[tuple[str, dict[str, Any]]] = []
    for n in range(4):
        opened = copy.deepcopy(load_fixture("pull_request_opened"))
        opened["pull_request"]["number"] = opened["number"] = 100 + n
        opened["pull_request"]["title"] = f"Teach the flux capacitor trick {n}"
        closed = copy.deepcopy(opened)
        closed["action"], closed["pull_request"]["state"] = "closed", "closed"
        comment = copy.deepcopy(load_fixture("issue_comment_created"))
        comment["issue"]["number"] = 100 + n
        comment["issue"]["pull_request"] = {"url": "https://api.github.com/pulls/x"}
        comment["comment"]["body"] = f"Looks good, ship capacitor {n}"
        push = copy.deepcopy(load_fixture("push"))
        push["ref"] = f"refs/heads/feature-{n}"
        run = copy.deepcopy(load_fixture("workflow_run_completed"))
        run["workflow_run"]["id"] = 9000 + n
        out += [
            ("pull_request", opened),
            ("pull_request", closed),
            ("issue_comment", comment),
            ("push", push),
        ]
        out.append(("workflow_run", run))
    return out


async def _post_all(server: Server) -> list[str]:
    assert not server.posted, "the deliveries went in already"
    server.posted = True
    ids = []
    async with httpx2.AsyncClient(base_url=server.url) as http:
        for i, (event, payload) in enumerate(_deliveries()):
            body = orjson.dumps(payload)
            response = await http.post(
                "/hooks/github", content=body, headers=github_headers(body, SECRET, event, f"e2e-{i}")
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        # The same delivery again: accepted as a duplicate, not applied twice.
        event, payload = _deliveries()[0]
        body = orjson.dumps(payload)
        again = await http.post(
            "/hooks/github", content=body, headers=github_headers(body, SECRET, event, "e2e-0")
        )
        assert again.status_code == 200 and again.json() == {"id": "github:e2e-0", "duplicate": True}
    return ids


async def _check_memory(client: Client) -> None:
    async def all_applied() -> bool:
        result = await client.call_tool("recent_events", {"limit": 100})
        return len(result.structured_content["events"]) == 20

    await wait_until(all_applied, within=30)
    found = (
        await client.call_tool("search_context", {"query": "flux capacitor", "limit": 10})
    ).structured_content
    titles = [hit["title"] for hit in found["hits"]]
    assert len(titles) == 4 and all("flux capacitor" in title for title in titles)
    pr = (await client.call_tool("get_context", {"id": found["hits"][0]["id"]})).structured_content
    # opened + closed + one comment, the redelivered "opened" not counted twice
    assert pr["event_count"] == 3 and len(pr["events"]) == 3
    assert pr["state"] == "closed"


async def test_http_mcp_client_finds_and_reads_what_webhooks_sent(server: Server) -> None:
    await _post_all(server)
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {server.token}"})
    async with http, Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client:
        await _check_memory(client)


async def test_stdio_mcp_client_shares_the_embedded_stores(server: Server) -> None:
    params = StdioServerParameters(command=HOOKLINE, args=["stdio"], env=server.env)
    async with Client(params) as client:
        await _check_memory(client)


async def test_mcp_over_http_refuses_a_missing_or_wrong_token(server: Server) -> None:
    async with httpx2.AsyncClient(base_url=server.url) as http:
        request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        assert (await http.post("/mcp", json=request)).status_code == 401
        wrong = {"Authorization": "Bearer hl_not-a-token"}
        response = await http.post("/mcp", json=request, headers=wrong)
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_cli_status_reports_what_was_applied(server: Server) -> None:
    status = orjson.loads(run_cli(server.env, "status", "--json"))
    assert {"groups", "dlq", "events", "tiers"} <= set(status)
    assert status["groups"]["context"]["pending"] >= 0


@pytest.mark.parametrize("transport", ["http", "http-legacy", "stdio"])
async def test_the_clients_model_summarizes_a_context_over_each_transport(
    server: Server, transport: str
) -> None:
    """MCP sampling over the wire: modern streamable HTTP (input-required round trip), legacy HTTP
    and stdio (``sampling/createMessage`` mid-call). The kept summary is what search then shows."""
    asked: list[str] = []
    reply = f"Sampled over {transport}: a pull request about the flux capacitor."

    async def model(
        _: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        content = params.messages[0].content
        asked.append(content.text if isinstance(content, types.TextContent) else "")
        text = types.TextContent(type="text", text=reply)
        return types.CreateMessageResult(role="assistant", content=text, model="e2e-model")

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {server.token}"})
    if transport == "stdio":
        target: Any = StdioServerParameters(command=HOOKLINE, args=["stdio"], env=server.env)
    else:
        target = streamable_http_client(f"{server.url}/mcp", http_client=http)
    mode = "auto" if transport == "http" else "legacy"
    if not server.posted:  # run on its own
        await _post_all(server)
    async with http, Client(target, mode=mode, sampling_callback=model) as client:
        await _check_memory(client)  # also waits for every delivery to be applied
        found = await client.call_tool("search_context", {"query": "flux capacitor 3", "limit": 1})
        hit = found.structured_content["hits"][0]  # type: ignore[index]
        out = (await client.call_tool("summarize_context", {"id": hit["id"]})).structured_content
        assert out is not None and out["kept"] is True and out["summary"] == reply
        assert len(asked) == 1 and hit["title"] in asked[0]
        again = await client.call_tool("search_context", {"query": "flux capacitor 3", "limit": 1})
        assert again.structured_content["hits"][0]["summary"] == reply  # type: ignore[index]

"""``serve --roles``: ``api`` is webhook intake plus MCP, and each half can run in a process of its
own. A delivery posted to the intake process is read over MCP from another, through the stores."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx2
import orjson
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_server.app import expand_roles
from memory.runtime import Runtime
from memory.sources import SourceStore
from tests.conftest import make_settings
from tests.e2e.serve_process import HOOKLINE, hookline_env
from tests.fixtures.github_examples import load_fixture
from tests.helpers import github_headers, serve_app, wait_until

SECRET = "roles-secret"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (("api",), {"intake", "mcp"}),
        (("api", "worker", "lifecycle"), {"intake", "mcp", "worker", "lifecycle"}),
        (("intake",), {"intake"}),
        (("mcp", "worker"), {"mcp", "worker"}),
    ],
)
def test_api_is_intake_and_mcp(given: tuple[str, ...], expected: set[str]) -> None:
    assert expand_roles(given) == expected


async def test_intake_and_mcp_in_processes_of_their_own(tmp_root: Path, machine_rt: Runtime) -> None:
    await SourceStore(machine_rt.db).add("gh", "github", [SECRET], "default")
    settings = make_settings(
        tmp_root,
        machine_rt.redis_url,
        machine_rt.database_url,
        HOOKLINE_EMBEDDER="none",
        HOOKLINE_AUTH="none",
    )
    payload = load_fixture("issues_opened")
    body = orjson.dumps(payload)
    with (
        serve_app(settings, roles=("intake", "worker")) as intake_url,
        serve_app(settings, roles=("mcp",)) as mcp_url,
    ):
        async with httpx2.AsyncClient() as http:
            # Each process answers only its half.
            refused = await http.post(
                f"{mcp_url}/hooks/gh", content=body, headers=github_headers(body, SECRET, "issues", "d-0")
            )
            assert refused.status_code == 404
            assert (
                await http.post(f"{intake_url}/mcp", json=INITIALIZE, headers=MCP_HEADERS)
            ).status_code == 404
            posted = await http.post(
                f"{intake_url}/hooks/gh", content=body, headers=github_headers(body, SECRET, "issues", "d-1")
            )
            assert posted.status_code == 202
            async with Client(streamable_http_client(f"{mcp_url}/mcp", http_client=http)) as client:

                async def readable() -> bool:
                    found = (
                        await client.call_tool("search_context", {"query": "", "limit": 5})
                    ).structured_content
                    return bool(found and found["hits"])

                await wait_until(readable, within=30)
                hit = (await client.call_tool("search_context", {"query": "", "limit": 5})).structured_content
                ctx = (await client.call_tool("get_context", {"id": hit["hits"][0]["id"]})).structured_content
    assert ctx is not None and [e["id"] for e in ctx["events"]] == ["gh:d-1"]
    assert str(payload["issue"]["number"]) in ctx["title"]


def test_the_cli_refuses_an_unknown_role(tmp_path: Path) -> None:
    argv = [HOOKLINE, "serve", "--roles", "intake,frontend"]
    done = subprocess.run(argv, env=hookline_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--roles takes a subset of api,intake,mcp,worker,lifecycle" in done.stderr

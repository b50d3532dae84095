"""The official MCP Inspector CLI (npm @modelcontextprotocol/inspector, under Node 22) against Hookline.

Over stdio it launches `hookline stdio` itself; over streamable HTTP it talks to a `hookline serve`
subprocess with a bearer token. Both run on embedded stores in temp dirs. Node 22 and the Inspector
come from scripts/node22, which installs them into .tools/node22 when they are missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.serve_process import HOOKLINE, ServeProcess, hookline_env, run_cli, serve_process

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / ".tools/node22/node_modules"
INSPECTOR = NODE_MODULES / "@modelcontextprotocol/inspector/clients/launcher/build/index.js"
OUR_TOOLS = {"search_context", "get_context", "recent_events"}

Inspect = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def inspect() -> Iterator[Inspect]:
    """Run `inspector --cli ARGS --format json` and return its JSON result."""
    # Idempotent: installs Node 22 and the Inspector only when they are missing, then prints node's path.
    installed = subprocess.run([str(REPO / "scripts/node22")], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    node = installed.stdout.strip().splitlines()[-1]
    # The Inspector keeps its state under ~/.mcp-inspector: a HOME of its own, not the user's.
    with tempfile.TemporaryDirectory(prefix="hlinsp", dir="/tmp") as home:

        def run(*args: str) -> dict[str, Any]:
            # --stored-auth-only: fail at once rather than start an interactive OAuth login.
            command = [node, str(INSPECTOR), "--cli", *args, "--format", "json", "--stored-auth-only"]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home}
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"inspector exited {done.returncode}: {done.stderr[-3000:]}"
            return dict(json.loads(done.stdout)["result"])

        yield run


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ServeProcess, str]]:
    """`hookline serve` with bearer-token auth (the default), and a token for it."""
    with tempfile.TemporaryDirectory(prefix="hlinsp", dir="/tmp") as data_dir:
        env = hookline_env(Path(data_dir))
        token = run_cli(env, "token", "create").strip().splitlines()[-1]
        with serve_process(env) as process:
            yield process, token


def _tool_names(result: dict[str, Any]) -> set[str]:
    return {tool["name"] for tool in result["tools"]}


def test_inspector_lists_our_tools_over_stdio(inspect: Inspect) -> None:
    # Short path: the embedded stores' unix sockets live under the data dir.
    with tempfile.TemporaryDirectory(prefix="hlinsp", dir="/tmp") as data_dir:
        # The Inspector passes the stdio server only a minimal environment (HOME, PATH ...) plus -e.
        result = inspect(HOOKLINE, "stdio", "-e", f"HOOKLINE_DATA_DIR={data_dir}", "--method", "tools/list")
    assert _tool_names(result) >= OUR_TOOLS


def test_inspector_lists_our_tools_over_http(inspect: Inspect, server: tuple[ServeProcess, str]) -> None:
    process, token = server
    result = inspect(
        f"{process.url}/mcp", "--header", f"Authorization: Bearer {token}", "--method", "tools/list"
    )
    assert _tool_names(result) >= OUR_TOOLS


def test_inspector_calls_search_context_over_http(inspect: Inspect, server: tuple[ServeProcess, str]) -> None:
    process, token = server
    result = inspect(
        f"{process.url}/mcp",
        "--header",
        f"Authorization: Bearer {token}",
        "--method",
        "tools/call",
        "--tool-name",
        "search_context",
        "--tool-args-json",
        '{"query": "anything"}',
    )
    assert result["isError"] is False, result
    assert result["structuredContent"]["query"] == "anything"
    assert isinstance(result["structuredContent"]["hits"], list)

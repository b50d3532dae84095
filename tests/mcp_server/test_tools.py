"""The MCP server through the SDK's in-process client, over real Redis and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from mcp import Client

from mcp_server.server import build_mcp
from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event


@asynccontextmanager
async def connect(rt: Runtime, tenant: str) -> AsyncIterator[tuple[Client, MemoryService]]:
    """Opened inside each test: the client's task group must not span pytest-asyncio's tasks."""
    service = MemoryService(rt)
    async with Client(build_mcp(service, tenant)) as connected:
        yield connected, service


async def _seed(service: MemoryService, tenant: str) -> None:
    await service.apply_events(
        [
            make_event(tenant, "pull_request", load_fixture("pull_request_opened"), "gh:1"),
            make_event(tenant, "push", load_fixture("push"), "gh:2"),
            make_event(tenant, "issues", load_fixture("issues_opened"), "gh:3"),
        ]
    )


async def test_tools_are_listed_with_schemas_and_annotations(machine_rt: Runtime, tenant: str) -> None:
    async with connect(machine_rt, tenant) as (connected, _):
        tools = {tool.name: tool for tool in (await connected.list_tools()).tools}
        reads = {"search_context", "get_context", "compose_context", "recent_events", "pipeline_status"}
        assert set(tools) == reads | {"remember", "forget", "summarize_context"}
        for tool in tools.values():
            assert tool.description and tool.output_schema
            assert tool.annotations is not None
            assert tool.annotations.read_only_hint is (tool.name in reads)
        assert "query" in tools["search_context"].input_schema["required"]


async def test_search_then_get_then_read_the_resource(machine_rt: Runtime, tenant: str) -> None:
    async with connect(machine_rt, tenant) as (connected, service):
        await _seed(service, tenant)
        title = load_fixture("issues_opened")["issue"]["title"]
        found = await connected.call_tool("search_context", {"query": title, "limit": 5})
        assert not found.is_error
        hits = found.structured_content["hits"]
        assert hits and hits[0]["title"].endswith(title)
        assert {"id", "title", "source", "tier", "score", "score_breakdown", "summary"} <= set(hits[0])

        got = await connected.call_tool("get_context", {"id": hits[0]["id"]})
        assert got.structured_content["id"] == hits[0]["id"] and got.structured_content["events"]

        resource = await connected.read_resource(f"hookline://context/{hits[0]['id']}")
        assert hits[0]["id"] in resource.contents[0].text


async def test_recent_events_pages_with_a_cursor(machine_rt: Runtime, tenant: str) -> None:
    async with connect(machine_rt, tenant) as (connected, service):
        await _seed(service, tenant)
        first = (await connected.call_tool("recent_events", {"limit": 2})).structured_content
        assert len(first["events"]) == 2 and first["next_cursor"]
        assert {"id", "context_id", "source", "event_type", "received_at"} <= set(first["events"][0])
        rest = (
            await connected.call_tool("recent_events", {"limit": 2, "cursor": first["next_cursor"]})
        ).structured_content
        assert len(rest["events"]) == 1 and rest["next_cursor"] is None
        seen = [e["id"] for e in first["events"] + rest["events"]]
        assert sorted(seen) == ["gh:1", "gh:2", "gh:3"]


@pytest.mark.parametrize(
    ("tool", "arguments", "needle"),
    [
        ("get_context", {"id": "ctx_" + "0" * 20}, "NotFound"),
        ("get_context", {"id": "ctx_missing"}, "pattern"),
        ("search_context", {"query": "x", "since": "yesterday"}, "ISO-8601"),
        ("search_context", {"query": "x", "since": "2026-01-01T00:00:00"}, "timezone"),
        ("search_context", {"query": "x", "limit": 0}, "limit"),
        ("recent_events", {"cursor": "garbage"}, "cursor"),
    ],
)
async def test_failures_come_back_as_readable_tool_errors(
    machine_rt: Runtime, tenant: str, tool: str, arguments: dict[str, object], needle: str
) -> None:
    async with connect(machine_rt, tenant) as (connected, _):
        result = await connected.call_tool(tool, arguments)
        assert result.is_error and needle in result.content[0].text


async def test_another_tenants_context_is_invisible(machine_rt: Runtime, tenant: str) -> None:
    service = MemoryService(machine_rt)
    await _seed(service, tenant)
    async with Client(build_mcp(service, tenant)) as mine:
        ctx_id = (await mine.call_tool("search_context", {"query": ""})).structured_content["hits"][0]["id"]
    async with Client(build_mcp(service, "intruder")) as theirs:
        assert (await theirs.call_tool("search_context", {"query": ""})).structured_content["hits"] == []
        assert (await theirs.call_tool("get_context", {"id": ctx_id})).is_error


async def test_compose_context_fits_the_budget_and_cites_ids(machine_rt: Runtime, tenant: str) -> None:
    async with connect(machine_rt, tenant) as (connected, service):
        await _seed(service, tenant)
        result = await connected.call_tool("compose_context", {"query": "issue", "max_tokens": 300})
        assert not result.is_error
        composed = result.structured_content
        assert composed["tokens"] <= 300 and composed["pieces"]
        assert all(f"[{piece['context_id']}]" in composed["text"] for piece in composed["pieces"])
        refused = await connected.call_tool("compose_context", {"query": "issue", "max_tokens": 5})
        assert refused.is_error


async def test_completion_offers_this_tenants_sources_and_context_ids(
    machine_rt: Runtime, tenant: str
) -> None:
    from mcp_types import PromptReference, ResourceTemplateReference

    from memory.sources import SourceStore

    await SourceStore(machine_rt.db).add("gh-main", "github", ["s"], tenant)
    await SourceStore(machine_rt.db).add("gh-other-tenant", "github", ["s"], "someone-else")
    async with connect(machine_rt, tenant) as (connected, service):
        await _seed(service, tenant)
        prompt = PromptReference(type="ref/prompt", name="summarize_activity")
        sources = await connected.complete(prompt, {"name": "source", "value": "gh"})
        assert sources.completion.values == ["gh-main"]
        template = ResourceTemplateReference(type="ref/resource", uri="hookline://context/{id}")
        ids = await connected.complete(template, {"name": "id", "value": "ctx_"})
        assert len(ids.completion.values) == 3 and all(v.startswith("ctx_") for v in ids.completion.values)


async def test_pipeline_status_counts_only_the_callers_contexts(machine_rt: Runtime, tenant: str) -> None:
    service = MemoryService(machine_rt)
    await _seed(service, "another-tenant")
    async with connect(machine_rt, tenant) as (connected, mine):
        await _seed(mine, tenant)
        status = (await connected.call_tool("pipeline_status", {})).structured_content
    assert status["tiers"]["hot"]["contexts"] == 3  # not 6: the other tenant's stay invisible

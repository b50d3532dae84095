"""``summarize_context``: the client's own model summarizes a context over MCP sampling, on modern
(input-required round trip) and legacy (``sampling/createMessage`` mid-call) connections, through the
SDK's in-process client, over real Redis and PostgreSQL. What it keeps is what search shows, and
the archiver keeps it while it covers every event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.shared.exceptions import MCPError

from mcp_server.server import build_mcp
from memory.lifecycle import Lifecycle
from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event

HOUR = timedelta(hours=1)


class Model:
    """The client's model: records what it was asked and answers ``reply`` (or runs ``meanwhile``
    first, to change the world while it "thinks")."""

    def __init__(self, reply: str, meanwhile: Any = None) -> None:
        self.reply = reply
        self.meanwhile = meanwhile
        self.asked: list[types.CreateMessageRequestParams] = []

    async def __call__(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.asked.append(params)
        if self.meanwhile is not None:
            await self.meanwhile()
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=self.reply), model="client-model-1"
        )

    @property
    def prompt(self) -> str:
        content = self.asked[-1].messages[0].content
        assert isinstance(content, types.TextContent)
        return content.text


async def _seed_pr(service: MemoryService, tenant: str) -> str:
    await service.apply_events(
        [
            make_event(tenant, "pull_request", load_fixture("pull_request_opened"), "gh:1"),
            make_event(tenant, "issues", load_fixture("issues_opened"), "gh:2"),
        ]
    )
    recent = await service.recent_events(tenant, limit=5)
    return next(e.context_id for e in recent if e.id == "gh:1")


async def _row(rt: Runtime, tenant: str, ctx_id: str) -> tuple[str, str | None, int | None]:
    async with rt.db.connection() as conn:
        cursor = await conn.execute(
            "SELECT summary, summary_by, summary_events FROM contexts WHERE tenant = %s AND id = %s",
            (tenant, ctx_id),
        )
        row = await cursor.fetchone()
    assert row is not None
    return row[0], row[1], row[2]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_clients_model_summarizes_and_search_shows_it(
    machine_rt: Runtime, tenant: str, mode: str
) -> None:
    service = MemoryService(machine_rt)
    ctx_id = await _seed_pr(service, tenant)
    title = load_fixture("pull_request_opened")["pull_request"]["title"]
    model = Model("A pull request that updates the README; opened, awaiting review.")
    async with Client(build_mcp(service, tenant), mode=mode, sampling_callback=model) as client:  # type: ignore[arg-type]
        result = await client.call_tool("summarize_context", {"id": ctx_id})
        assert not result.is_error, result.content
        out = result.structured_content
        assert out is not None
        assert out["kept"] is True and out["model"] == "client-model-1" and out["events_covered"] == 1
        assert out["summary"] == model.reply
        # The model was shown the context itself, with the shared summarization prompt.
        assert len(model.asked) == 1 and title in model.prompt and "Events, oldest first" in model.prompt
        assert model.asked[0].max_tokens > 0

        found = await client.call_tool("search_context", {"query": title, "limit": 3})
        hit = found.structured_content["hits"][0]  # type: ignore[index]
        assert hit["id"] == ctx_id and hit["summary"] == model.reply
    assert await _row(machine_rt, tenant, ctx_id) == (model.reply, "sampling", 1)


async def test_a_client_without_sampling_gets_a_clear_error_and_nothing_changes(
    machine_rt: Runtime, tenant: str
) -> None:
    service = MemoryService(machine_rt)
    ctx_id = await _seed_pr(service, tenant)
    before = await _row(machine_rt, tenant, ctx_id)
    for mode in ("auto", "legacy"):
        async with Client(build_mcp(service, tenant), mode=mode) as client:  # type: ignore[arg-type]
            # A JSON-RPC error naming the missing capability (the SDK's MISSING_REQUIRED_CLIENT_CAPABILITY).
            with pytest.raises(MCPError, match="sampling capability"):
                await client.call_tool("summarize_context", {"id": ctx_id})
    assert await _row(machine_rt, tenant, ctx_id) == before


async def test_an_event_that_arrives_while_the_model_thinks_makes_the_summary_stale(
    machine_rt: Runtime, tenant: str
) -> None:
    service = MemoryService(machine_rt)
    ctx_id = await _seed_pr(service, tenant)

    async def review_arrives() -> None:
        review = make_event(tenant, "pull_request", load_fixture("pull_request_closed"), "gh:3")
        await service.apply_events([review])

    model = Model("A stale summary: it has not seen the close.", meanwhile=review_arrives)
    async with Client(build_mcp(service, tenant), mode="legacy", sampling_callback=model) as client:
        out = (await client.call_tool("summarize_context", {"id": ctx_id})).structured_content
    assert out is not None and out["kept"] is False and out["events_covered"] == 1
    summary, by, _ = await _row(machine_rt, tenant, ctx_id)
    assert by is None and summary != model.reply


async def test_another_tenants_context_cannot_be_summarized(machine_rt: Runtime, tenant: str) -> None:
    service = MemoryService(machine_rt)
    ctx_id = await _seed_pr(service, tenant)
    before = await _row(machine_rt, tenant, ctx_id)
    model = Model("An intruder's summary.")
    async with Client(build_mcp(service, "t_intruder"), sampling_callback=model) as client:
        result = await client.call_tool("summarize_context", {"id": ctx_id})
    assert result.is_error and not model.asked  # refused before the model saw anything
    assert await _row(machine_rt, tenant, ctx_id) == before


@pytest.mark.parametrize(
    ("reply", "expect"),
    [("   ", "without text"), ("x" * 50_000, "cut")],
)
async def test_hostile_answers_are_refused_or_cut(
    machine_rt: Runtime, tenant: str, reply: str, expect: str
) -> None:
    service = MemoryService(machine_rt)
    ctx_id = await _seed_pr(service, tenant)
    before = await _row(machine_rt, tenant, ctx_id)
    async with Client(build_mcp(service, tenant), sampling_callback=Model(reply)) as client:
        result = await client.call_tool("summarize_context", {"id": ctx_id})
    summary, by, _ = await _row(machine_rt, tenant, ctx_id)
    if expect == "without text":
        assert result.is_error and (summary, by) == before[:2]
    else:
        assert not result.is_error and by == "sampling"
        assert len(summary) == 4_000 and summary.endswith("…")


async def test_the_archiver_keeps_a_covering_sampled_summary_and_a_new_event_replaces_it(
    rt: Runtime, tenant: str
) -> None:
    service = MemoryService(rt)
    ctx_id = await _seed_pr(service, tenant)
    model = Model("Sampled: README pull request, open.")
    async with Client(build_mcp(service, tenant), sampling_callback=model) as client:
        assert (await client.call_tool("summarize_context", {"id": ctx_id})).structured_content["kept"]  # type: ignore[index]
    now = datetime.now(UTC)
    lifecycle = Lifecycle(rt)
    await lifecycle.run_pass(now + 10 * HOUR)  # hot → warm
    report = await lifecycle.run_pass(now + 200 * HOUR)  # warm → cold: no summary is made
    assert report.to_cold >= 1
    assert await _row(rt, tenant, ctx_id) == (model.reply, "sampling", 1)
    cold = await service.get_context(tenant, ctx_id)
    assert cold.head.tier == "cold" and cold.head.summary == model.reply

    # A new event: the sampled summary no longer covers the context, the newest line replaces it.
    closed = make_event(tenant, "pull_request", load_fixture("pull_request_closed"), "gh:3")
    await service.apply_events([closed])
    summary, by, events = await _row(rt, tenant, ctx_id)
    assert (by, events) == (None, None) and summary != model.reply

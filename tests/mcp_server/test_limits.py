"""Per-token rate limits of the tools that write or cost: forget, remember, restore and
summarize_context (``HOOKLINE_TOOL_RATE_LIMITS``), kept in real Redis so every process shares them."""

from __future__ import annotations

import dataclasses

import pytest
from mcp import Client

from mcp_server.limits import RateLimited, ToolLimits
from mcp_server.server import build_mcp
from memory.errors import InvalidArgument
from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event
from tests.mcp_server.test_sampling import Model

TOKEN_A = "tok_" + "a" * 16
TOKEN_B = "tok_" + "b" * 16


def _limited(rt: Runtime, **limits: tuple[int, int]) -> Runtime:
    settings = rt.settings.with_overrides(
        tool_rate_limits=tuple((tool, calls, per) for tool, (calls, per) in limits.items())
    )
    return dataclasses.replace(rt, settings=settings)


async def test_each_principal_and_tenant_has_its_own_budget(machine_rt: Runtime, tenant: str) -> None:
    limits = ToolLimits(machine_rt.redis, [("forget", 2, 60)])
    for _ in range(2):
        await limits.spend(tenant, TOKEN_A, "forget")
    with pytest.raises(RateLimited, match="2 calls per 60 s") as refused:
        await limits.spend(tenant, TOKEN_A, "forget")
    assert 0 < refused.value.retry_after_s <= 30  # one call comes back every 30 s
    await limits.spend(tenant, TOKEN_B, "forget")  # another token of the tenant
    await limits.spend("other-" + tenant.replace("_", "-"), TOKEN_A, "forget")  # another tenant
    await limits.spend(tenant, TOKEN_A, "search_context")  # a tool with no limit


async def test_a_tool_at_zero_is_turned_off_and_bad_principals_are_refused(
    machine_rt: Runtime, tenant: str
) -> None:
    limits = ToolLimits(machine_rt.redis, [("remember", 0, 60)])
    with pytest.raises(RateLimited, match="turned off"):
        await limits.spend(tenant, TOKEN_A, "remember")
    limits = ToolLimits(machine_rt.redis, [("forget", 5, 60)])
    for principal in ("tok_x", "local:other", "tok_" + "a" * 16 + "}", "\x00"):
        with pytest.raises(InvalidArgument):
            await limits.spend(tenant, principal, "forget")
    assert await machine_rt.redis.keys(f"*{tenant}*rate*") == []  # nothing written for them


async def test_the_tools_spend_their_budget(machine_rt: Runtime, tenant: str) -> None:
    rt = _limited(machine_rt, remember=(2, 60), forget=(1, 60), restore=(1, 60), summarize_context=(1, 60))
    service = MemoryService(rt)
    await service.apply_events([make_event(tenant, "issues", load_fixture("issues_opened"), "gh:1")])
    ctx_id = (await service.recent_events(tenant, limit=1))[0].context_id
    model = Model("An issue about a spelling error in the README.")
    async with Client(build_mcp(service, tenant), sampling_callback=model) as client:
        for n in range(2):
            assert not (await client.call_tool("remember", {"text": f"note {n}"})).is_error
        third = await client.call_tool("remember", {"text": "note 3"})
        assert third.is_error and "RateLimited" in third.content[0].text  # type: ignore[union-attr]

        assert not (await client.call_tool("get_context", {"id": ctx_id, "restore": True})).is_error
        again = await client.call_tool("get_context", {"id": ctx_id, "restore": True})
        assert again.is_error and "RateLimited" in again.content[0].text  # type: ignore[union-attr]
        assert not (await client.call_tool("get_context", {"id": ctx_id})).is_error  # reading is free

        missing = "ctx_" + "0" * 20
        first = await client.call_tool("forget", {"id": missing})
        assert first.is_error and "NotFound" in first.content[0].text  # type: ignore[union-attr]
        second = await client.call_tool("forget", {"id": ctx_id})
        assert second.is_error and "RateLimited" in second.content[0].text  # type: ignore[union-attr]
        assert (await service.get_context(tenant, ctx_id)).head.id == ctx_id  # not deleted

        # one summary is one call, however many rounds the exchange takes (2026-07-28: two)
        summarized = await client.call_tool("summarize_context", {"id": ctx_id})
        assert not summarized.is_error and summarized.structured_content["kept"]  # type: ignore[index]
        asked = len(model.asked)
        refused = await client.call_tool("summarize_context", {"id": ctx_id})
        assert refused.is_error and "RateLimited" in refused.content[0].text  # type: ignore[union-attr]
        assert len(model.asked) == asked  # refused before the model was asked again

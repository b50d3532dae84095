"""compose_context across budgets: never over, best in full, the rest as summaries, always cited."""

from __future__ import annotations

import copy
import re

import pytest

from memory.compose import tokens
from memory.errors import InvalidArgument
from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event


async def _seed(service: MemoryService, tenant: str) -> None:
    events = []
    for n in range(12):
        payload = copy.deepcopy(load_fixture("issues_opened"))
        payload["issue"]["number"] = 700 + n
        payload["issue"]["title"] = f"Flaky deploy pipeline on runner {n}"
        events.append(make_event(tenant, "issues", payload, f"gh:c{n}"))
        comment = copy.deepcopy(load_fixture("issue_comment_created"))
        comment["issue"]["number"] = 700 + n
        comment["comment"]["body"] = "The deploy pipeline timed out again while pulling images. " * 3
        events.append(make_event(tenant, "issue_comment", comment, f"gh:cc{n}"))
    await service.apply_events(events)


@pytest.mark.parametrize("budget", [60, 150, 400, 1000, 4000])
async def test_compose_never_exceeds_the_budget_and_cites_every_piece(
    rt: Runtime, tenant: str, budget: int
) -> None:
    service = MemoryService(rt)
    await _seed(service, tenant)
    result = await service.compose_context(tenant, "deploy pipeline flaky", budget)
    assert result.tokens <= budget and tokens(result.text) <= budget
    assert result.pieces, "something always fits in 60 tokens"
    cited = re.findall(r"^\[(ctx_[0-9a-f]+)\]", result.text, flags=re.M)
    assert cited and set(cited) == {piece.context_id for piece in result.pieces}
    modes = [piece.mode for piece in result.pieces]
    if budget >= 1000:
        assert "full" in modes and "summary" in modes
        best = max(result.pieces, key=lambda piece: piece.score)
        assert best.mode == "full"
    if budget == 60:
        assert modes == ["summary"] * len(modes)


async def test_a_bigger_budget_includes_more(rt: Runtime, tenant: str) -> None:
    service = MemoryService(rt)
    await _seed(service, tenant)
    small = await service.compose_context(tenant, "deploy pipeline", 150)
    large = await service.compose_context(tenant, "deploy pipeline", 4000)
    assert len(large.pieces) > len(small.pieces) and large.tokens > small.tokens


async def test_absurd_budgets_are_refused(rt: Runtime, tenant: str) -> None:
    with pytest.raises(InvalidArgument):
        await MemoryService(rt).compose_context(tenant, "x", 10)

"""Per-principal rate limits of the MCP tools that write or cost (forget, remember, restore,
summarize_context), shared by every process through Redis.

Each (tenant, principal, tool) has a GCRA budget (``HOOKLINE_TOOL_RATE_LIMITS``, e.g. ``forget=30/m``):
up to ``calls`` at once, then one every ``period / calls``. The Lua script reads Redis's own clock, so
every process judges by one time; one key per budget, so it runs on any Cluster node.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from memory import keys
from memory.errors import HooklineError, StoreUnavailable

# KEYS[1]: the budget; ARGV: emission interval (ms), period (ms), "spend" or "peek" (look, take nothing).
# Returns 0 (allowed) or the ms to wait.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > period then return next_tat - now - period end
if ARGV[3] == 'spend' then redis.call('SET', KEYS[1], next_tat, 'PX', math.max(1, next_tat - now)) end
return 0
"""


class RateLimited(HooklineError):
    """This principal called this tool too often; ``retry_after_s`` says when it may again."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ToolLimits:
    def __init__(self, redis: aioredis.Redis, limits: Sequence[tuple[str, int, int]]) -> None:
        """``limits``: (tool, calls, per seconds); tools not named are not limited."""
        self._limits = {tool: (calls, per_s) for tool, calls, per_s in limits}
        self._script = redis.register_script(_GCRA)

    async def spend(self, tenant: str, principal: str, tool: str) -> None:
        """Take one call of ``tool`` from the principal's budget; RateLimited when it is spent."""
        await self._take(tenant, principal, tool, "spend")

    async def peek(self, tenant: str, principal: str, tool: str) -> None:
        """RateLimited if a call of ``tool`` would be refused now; takes nothing."""
        await self._take(tenant, principal, tool, "peek")

    async def _take(self, tenant: str, principal: str, tool: str, mode: str) -> None:
        limit = self._limits.get(tool)
        if limit is None:
            return
        calls, per_s = limit
        if calls == 0:
            raise RateLimited(f"{tool} is turned off on this server (HOOKLINE_TOOL_RATE_LIMITS)", per_s)
        key = keys.tool_rate(tenant, principal, tool)
        try:
            wait_ms = int(await self._script(keys=[key], args=[per_s * 1000 / calls, per_s * 1000, mode]))
        except aioredis.RedisError as exc:
            raise StoreUnavailable(f"cannot check the rate limit: {exc}") from exc
        if wait_ms > 0:
            wait_s = wait_ms / 1000
            raise RateLimited(
                f"{tool} is limited to {calls} calls per {per_s} s for this token; retry in {wait_s:.1f} s",
                wait_s,
            )

"""forget and the pre-warmer's keys: the context goes from its own keys, from the transitions of the
contexts that led to it, from every agent's "last read", and a read followed up after the forget
brings none of it back; on both real Redis servers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from memory import keys, prewarm, tombstones
from memory.lifecycle import Lifecycle
from memory.runtime import Runtime

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
A, B, C, D = (f"ctx_{n:020x}" for n in (0xA, 0xB, 0xC, 0xD))


async def _everything(rt: Runtime, tenant: str) -> bytes:
    """Every pre-warmer key of the tenant with its contents, as one blob to search."""
    redis: Any = rt.redis
    chunks: list[bytes] = []
    async for name in redis.scan_iter(match=f"hl:{{t:{tenant}}}:pw:*"):
        chunks.append(name)
        kind = (await redis.type(name)).decode()
        if kind == "string":
            chunks.append(await redis.get(name) or b"")
        elif kind == "hash":
            chunks += [item for pair in (await redis.hgetall(name)).items() for item in pair]
        elif kind == "set":
            chunks += list(await redis.smembers(name))
        else:
            raise AssertionError(f"{name!r} is a {kind}")
    return b"\n".join(chunks)


async def test_forget_removes_the_context_from_every_pre_warm_key(rt: Runtime, tenant: str) -> None:
    warmer = prewarm.Prewarmer(rt.redis, Lifecycle(rt))
    for agent, reads in (("triage", [A, B, C, A, C, B]), ("review", [D, B]), ("ops", [B, D])):
        for ctx_id in reads:
            await warmer.observe(tenant, agent, ctx_id, NOW)
    await rt.redis.set(keys.prewarmed(tenant, B), 1, ex=60)
    await warmer.observe("someone-else", "triage", B, NOW)  # another tenant's habits
    assert B.encode() in await _everything(rt, tenant)

    removed = await prewarm.forget_context(rt.redis, tenant, B)

    assert B.encode() not in await _everything(rt, tenant)
    assert removed >= 10
    # What does not involve B stays: A -> C and C -> A, the hours, the agents' other last reads.
    assert await rt.redis.hgetall(keys.prewarm_transitions(tenant, "triage", A)) == {C.encode(): b"1"}
    assert await rt.redis.hgetall(keys.prewarm_transitions(tenant, "triage", C)) == {A.encode(): b"1"}
    assert await rt.redis.hget(keys.prewarm_hours(tenant, A), "9") == b"2"
    assert await rt.redis.get(keys.prewarm_last(tenant, "ops")) == D.encode()
    assert (
        await rt.redis.exists(keys.prewarm_last(tenant, "triage"), keys.prewarm_last(tenant, "review")) == 0
    )
    assert await rt.redis.hget(keys.prewarm_hours("someone-else", B), "9") == b"1"


async def test_a_read_followed_up_after_forget_leaves_nothing(rt: Runtime, tenant: str) -> None:
    warmer = prewarm.Prewarmer(rt.redis, Lifecycle(rt))
    await warmer.observe(tenant, "triage", A, NOW)
    await tombstones.bury(rt.redis, rt.settings, tenant, B, NOW)
    await prewarm.forget_context(rt.redis, tenant, B)

    await warmer.observe(tenant, "triage", B, NOW)  # read just before the forget, queued until now

    assert B.encode() not in await _everything(rt, tenant)
    assert await rt.redis.get(keys.prewarm_last(tenant, "triage")) == A.encode()

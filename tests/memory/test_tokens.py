"""``memory.tokens.TokenStore`` on the machine's PostgreSQL: public ids, revocation by id and name,
the bounded lookup cache, and ``last_used_at`` written in the background at most once a minute."""

from __future__ import annotations

import secrets

import pytest

from memory.errors import AuthError, InvalidArgument
from memory.ids import InvalidIdentifier
from memory.runtime import Runtime
from memory.tokens import CACHE_TTL_S, USAGE_EVERY_S, TokenStore, hash_token, token_id


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _column(rt: Runtime, column: str, public_id: str) -> object:
    async with rt.db.connection() as conn:
        row = await (
            await conn.execute(f"SELECT {column} FROM api_tokens WHERE id = %s", (public_id,))
        ).fetchone()
    assert row is not None
    return row[0]


async def test_a_token_is_stored_with_the_public_id_migration_0010_derives(
    machine_rt: Runtime, tenant: str
) -> None:
    tokens = TokenStore(machine_rt.db)
    token = await tokens.create(tenant, "ci")
    public_id = token_id(hash_token(token))
    assert public_id.startswith("tok_") and len(public_id) == 4 + 16
    async with machine_rt.db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT id = 'tok_' || encode(substring(token_hash from 1 for 8), 'hex') FROM api_tokens"
                " WHERE token_hash = %s",
                (hash_token(token),),
            )
        ).fetchone()
    assert row == (True,)
    principal = await tokens.principal_for(token)
    assert (principal.id, principal.tenant) == (public_id, tenant)
    [info] = await tokens.list(tenant)
    assert (info.id, info.tenant, info.name, info.revoked_at) == (public_id, tenant, "ci", None)
    assert token not in repr(info) and hash_token(token).hex() not in repr(info)


@pytest.mark.parametrize("bad", ["acme:prod", "Acme", "", "a" * 64, "x\x00y", "../etc"])
async def test_create_refuses_a_tenant_that_breaks_the_naming_rule(machine_rt: Runtime, bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        await TokenStore(machine_rt.db).create(bad)
    async with machine_rt.db.connection() as conn:
        assert await (await conn.execute("SELECT count(*) FROM api_tokens")).fetchone() == (0,)


async def test_revoke_by_id_and_by_name(machine_rt: Runtime, tenant: str) -> None:
    tokens = TokenStore(machine_rt.db)
    first, second, other = [await tokens.create(tenant, name) for name in ("ci", "ci", "laptop")]
    assert await tokens.revoke_id(token_id(hash_token(other))) == [token_id(hash_token(other))]
    assert await tokens.revoke_id(token_id(hash_token(other))) == []  # already revoked
    assert await tokens.revoke_id("tok_0000000000000000") == []
    named = await tokens.revoke_name("ci", tenant)
    assert named == sorted(token_id(hash_token(t)) for t in (first, second))
    assert await tokens.revoke_name("ci", tenant) == []
    assert {info.id for info in await tokens.list(tenant) if info.revoked_at is not None} == {
        token_id(hash_token(t)) for t in (first, second, other)
    }
    fresh = TokenStore(machine_rt.db)  # no cache: what the database says
    for token in (first, second, other):
        with pytest.raises(AuthError):
            await fresh.principal_for(token)


async def test_revoke_by_name_alone_must_name_one_tenant(machine_rt: Runtime, tenant: str) -> None:
    tokens = TokenStore(machine_rt.db)
    elsewhere = "t_" + secrets.token_hex(4)
    mine, theirs = await tokens.create(tenant, "ci"), await tokens.create(elsewhere, "ci")
    with pytest.raises(InvalidArgument, match="give --tenant"):
        await tokens.revoke_name("ci")
    assert await tokens.revoke_name("ci", elsewhere) == [token_id(hash_token(theirs))]
    assert await tokens.revoke_name("ci") == [token_id(hash_token(mine))]  # now one tenant has it


async def test_random_bearer_tokens_cannot_grow_the_cache(machine_rt: Runtime, tenant: str) -> None:
    tokens = TokenStore(machine_rt.db, cache_entries=16)
    real = await tokens.create(tenant)
    for _ in range(200):
        with pytest.raises(AuthError):
            await tokens.principal_for("hl_" + secrets.token_urlsafe(32))
    assert tokens.cached == 16
    assert (await tokens.principal_for(real)).tenant == tenant
    assert tokens.cached == 16


async def test_a_cached_answer_lasts_the_ttl_then_the_database_is_asked_again(
    machine_rt: Runtime, tenant: str
) -> None:
    clock = Clock()
    tokens = TokenStore(machine_rt.db, clock=clock)
    token = await tokens.create(tenant)
    await tokens.principal_for(token)
    assert await TokenStore(machine_rt.db).revoke_id(token_id(hash_token(token)))  # another process
    assert (await tokens.principal_for(token)).tenant == tenant  # still cached
    clock.now += CACHE_TTL_S
    with pytest.raises(AuthError):
        await tokens.principal_for(token)


async def test_last_used_is_written_in_the_background_at_most_once_a_minute(
    machine_rt: Runtime, tenant: str
) -> None:
    clock = Clock()
    tokens = TokenStore(machine_rt.db, clock=clock)
    token = await tokens.create(tenant)
    public_id = token_id(hash_token(token))
    await tokens.principal_for(token)
    assert await _column(machine_rt, "last_used_at", public_id) is None  # not on the request's path
    assert await tokens.write_usage() == 1
    first = await _column(machine_rt, "last_used_at", public_id)
    assert first is not None
    for _ in range(50):
        clock.now += 1
        await tokens.principal_for(token)
    assert await tokens.write_usage() == 0  # used 50 times within the minute: nothing to write
    clock.now += USAGE_EVERY_S
    await tokens.principal_for(token)
    assert await tokens.write_usage() == 1
    later = await _column(machine_rt, "last_used_at", public_id)
    assert isinstance(later, type(first)) and later > first  # type: ignore[operator]


async def test_active_names_the_tokens_not_revoked(machine_rt: Runtime, tenant: str) -> None:
    tokens = TokenStore(machine_rt.db)
    keep, drop = await tokens.create(tenant), await tokens.create(tenant)
    await tokens.revoke(drop)
    ids = {token_id(hash_token(keep)), token_id(hash_token(drop)), "tok_ffffffffffffffff"}
    assert await tokens.active(ids) == {token_id(hash_token(keep))}

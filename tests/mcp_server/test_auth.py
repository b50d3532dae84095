"""``mcp_server.auth``: what an authenticated scope carries, and the per-address failure limit.

The limit over real HTTP and WebSocket is in tests/e2e/test_sessions.py; here its arithmetic, with
a clock the test moves.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context

from mcp_server.auth import (
    PRINCIPAL_SCOPE_KEY,
    TENANT_SCOPE_KEY,
    Authenticator,
    AuthThrottled,
    FailureLimit,
)
from memory.errors import AuthError
from memory.runtime import Runtime
from memory.tokens import TokenStore, hash_token, token_id


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def _scope(token: str | None = None, address: str = "203.0.113.7") -> dict[str, Any]:
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    return {"type": "http", "headers": headers, "client": (address, 40000)}


async def test_an_authenticated_scope_carries_tenant_principal_and_the_sdks_user(
    machine_rt: Runtime, tenant: str
) -> None:
    tokens = TokenStore(machine_rt.db)
    token = await tokens.create(tenant)
    auth = Authenticator(tokens, "default", FailureLimit(5))
    scope = _scope(token)
    principal = await auth.authenticate(scope)
    assert scope[TENANT_SCOPE_KEY] == tenant == principal.tenant
    assert scope[PRINCIPAL_SCOPE_KEY] == token_id(hash_token(token)) == principal.id
    user = scope["user"]
    assert isinstance(user, AuthenticatedUser) and user.access_token.token == principal.id  # never the secret
    other = await tokens.create(tenant)
    other_scope = _scope(other)
    await auth.authenticate(other_scope)
    # Two tokens of one tenant are two principals to the SDK's session binding.
    assert authorization_context(user) != authorization_context(other_scope["user"])


async def test_with_auth_off_the_principal_is_local() -> None:
    auth = Authenticator(None, "acme", FailureLimit(5))
    scope = _scope()
    await auth.authenticate(scope)
    assert (scope[TENANT_SCOPE_KEY], scope[PRINCIPAL_SCOPE_KEY]) == ("acme", "local")


async def test_failed_attempts_from_one_address_are_limited_per_minute(
    machine_rt: Runtime, tenant: str
) -> None:
    clock = Clock()
    tokens = TokenStore(machine_rt.db)
    good = await tokens.create(tenant)
    auth = Authenticator(tokens, "default", FailureLimit(3, clock=clock))
    for wrong in (None, "hl_wrong", "hl_wrong-again"):
        with pytest.raises(AuthError):
            await auth.authenticate(_scope(wrong))
    with pytest.raises(AuthThrottled) as throttled:
        await auth.authenticate(_scope(good))  # even a right token: the answer must not tell
    assert throttled.value.retry_after_s == 60
    assert (await auth.authenticate(_scope(good, address="198.51.100.1"))).tenant == tenant
    clock.now += 45
    with pytest.raises(AuthThrottled) as throttled:
        await auth.authenticate(_scope("hl_wrong"))
    assert throttled.value.retry_after_s == 15
    clock.now += 15
    assert (await auth.authenticate(_scope(good))).tenant == tenant  # a new minute


def test_the_failure_limit_remembers_a_bounded_number_of_addresses() -> None:
    limit = FailureLimit(1, max_addresses=100)
    for n in range(5000):
        limit.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(limit) == 100
    assert limit.retry_after("10.0.19.135") is not None  # the most recent are kept

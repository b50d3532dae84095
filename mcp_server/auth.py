"""Bearer-token authentication for the MCP transports: the tenant comes from the credential.

Every authenticated request and socket carries, in its ASGI scope:

- ``scope[TENANT_SCOPE_KEY]``: the tenant the tools read;
- ``scope[PRINCIPAL_SCOPE_KEY]``: the token's public id (``tok_…``), or ``local`` when auth is off,
  for what is counted or bound per token (tool rate limits, sessions);
- ``scope["user"]``: the same principal as the SDK's ``AuthenticatedUser``, so that its session
  manager answers 404 to a session id presented with another token than the one that opened it.

Failed authentications are limited per client address (``HOOKLINE_AUTH_FAILURES_PER_MINUTE``):
past the limit every attempt from that address, right or wrong, gets 429 with ``Retry-After``
until the minute is over, so that the answer stops telling a guess from a hit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server.refusals import refuse
from memory.cache import TtlLru
from memory.errors import AuthError, HooklineError, StoreUnavailable
from memory.tokens import LOCAL_PRINCIPAL, Principal, TokenStore

TENANT_SCOPE_KEY = "hookline.tenant"
PRINCIPAL_SCOPE_KEY = "hookline.principal"
FAILURE_WINDOW_S = 60.0
MAX_ADDRESSES = 10_000  # addresses whose failures are remembered; the least recent go first


class AuthThrottled(HooklineError):
    """Too many failed authentications from this client address: try again later."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed authentications from this address; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class FailureLimit:
    """Failed authentications per client address, in one-minute windows, in bounded memory."""

    def __init__(
        self,
        per_minute: int,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        # address -> (window start, failures in it)
        self._windows: TtlLru[str, tuple[float, int]] = TtlLru(FAILURE_WINDOW_S, max_addresses, clock)

    def __len__(self) -> int:
        return len(self._windows)

    def _window(self, address: str) -> tuple[float, int]:
        now = self._clock()
        found, window = self._windows.get(address)
        if not found or window is None or now - window[0] >= FAILURE_WINDOW_S:
            return now, 0
        return window

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or None when it may now."""
        start, failures = self._window(address)
        if failures < self.per_minute:
            return None
        return max(1, math.ceil(start + FAILURE_WINDOW_S - self._clock()))

    def failed(self, address: str) -> None:
        start, failures = self._window(address)
        self._windows.put(address, (start, failures + 1))


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class Authenticator:
    """Turns a request's credential into its principal; one per process, shared by /mcp and /ws."""

    def __init__(self, tokens: TokenStore | None, default_tenant: str, failures: FailureLimit) -> None:
        """``tokens=None`` means auth is off: every connection is ``local`` of ``default_tenant``."""
        self.tokens = tokens
        self.default_tenant = default_tenant
        self.failures = failures

    async def principal(self, scope: Scope) -> Principal:
        """Raises AuthError, AuthThrottled or StoreUnavailable."""
        if self.tokens is None:
            return Principal(LOCAL_PRINCIPAL, self.default_tenant)
        address = client_address(scope)
        wait = self.failures.retry_after(address)
        if wait is not None:
            raise AuthThrottled(wait)
        token = bearer_token(scope.get("headers", []))
        try:
            if token is None:
                raise AuthError("missing Authorization: Bearer <token> header")
            return await self.tokens.principal_for(token)
        except AuthError:
            self.failures.failed(address)
            raise

    async def authenticate(self, scope: Scope) -> Principal:
        """``principal``, then the scope is marked with it (see the module's docstring)."""
        principal = await self.principal(scope)
        scope[TENANT_SCOPE_KEY] = principal.tenant
        scope[PRINCIPAL_SCOPE_KEY] = principal.id
        # ``token`` holds the public id, never the secret: the SDK compares (client_id, subject).
        access = AccessToken(token=principal.id, client_id=principal.id, scopes=[], subject=principal.tenant)
        scope["user"] = AuthenticatedUser(access)
        return principal


async def refuse_auth(scope: Scope, receive: Receive, send: Send, exc: HooklineError) -> None:
    """The answer to a failed ``Authenticator.authenticate``: 401, 429 or 503."""
    if isinstance(exc, AuthThrottled):
        retry = {"Retry-After": str(exc.retry_after_s)}
        await refuse(scope, receive, send, 429, "too_many_auth_failures", str(exc), retry)
    elif isinstance(exc, StoreUnavailable):
        await refuse(scope, receive, send, 503, "unavailable", str(exc), {"Retry-After": "5"})
    else:
        challenge = {"WWW-Authenticate": 'Bearer realm="hookline"'}
        await refuse(scope, receive, send, 401, "unauthorized", str(exc), challenge)


class BearerAuth:
    """ASGI middleware: authenticates every request (see the module's docstring) or answers
    401 / 429 / 503 itself."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            await self.authenticator.authenticate(scope)
        except (AuthError, AuthThrottled, StoreUnavailable) as exc:
            await refuse_auth(scope, receive, send, exc)
            return
        await self.app(scope, receive, send)

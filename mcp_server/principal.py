"""Who is asking: the tenant and the principal (the token) of the MCP message being handled.

Both come from the credential — the authenticated HTTP request or WebSocket (``mcp_server.auth`` puts
them in its scope) — or, for stdio and in-process clients, from the server's configured tenant and
the principal ``local``; never from an argument. A server middleware binds them for each message,
so tools, resources (static ones get no ``Context``), prompts, completions and subscriptions all read
them the same way. A tenant that does not follow the tenant rule (a token made before the rule
existed) is refused: it could otherwise address keys it does not own.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from mcp_server.auth import PRINCIPAL_SCOPE_KEY, TENANT_SCOPE_KEY
from memory.errors import AuthError
from memory.ids import is_name

LOCAL = "local"  # the principal of stdio and in-process clients, and of everyone when auth is off
_UNBOUND = "\0unbound"  # no message is being handled (None: one is, but it was not authenticated)
_tenant: ContextVar[str | None] = ContextVar("hookline_tenant", default=_UNBOUND)
_principal: ContextVar[str] = ContextVar("hookline_principal", default=LOCAL)


def current_tenant() -> str:
    """The tenant of the message being handled; AuthError when there is none (fail closed)."""
    tenant = _tenant.get()
    if tenant is None:
        raise AuthError("request was not authenticated")
    if tenant == _UNBOUND:
        raise AuthError("no request is being handled")
    if not is_name(tenant):
        raise AuthError("this credential's tenant name is not valid: create a new token for a valid tenant")
    return tenant


def current_principal() -> str:
    """The token (its public id) the message came with, or ``local``."""
    return _principal.get()


class BindTenant:
    """Server middleware: binds the tenant and principal of each inbound message for its handler."""

    def __init__(self, default_tenant: str) -> None:
        self.default_tenant = default_tenant

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        tenant, principal = self._identity(ctx.request)
        tenant_token = _tenant.set(tenant)
        principal_token = _principal.set(principal)
        try:
            return await call_next(ctx)
        finally:
            _principal.reset(principal_token)
            _tenant.reset(tenant_token)

    def _identity(self, request: object) -> tuple[str | None, str]:
        if request is None:  # stdio or in-process: the process is bound to one tenant
            return self.default_tenant, LOCAL
        scope = getattr(request, "scope", None)  # a Starlette Request or WebSocket
        if not isinstance(scope, dict):
            return None, LOCAL
        tenant = scope.get(TENANT_SCOPE_KEY)
        principal = scope.get(PRINCIPAL_SCOPE_KEY)
        return (tenant if isinstance(tenant, str) else None), (
            principal if isinstance(principal, str) else LOCAL
        )

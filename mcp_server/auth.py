"""Bearer-token authentication for the MCP transports: the tenant comes from the credential."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from memory.errors import AuthError, StoreUnavailable
from memory.tokens import TokenStore

TENANT_SCOPE_KEY = "hookline.tenant"


async def _reply(send: Send, status: int, code: str, detail: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = orjson.dumps({"error": code, "detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


async def authenticate(tokens: TokenStore | None, default_tenant: str, scope: Scope) -> str:
    """The tenant of this connection; raises AuthError. ``tokens=None`` means auth is off."""
    if tokens is None:
        return default_tenant
    token = bearer_token(scope.get("headers", []))
    if token is None:
        raise AuthError("missing Authorization: Bearer <token> header")
    return await tokens.tenant_for(token)


class BearerAuth:
    """ASGI middleware: sets ``scope[TENANT_SCOPE_KEY]`` or answers 401 / 503 itself."""

    def __init__(self, app: ASGIApp, tokens: TokenStore | None, default_tenant: str) -> None:
        self.app = app
        self.tokens = tokens
        self.default_tenant = default_tenant

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            scope[TENANT_SCOPE_KEY] = await authenticate(self.tokens, self.default_tenant, scope)
        except AuthError as exc:
            await _reply(
                send, 401, "unauthorized", str(exc), [(b"www-authenticate", b'Bearer realm="hookline"')]
            )
            return
        except StoreUnavailable as exc:
            await _reply(send, 503, "unavailable", str(exc), [(b"retry-after", b"5")])
            return
        await self.app(scope, receive, send)

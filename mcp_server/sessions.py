"""Open MCP sessions: bound to their principal, capped per tenant, ended when their token is revoked.

A session is a streamable-HTTP session (the SDK's session manager, subclassed here so that it
reports each session it opens and discards) or a WebSocket connection; both count against one cap
per tenant and process, ``HOOKLINE_MAX_SESSIONS_PER_TENANT``. Past it, the next ``initialize`` (or
handshake) is answered 429. A session frees its slot however it ends: DELETE, the SDK's idle expiry
(30 min without a request in flight), a closed socket, shutdown, or its token's revocation.

Binding: the SDK's manager remembers the principal (``scope["user"]``, set by ``mcp_server.auth``)
that opened each session and answers 404 to the same session id presented by another token.

Revocation: ``Sessions.watch_revocations`` re-checks, every ``REVOCATION_CHECK_S``, the tokens of
the open sessions and of the /mcp requests in flight, and ends those whose token was revoked: a
WebSocket is closed with 1008 "token revoked"; an HTTP session is terminated (its id then answers
404, and the revoked token 401); a request still streaming its answer as SSE (a session's GET
stream, a POST answered as a stream, a 2026-07-28 ``subscriptions/listen``) is cut short: its
stream ends.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import structlog
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_server.auth import PRINCIPAL_SCOPE_KEY, TENANT_SCOPE_KEY
from mcp_server.refusals import refuse
from memory.errors import StoreUnavailable
from memory.tokens import CACHE_TTL_S, LOCAL_PRINCIPAL, Principal, TokenStore

log = structlog.get_logger(__name__)

REVOCATION_CHECK_S = CACHE_TTL_S / 2  # a revoked token's sessions end within the token cache's TTL
RETRY_AFTER_S = 30
_request_numbers = itertools.count(1)


@dataclass(eq=False, slots=True)
class OpenSession:
    principal: Principal
    end: Callable[[], Awaitable[None]]  # ends the session (its token was revoked)


class Sessions:
    """The open sessions of this process, by key (``http:<session id>``, ``ws:<n>``), and the
    authenticated /mcp requests in flight (``req:<n>``, not counted against the cap)."""

    def __init__(self, max_per_tenant: int) -> None:
        self.max_per_tenant = max_per_tenant
        self._open: dict[str, OpenSession] = {}
        self._per_tenant: Counter[str] = Counter()
        self._requests: dict[str, OpenSession] = {}

    def __len__(self) -> int:
        return len(self._open)

    def count(self, tenant: str) -> int:
        return self._per_tenant[tenant]

    def has_room(self, tenant: str) -> bool:
        return self._per_tenant[tenant] < self.max_per_tenant

    def add(self, key: str, session: OpenSession) -> bool:
        """Counts the session in; False (and nothing counted) when its tenant is at the cap."""
        tenant = session.principal.tenant
        if key in self._open or not self.has_room(tenant):
            return False
        self._open[key] = session
        self._per_tenant[tenant] += 1
        return True

    def remove(self, key: str) -> None:
        session = self._open.pop(key, None)
        if session is None:
            return
        tenant = session.principal.tenant
        self._per_tenant[tenant] -= 1
        if self._per_tenant[tenant] <= 0:
            del self._per_tenant[tenant]  # the counter holds only tenants with open sessions

    def track(self, request: OpenSession) -> str:
        key = f"req:{next(_request_numbers)}"
        self._requests[key] = request
        return key

    def untrack(self, key: str) -> None:
        self._requests.pop(key, None)

    def refusal_detail(self, tenant: str) -> str:
        return (
            f"tenant {tenant!r} has {self.count(tenant)} open MCP sessions in this process, the most "
            "allowed (HOOKLINE_MAX_SESSIONS_PER_TENANT); end one (DELETE /mcp, close a socket) or retry later"
        )

    async def end_revoked(self, tokens: TokenStore) -> int:
        """Ends the sessions and requests whose token is no longer active; how many."""
        every = [*self._open.items(), *self._requests.items()]
        ids = {s.principal.id for _, s in every if s.principal.id != LOCAL_PRINCIPAL}
        if not ids:
            return 0
        revoked = ids - await tokens.active(ids)
        tokens.forget(revoked)  # new requests with them are refused from now on, too
        ended = 0
        for key, session in every:
            if session.principal.id not in revoked:
                continue
            principal = session.principal
            log.info("session.revoked", key=key, principal=principal.id, tenant=principal.tenant)
            try:
                await session.end()
            except Exception:  # one session's end must not keep the others open
                log.exception("session.end_failed", key=key)
            self.remove(key)
            self.untrack(key)
            ended += 1
        return ended

    async def watch_revocations(self, tokens: TokenStore, every_s: float = REVOCATION_CHECK_S) -> None:
        """The background task that ends the sessions of revoked tokens."""
        while True:
            await anyio.sleep(every_s)
            try:
                await self.end_revoked(tokens)
            except StoreUnavailable as exc:
                log.warning("session.revocation_check_failed", error=str(exc))


def _principal(requestor: AuthorizationContext | None) -> Principal | None:
    if requestor is None or requestor["subject"] is None:
        return None
    return Principal(requestor["client_id"], requestor["subject"])


class TrackedSessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, counting its sessions in ``Sessions`` (by overriding the two
    methods through which every session is opened and discarded)."""

    def __init__(self, server: Any, sessions: Sessions, **options: Any) -> None:
        super().__init__(server, **options)
        self.sessions = sessions

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        # Runs under the manager's creation lock, with no await: the cap cannot be overrun.
        principal = _principal(requestor)
        if principal is None or not self.sessions.has_room(principal.tenant):
            return None  # the SDK answers 503; SessionGate answers 429 before it comes to that
        transport = super()._admit_session(requestor)
        if transport is not None and transport.mcp_session_id is not None:
            end = partial(self._discard_session, transport.mcp_session_id, transport)
            self.sessions.add(_http_key(transport.mcp_session_id), OpenSession(principal, end))
        return transport

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        self.sessions.remove(_http_key(session_id))
        await super()._discard_session(session_id, transport)


def _http_key(session_id: str) -> str:
    return f"http:{session_id}"


def http_session_manager(mcp: MCPServer, sessions: Sessions) -> TrackedSessionManager:
    """The streamable-HTTP session manager of ``/mcp``. The SDK's DNS-rebinding check is off: Host
    and Origin are ``mcp_server.hosts``' job, on /mcp and /ws alike."""
    return TrackedSessionManager(
        mcp._lowlevel_server,
        sessions,
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )


def _opens_session(headers: Headers, method: str) -> bool:
    """A request the SDK would open a session for: a POST without a session id, in the handshake era
    (a 2026-07-28 request carries its version and has no session)."""
    if method != "POST" or MCP_SESSION_ID_HEADER in headers:
        return False
    version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
    return version is None or version in HANDSHAKE_PROTOCOL_VERSIONS


class SessionGate:
    """ASGI middleware in front of the session manager (behind ``BearerAuth``, which sets the
    principal): 429 (JSON) for a request that would open a session past its tenant's cap, and every
    request in flight tracked, so that a revoked token's streams can be cut short."""

    def __init__(self, app: ASGIApp, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant, principal_id = scope.get(TENANT_SCOPE_KEY), scope.get(PRINCIPAL_SCOPE_KEY)
        if scope["type"] != "http" or not isinstance(tenant, str) or not isinstance(principal_id, str):
            await self.app(scope, receive, send)
            return
        if not self.sessions.has_room(tenant) and _opens_session(Headers(scope=scope), scope["method"]):
            retry = {"Retry-After": str(RETRY_AFTER_S)}
            await refuse(
                scope, receive, send, 429, "too_many_sessions", self.sessions.refusal_detail(tenant), retry
            )
            return
        if principal_id == LOCAL_PRINCIPAL:  # auth is off: nothing can be revoked
            await self.app(scope, receive, send)
            return
        await self._tracked(Principal(principal_id, tenant), scope, receive, send)

    async def _tracked(self, principal: Principal, scope: Scope, receive: Receive, send: Send) -> None:
        revoked = anyio.CancelScope()
        response = {"started": False, "finished": False}

        async def end() -> None:
            revoked.cancel()

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                response["finished"] = True
            await send(message)

        key = self.sessions.track(OpenSession(principal, end))
        try:
            with revoked:
                await self.app(scope, receive, watched_send)
        finally:
            self.sessions.untrack(key)
        if not revoked.cancelled_caught:
            return
        if not response["started"]:
            challenge = {"WWW-Authenticate": 'Bearer realm="hookline"'}
            await refuse(scope, receive, send, 401, "unauthorized", "the token was revoked", challenge)
        elif not response["finished"]:
            await send({"type": "http.response.body", "body": b"", "more_body": False})  # end the stream

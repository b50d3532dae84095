"""MCP over WebSocket (``/ws``): one JSON-RPC message per text frame, one MCP session per socket.

The SDK has no WebSocket transport, so this bridges a Starlette WebSocket to the low-level server's
pair of memory streams, as its stdio transport does for a pipe. What a client sees:

- **Handshake.** Subprotocol ``mcp``: it is selected when offered; a client that offers others but
  not ``mcp`` is refused (HTTP 400). A client that offers none is served without one.
- **Host, Origin, auth and the session cap before accept.** The Host/Origin guard
  (``mcp_server.hosts``) wraps this app. ``Authorization: Bearer <token>`` only (no query-string
  token: URLs end up in logs). A missing, unknown or revoked token is refused with HTTP 401 and the
  same JSON body and ``WWW-Authenticate`` header as ``/mcp``; too many failed attempts from one
  address give 429, and a token store that cannot be reached 503. A tenant at its cap of open
  sessions (``mcp_server.sessions``, shared with ``/mcp``) gets 429. Refusals are HTTP denial
  responses (``mcp_server.refusals``).
- **Revocation.** A socket whose token is revoked is closed with 1008 "token revoked" within the
  token cache's TTL.
- **Frames.** A text frame that is not JSON gets a -32700 parse error, and JSON that is not a JSON-RPC
  message gets -32600 (id echoed when it can be read, else null); a binary frame gets -32600. The
  connection survives all three. A frame larger than ``max_message_bytes`` closes the socket with
  1009; a server-side failure closes it with 1011.
- **Backpressure.** Both directions go through bounded buffers: a client that stops reading blocks
  the session's writer, and then its reader, rather than growing memory.
- **Keep-alive** is the protocol's ping/pong, sent by uvicorn (``ws_ping_interval`` and
  ``ws_ping_timeout``, 20 s each by default); a peer that stops answering is closed with 1011.

Every message received on a socket carries that socket as its request, so tools find the tenant and
the principal in ``ctx.request_context.request.scope`` exactly as they do for ``/mcp``.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import anyio
import mcp_types as types
import orjson
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from mcp_server.auth import Authenticator, AuthThrottled, refuse_auth
from mcp_server.refusals import CLOSE_POLICY, refuse
from mcp_server.sessions import RETRY_AFTER_S, OpenSession, Sessions
from memory.errors import AuthError, StoreUnavailable
from memory.tokens import Principal

log = structlog.get_logger(__name__)

SUBPROTOCOL = "mcp"
MAX_MESSAGE_BYTES = 1024 * 1024
BUFFER_MESSAGES = 64
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
_socket_numbers = itertools.count(1)


class McpWebSocket:
    """An ASGI app serving MCP on WebSocket connections; one low-level server session per socket."""

    def __init__(
        self,
        mcp: MCPServer,
        authenticator: Authenticator,
        sessions: Sessions,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        buffer: int = BUFFER_MESSAGES,
    ) -> None:
        """``authenticator`` decides the principal (auth off: every socket is ``local``);
        ``sessions`` counts the socket against its tenant's cap, shared with ``/mcp``."""
        self._server = mcp._lowlevel_server
        self._auth = authenticator
        self._sessions = sessions
        self._max_bytes = max_message_bytes
        self._buffer = buffer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await JSONResponse({"error": "websocket_only", "detail": "connect with a WebSocket"}, 400)(
                scope, receive, send
            )
            return
        websocket = WebSocket(scope, receive, send)
        revoked = anyio.CancelScope()  # cancelled when the socket's token is revoked

        async def end() -> None:
            revoked.cancel()

        admitted = await self._admit(websocket, end)
        if admitted is None:
            return
        key, principal = admitted
        try:
            offered = websocket.scope.get("subprotocols") or []
            await websocket.accept(subprotocol=SUBPROTOCOL if offered else None)
            with structlog.contextvars.bound_contextvars(
                tenant=principal.tenant, principal=principal.id, transport="websocket"
            ):
                await self._serve_until_closed(websocket, revoked)
        finally:
            self._sessions.remove(key)

    async def _serve_until_closed(self, websocket: WebSocket, revoked: anyio.CancelScope) -> None:
        log.debug("ws.open")
        with revoked:
            try:
                await self._serve(websocket)
            except Exception:
                # The connection's top-level boundary: log once, tell the peer, never leak a socket.
                log.exception("ws.session_failed")
                await _close_quietly(websocket, CLOSE_SERVER_ERROR, "server error")
        if revoked.cancelled_caught:
            await _close_quietly(websocket, CLOSE_POLICY, "token revoked")
        log.debug("ws.closed")

    async def _admit(
        self, websocket: WebSocket, end: Callable[[], Awaitable[None]]
    ) -> tuple[str, Principal] | None:
        """Checks the token, the subprotocol and the session cap before accepting; the socket's key
        in ``Sessions`` and its principal, or None when the handshake was refused."""
        scope, receive, send = websocket.scope, websocket.receive, websocket.send
        try:
            principal = await self._auth.authenticate(scope)
        except (AuthError, AuthThrottled, StoreUnavailable) as exc:
            await refuse_auth(scope, receive, send, exc)
            return None
        offered = scope.get("subprotocols") or []
        if offered and SUBPROTOCOL not in offered:
            detail = f"offer the {SUBPROTOCOL!r} subprotocol (offered: {', '.join(offered)})"
            await refuse(scope, receive, send, 400, "unsupported_subprotocol", detail)
            return None
        key = f"ws:{next(_socket_numbers)}"
        if not self._sessions.add(key, OpenSession(principal, end)):
            detail = self._sessions.refusal_detail(principal.tenant)
            await refuse(
                scope, receive, send, 429, "too_many_sessions", detail, {"Retry-After": str(RETRY_AFTER_S)}
            )
            return None
        return key, principal

    async def _serve(self, websocket: WebSocket) -> None:
        inbound_send, inbound = anyio.create_memory_object_stream[SessionMessage | Exception](self._buffer)
        outbound_send, outbound = anyio.create_memory_object_stream[SessionMessage](self._buffer)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_write_frames, websocket, outbound, name="ws-writer")
            tasks.start_soon(
                self._server.run,
                inbound,
                outbound_send.clone(),
                self._server.create_initialization_options(),
                name="ws-mcp-session",
            )
            # The reader keeps its own handle on the outbound stream for its error replies.
            await self._read_frames(websocket, inbound_send, outbound_send)
            # The peer is gone (or was closed for a frame too big): nobody is left to answer.
            tasks.cancel_scope.cancel()

    async def _read_frames(
        self,
        websocket: WebSocket,
        inbound: MemoryObjectSendStream[SessionMessage | Exception],
        replies: MemoryObjectSendStream[SessionMessage],
    ) -> None:
        metadata = ServerMessageMetadata(request_context=websocket)
        async with inbound, replies:
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    return
                text: str | None = frame.get("text")
                data: bytes | None = frame.get("bytes")
                if _too_big(text, data, self._max_bytes):
                    await _close_quietly(websocket, CLOSE_TOO_BIG, f"message over {self._max_bytes} bytes")
                    return
                if text is None:
                    await replies.send(_error(types.INVALID_REQUEST, "send JSON-RPC in text frames", None))
                    continue
                try:
                    message = types.jsonrpc_message_adapter.validate_json(text, by_name=False)
                except ValidationError as exc:
                    await replies.send(_invalid(text, exc))
                    continue
                await inbound.send(SessionMessage(message, metadata=metadata))


async def _write_frames(websocket: WebSocket, outbound: MemoryObjectReceiveStream[SessionMessage]) -> None:
    connected = True
    async with outbound:
        async for session_message in outbound:
            if not connected:
                continue  # keep the session's writes from failing until the reader ends it
            text = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
            try:
                await websocket.send_text(text)
            except (WebSocketDisconnect, WebSocketDisconnected):
                connected = False


def _too_big(text: str | None, data: bytes | None, limit: int) -> bool:
    if data is not None:
        return len(data) > limit
    if text is None or len(text) * 4 <= limit:  # UTF-8 takes at most 4 bytes a character
        return False
    return len(text) > limit or len(text.encode()) > limit


def _error(code: int, message: str, request_id: types.RequestId | None) -> SessionMessage:
    error = types.ErrorData(code=code, message=message)
    return SessionMessage(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))


def _invalid(text: str, exc: ValidationError) -> SessionMessage:
    """-32700 for text that is not JSON, -32600 for JSON that is not a JSON-RPC message."""
    if any(detail["type"] == "json_invalid" for detail in exc.errors()):
        return _error(types.PARSE_ERROR, "Parse error: the frame is not JSON", None)
    try:
        parsed: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _error(types.PARSE_ERROR, "Parse error: the frame is not JSON", None)
    request_id = parsed.get("id") if isinstance(parsed, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    return _error(types.INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message", request_id)


async def _close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    with suppress(WebSocketDisconnect, WebSocketDisconnected):  # the peer or we closed it already
        await websocket.close(code, reason)

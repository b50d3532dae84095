"""MCP over WebSocket (``/ws``): one JSON-RPC message per text frame, one MCP session per socket.

The SDK has no WebSocket transport, so this bridges a Starlette WebSocket to the low-level server's
pair of memory streams, as its stdio transport does for a pipe. What a client sees:

- **Handshake.** Subprotocol ``mcp``: it is selected when offered; a client that offers others but
  not ``mcp`` is refused (HTTP 400). A client that offers none is served without one.
- **Auth before accept.** ``Authorization: Bearer <token>`` only (no query-string token: URLs end up
  in logs). A missing, unknown or revoked token is refused with HTTP 401 and the same JSON body and
  ``WWW-Authenticate`` header as ``/mcp``; a token store that cannot be reached gives HTTP 503. On
  loopback the SDK's Host/Origin check applies (421 / 403), so a web page cannot reach a local
  server through the visitor's browser. Refusals use the ASGI WebSocket denial-response extension
  (uvicorn has it); on a server without it the handshake is closed instead, which the ASGI server
  turns into HTTP 403.
- **Frames.** A text frame that is not JSON gets a -32700 parse error, and JSON that is not a JSON-RPC
  message gets -32600 (id echoed when it can be read, else null); a binary frame gets -32600. The
  connection survives all three. A frame larger than ``max_message_bytes`` closes the socket with
  1009; a server-side failure closes it with 1011.
- **Backpressure.** Both directions go through bounded buffers: a client that stops reading blocks
  the session's writer, and then its reader, rather than growing memory.
- **Keep-alive** is the protocol's ping/pong, sent by uvicorn (``ws_ping_interval`` and
  ``ws_ping_timeout``, 20 s each by default); a peer that stops answering is closed with 1011.

Every message received on a socket carries that socket as its request, so tools find the tenant in
``ctx.request_context.request.scope`` exactly as they do for ``/mcp``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import anyio
import mcp_types as types
import orjson
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from mcp_server.auth import TENANT_SCOPE_KEY, authenticate
from memory.errors import AuthError, StoreUnavailable
from memory.tokens import TokenStore

log = structlog.get_logger(__name__)

SUBPROTOCOL = "mcp"
MAX_MESSAGE_BYTES = 1024 * 1024
BUFFER_MESSAGES = 64
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_POLICY = 1008  # only seen by clients of an ASGI server without the denial-response extension


class McpWebSocket:
    """An ASGI app serving MCP on WebSocket connections; one low-level server session per socket."""

    def __init__(
        self,
        mcp: MCPServer,
        tokens: TokenStore | None,
        default_tenant: str,
        *,
        security: TransportSecuritySettings | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        buffer: int = BUFFER_MESSAGES,
    ) -> None:
        """``tokens=None`` turns auth off (every socket is ``default_tenant``); ``security`` is the
        Host/Origin check, e.g. ``mcp.session_manager.security_settings`` to match ``/mcp``."""
        self._server = mcp._lowlevel_server
        self._tokens = tokens
        self._default_tenant = default_tenant
        self._security = security
        self._max_bytes = max_message_bytes
        self._buffer = buffer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await JSONResponse({"error": "websocket_only", "detail": "connect with a WebSocket"}, 400)(
                scope, receive, send
            )
            return
        websocket = WebSocket(scope, receive, send)
        tenant = await self._admit(websocket)
        if tenant is None:
            return
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol=SUBPROTOCOL if offered else None)
        with structlog.contextvars.bound_contextvars(tenant=tenant, transport="websocket"):
            log.debug("ws.open")
            try:
                await self._serve(websocket)
            except Exception:
                # The connection's top-level boundary: log once, tell the peer, never leak a socket.
                log.exception("ws.session_failed")
                await _close_quietly(websocket, CLOSE_SERVER_ERROR, "server error")
            log.debug("ws.closed")

    async def _admit(self, websocket: WebSocket) -> str | None:
        """Checks Host/Origin, the token and the subprotocol before accepting; the tenant, or None
        when the handshake was refused."""
        refusal = _origin_refusal(websocket, self._security)
        if refusal is not None:
            await _refuse(websocket, *refusal)
            return None
        try:
            tenant = await authenticate(self._tokens, self._default_tenant, websocket.scope)
        except AuthError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="hookline"'}
            await _refuse(websocket, 401, "unauthorized", str(exc), headers)
            return None
        except StoreUnavailable as exc:
            await _refuse(websocket, 503, "unavailable", str(exc), {"Retry-After": "5"})
            return None
        offered = websocket.scope.get("subprotocols") or []
        if offered and SUBPROTOCOL not in offered:
            detail = f"offer the {SUBPROTOCOL!r} subprotocol (offered: {', '.join(offered)})"
            await _refuse(websocket, 400, "unsupported_subprotocol", detail)
            return None
        websocket.scope[TENANT_SCOPE_KEY] = tenant
        return tenant

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


def _origin_refusal(
    websocket: WebSocket, security: TransportSecuritySettings | None
) -> tuple[int, str, str] | None:
    """The SDK's DNS-rebinding rule for /mcp, applied to the handshake: Host must be allowed, and
    Origin too when the client sends one (browsers always do)."""
    if security is None or not security.enable_dns_rebinding_protection:
        return None
    if not _allowed(websocket.headers.get("host"), security.allowed_hosts):
        return 421, "invalid_host", "Invalid Host header"
    origin = websocket.headers.get("origin")
    if origin and not _allowed(origin, security.allowed_origins):
        return 403, "invalid_origin", "Invalid Origin header"
    return None


def _allowed(value: str | None, patterns: Sequence[str]) -> bool:
    """Exact match, or ``base:*`` for any port (the SDK's pattern language)."""
    if not value:
        return False
    return any(value == p or (p.endswith(":*") and value.startswith(p[:-1])) for p in patterns)


async def _refuse(
    websocket: WebSocket, status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> None:
    log.info("ws.refused", status=status, error=code, detail=detail)
    if "websocket.http.response" in (websocket.scope.get("extensions") or {}):
        await websocket.send_denial_response(JSONResponse({"error": code, "detail": detail}, status, headers))
    else:
        await websocket.close(CLOSE_POLICY, code)


async def _close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    with suppress(WebSocketDisconnect, WebSocketDisconnected):  # the peer or we closed it already
        await websocket.close(code, reason)

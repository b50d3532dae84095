"""Refusals at the ASGI edge, in one shape: a JSON ``{"error", "detail"}`` body with a status.

A WebSocket handshake is refused the same way, as an HTTP denial response (the ASGI WebSocket
denial-response extension, which uvicorn has); on a server without it the handshake is closed with
1008 instead, which the server turns into HTTP 403.
"""

from __future__ import annotations

import structlog
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

log = structlog.get_logger(__name__)

CLOSE_POLICY = 1008


async def refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
) -> None:
    log.info("edge.refused", path=scope.get("path"), status=status, error=code, detail=detail)
    response = JSONResponse({"error": code, "detail": detail}, status, headers)
    if scope["type"] != "websocket":
        await response(scope, receive, send)
        return
    websocket = WebSocket(scope, receive, send)
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(CLOSE_POLICY, code)

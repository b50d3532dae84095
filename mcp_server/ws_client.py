"""The client side of MCP over WebSocket, as a transport for the SDK's ``mcp.Client``.

    async with Client(websocket_client("ws://127.0.0.1:8000/ws", {"Authorization": "Bearer hl_..."})) as c:
        await c.list_tools()

A refused handshake raises ``websockets.exceptions.InvalidStatus`` (its ``response.status_code`` is
401, 403, 503 ...) when the ``Client`` is entered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress

import anyio
import mcp_types as types
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.typing import Subprotocol

log = structlog.get_logger(__name__)

SUBPROTOCOL = Subprotocol("mcp")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # replies (a context with its events) can outgrow the 1 MiB default
BUFFER_MESSAGES = 64

Incoming = SessionMessage | Exception
Streams = tuple[MemoryObjectReceiveStream[Incoming], MemoryObjectSendStream[SessionMessage]]


@asynccontextmanager
async def websocket_client(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    max_message_bytes: int | None = MAX_MESSAGE_BYTES,
    open_timeout: float | None = 10,
) -> AsyncIterator[Streams]:
    """Connect to an MCP WebSocket endpoint; yields the (read, write) streams ``mcp.Client`` takes.

    Frames that are not JSON-RPC reach the session as exceptions on the read stream; the read
    stream ends when the server closes the socket.
    """
    async with connect(
        url,
        subprotocols=[SUBPROTOCOL],
        additional_headers=dict(headers or {}),
        max_size=max_message_bytes,
        open_timeout=open_timeout,
    ) as ws:
        inbound_send, inbound = anyio.create_memory_object_stream[Incoming](BUFFER_MESSAGES)
        outbound, outbound_receive = anyio.create_memory_object_stream[SessionMessage](BUFFER_MESSAGES)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_read_frames, ws, inbound_send, name="ws-client-reader")
            tasks.start_soon(_write_frames, ws, outbound_receive, name="ws-client-writer")
            try:
                yield inbound, outbound
            finally:
                tasks.cancel_scope.cancel()


async def _read_frames(ws: ClientConnection, inbound: MemoryObjectSendStream[Incoming]) -> None:
    async with inbound:
        try:
            async for frame in ws:
                await inbound.send(_decode(frame))
        except ConnectionClosedError as exc:  # an abnormal close; a clean one just ends the loop
            log.debug("ws_client.closed", code=exc.rcvd.code if exc.rcvd else None)
            with suppress(anyio.BrokenResourceError):
                await inbound.send(exc)
        except anyio.BrokenResourceError:
            pass  # the session closed its read stream: it is leaving


def _decode(frame: str | bytes) -> Incoming:
    if isinstance(frame, bytes):
        return ValueError("the server sent a binary frame; MCP uses text frames")
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(frame, by_name=False))
    except ValidationError as exc:
        return exc


async def _write_frames(ws: ClientConnection, outbound: MemoryObjectReceiveStream[SessionMessage]) -> None:
    async with outbound:
        async for session_message in outbound:
            try:
                await ws.send(session_message.message.model_dump_json(by_alias=True, exclude_unset=True))
            except ConnectionClosed:
                return  # the reader ends the read stream; the session fails what is still pending

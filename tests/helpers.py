"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import anyio

from memory.models import Event
from memory.settings import Settings


async def wait_until(condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds. Never a fixed sleep."""
    with anyio.fail_after(within):
        while not await condition():  # noqa: ASYNC110 - the condition lives in another process
            await anyio.sleep(0.02)


OWNER_KEY = "hookline:test:owner"  # marks a machine-Redis database as taken by this test run


async def flush_redis(redis: Any) -> None:
    """Empty the test database but keep this run's claim on it."""
    await redis.flushdb()
    await redis.set(OWNER_KEY, os.getpid(), ex=6 * 3600)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def github_headers(body: bytes, secret: str, event: str, delivery: str) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": f"sha256={signature}",
    }


@contextmanager
def serve_app(settings: Settings, bind: str = "127.0.0.1", **kwargs: Any) -> Iterator[str]:
    """Run ``create_app(settings)`` under uvicorn in a thread with its own event loop, on ``bind``
    (an IPv4 address: another loopback address such as 127.0.0.2 works too).

    A thread (not a task) so that async fixtures may hold it across pytest-asyncio's tasks.
    """
    import uvicorn

    from mcp_server.app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(settings, **kwargs), host=bind, port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{bind}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def make_event(
    tenant: str,
    event_type: str,
    payload: dict[str, Any],
    event_id: str,
    *,
    source: str = "gh",
    provider: str = "github",
    received_at: datetime | None = None,
) -> Event:
    return Event(
        id=event_id,
        tenant=tenant,
        source=source,
        provider=provider,
        event_type=event_type,
        received_at=received_at or datetime.now(UTC),
        payload=payload,
    )

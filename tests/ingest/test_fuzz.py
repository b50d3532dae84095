"""Thousands of random and hostile requests against a live server: no 5xx, good requests still pass."""

from __future__ import annotations

import random
import re
import socket
import uuid
from pathlib import Path

import anyio
import httpx2
import orjson

from memory.runtime import Runtime
from memory.sources import SourceStore
from tests.conftest import make_settings
from tests.fixtures.github_examples import load_fixture
from tests.helpers import github_headers, serve_app

SECRET = "fuzz-secret"
GOOD = orjson.dumps(load_fixture("push"))


def _hostile(rng: random.Random) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path, headers, body) of one random, mostly broken request."""
    body = rng.choice(
        [
            rng.randbytes(rng.randint(0, 4000)),
            b"[" * rng.randint(1, 20_000),
            b'{"a": "\xc3\x28"}',
            b'{"a": ' * 3000,
            GOOD[: rng.randint(0, len(GOOD))],
            orjson.dumps({"k" * rng.randint(1, 50): "v" * rng.randint(0, 10_000)}),
            b"payload=%7B%22a%22%3A1%7D&x=" + rng.randbytes(20).hex().encode(),
            b"\x00" * rng.randint(1, 100),
            GOOD,
        ]
    )
    headers = github_headers(
        body, rng.choice([SECRET, "nope", ""]), rng.choice(["push", "", "x" * 300]), str(rng.random())
    )
    for name in rng.sample(list(headers), rng.randint(0, 2)):
        del headers[name]
    if rng.random() < 0.2:
        headers["content-type"] = rng.choice(
            [
                "text/plain",
                "application/x-www-form-urlencoded",
                "",
                "a/b+json",
                "application/json; charset=latin1",
            ]
        )
    if rng.random() < 0.1:
        headers["x-hub-signature-256"] = rng.choice(["sha256=", "sha1=00", "sha256=" + "g" * 64, "=" * 10])
    path = rng.choice(
        ["/hooks/gh", "/hooks/gh", "/hooks/unknown", "/hooks/" + "a" * 300, "/hooks/%00", "/hooks/gh/x"]
    )
    method = rng.choice(["POST"] * 8 + ["GET", "PUT"])
    return method, path, headers, body


async def _good(client: httpx2.AsyncClient) -> int:
    """A new, valid delivery: a new body too, since a byte-identical GitHub body is a replay (200)."""
    delivery = str(uuid.uuid4())
    body = orjson.dumps({**load_fixture("push"), "after": delivery})
    headers = github_headers(body, SECRET, "push", delivery)
    return (await client.post("/hooks/gh", content=body, headers=headers)).status_code


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        try:
            return sock.recv(200)
        except (ConnectionResetError, TimeoutError):
            return b""


async def test_hostile_traffic_gets_4xx_never_5xx(tmp_root: Path, machine_rt: Runtime) -> None:
    await SourceStore(machine_rt.db).add("gh", "github", [SECRET], "default")
    settings = make_settings(
        tmp_root, machine_rt.redis_url, machine_rt.database_url, HOOKLINE_MAX_BODY_BYTES="200000"
    )
    rng = random.Random(20261127)
    statuses: dict[int, int] = {}
    with serve_app(settings) as url:
        limits = httpx2.Limits(max_connections=16)
        async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            for _ in range(30):
                requests = [_hostile(rng) for _ in range(100)]

                async def send(method: str, path: str, headers: dict[str, str], body: bytes) -> None:
                    response = await client.request(method, path, headers=headers, content=body)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

                async with anyio.create_task_group() as tasks:
                    for request in requests:
                        tasks.start_soon(send, *request)
                assert await _good(client) == 202  # good requests keep flowing
            port = int(url.rsplit(":", 1)[1])
            oversized_header = b"POST /hooks/gh HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
            broken_framing = b"POST /hooks/gh HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello"
            garbage = b"\x16\x03\x01\x02\x00" + rng.randbytes(300)
            for raw in (oversized_header, broken_framing, garbage):
                reply = await anyio.to_thread.run_sync(_raw, port, raw)
                assert not re.match(rb"HTTP/1\.[01] 5", reply), reply
            assert await _good(client) == 202
    assert sum(statuses.values()) == 3000
    assert not [code for code in statuses if code >= 500], statuses
    assert (
        statuses.get(401, 0) > 100 and statuses.get(400, 0) > 10
    )  # the hostile inputs were judged, not ignored

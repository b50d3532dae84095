"""The intake and the sources' stored configuration: a bad stored option, or a sealed secret that no
configured key opens, answers 503 ``source_misconfigured`` (with Retry-After) and queues nothing,
never a 500 or a 401; a sealed secret with its key, and an option given in human form, are 202."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import orjson
import pytest
from psycopg.types.json import Jsonb

from memory import keys
from memory.crypto import Keyring, generate_key
from memory.runtime import Runtime
from memory.source_options import SourceOptions
from memory.sources import SourceStore
from tests.conftest import make_settings
from tests.fixtures.github_examples import load_fixture
from tests.helpers import github_headers, serve_app

SECRET = "It's a Secret to Everybody"
KEY_1 = generate_key("k1")
KEY_2 = generate_key("k2")


def _signed(secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps({**load_fixture("push"), "after": uuid.uuid4().hex})  # a new body each time
    return body, github_headers(body, secret, "push", str(uuid.uuid4()))


async def _queued(rt: Runtime) -> int:
    return sum([int(await rt.redis.xlen(keys.events_stream(p))) for p in range(rt.settings.partitions)])


async def _sources(rt: Runtime) -> None:
    """sealed (k1), foreign (sealed with k2), broken (a bad option written into its row), daily
    (``dedup_window=24h``, which used to make every delivery a 500) and plain (no sealing)."""
    await SourceStore(rt.db, Keyring.parse(KEY_1)).add("sealed", "github", [SECRET], "default")
    await SourceStore(rt.db, Keyring.parse(KEY_2)).add("foreign", "github", [SECRET], "default")
    store = SourceStore(rt.db)
    await store.add("broken", "github", [SECRET], "default")
    async with rt.db.connection() as conn:
        await conn.execute(
            "UPDATE sources SET config = %s WHERE name = 'broken'", (Jsonb({"dedup_window": "24 hours"}),)
        )
    await store.add(
        "daily", "github", [SECRET], "default", SourceOptions.from_pairs(["dedup_window=24h"], "github")
    )
    await store.add("plain", "github", [SECRET], "default")


@pytest.fixture
async def sources(machine_rt: Runtime) -> AsyncIterator[Runtime]:
    await _sources(machine_rt)
    yield machine_rt


async def _post(client: httpx2.AsyncClient, name: str) -> httpx2.Response:
    body, headers = _signed()
    return await client.post(f"/hooks/{name}", content=body, headers=headers)


def _misconfigured(response: httpx2.Response, reason: str) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "source_misconfigured" and reason in response.json()["detail"]
    assert int(response.headers["retry-after"]) >= 1


async def test_with_the_keys_sealed_secrets_verify_and_bad_sources_get_503(
    tmp_root: Path, sources: Runtime
) -> None:
    rt = sources
    settings = make_settings(tmp_root, rt.redis_url, rt.database_url, HOOKLINE_ENCRYPTION_KEYS=f"{KEY_1}")
    with serve_app(settings, roles=("intake",)) as url:
        async with httpx2.AsyncClient(base_url=url) as client:
            assert (await _post(client, "sealed")).status_code == 202
            assert (await _post(client, "plain")).status_code == 202  # from before sealing: still works
            body, headers = _signed()
            assert (await client.post("/hooks/daily", content=body, headers=headers)).status_code == 202
            again = await client.post("/hooks/daily", content=body, headers=headers)
            assert again.status_code == 200 and again.json()["duplicate"] is True
            queued = await _queued(rt)
            assert queued == 3
            _misconfigured(await _post(client, "broken"), "dedup_window")
            _misconfigured(await _post(client, "foreign"), "'k2', which is not configured")
            forged = await client.post("/hooks/sealed", content=b"{}", headers=_signed("wrong")[1])
            assert forged.status_code == 401  # the sealed secret is the one checked
            assert await _queued(rt) == queued


async def test_without_the_keys_a_sealed_source_gets_503_not_401(tmp_root: Path, sources: Runtime) -> None:
    rt = sources
    settings = make_settings(tmp_root, rt.redis_url, rt.database_url)
    with serve_app(settings, roles=("intake",)) as url:
        async with httpx2.AsyncClient(base_url=url) as client:
            for _ in range(3):  # cached as misconfigured: the same answer each time
                _misconfigured(await _post(client, "sealed"), "HOOKLINE_ENCRYPTION_KEYS is not set")
            assert (await _post(client, "plain")).status_code == 202
            assert await _queued(rt) == 1

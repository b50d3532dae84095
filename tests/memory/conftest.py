"""Fixtures of the memory tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memory.runtime import Runtime, open_runtime
from tests.conftest import make_settings
from tests.helpers import flush_redis


@pytest.fixture
async def vrt(tmp_root: Path, machine_redis_url: str, embedded_database_url: str) -> AsyncIterator[Runtime]:
    """A runtime with vectors: the embedded PostgreSQL (pgvector) and the real local embedder, emptied."""
    settings = make_settings(tmp_root, machine_redis_url, embedded_database_url)
    async with open_runtime(settings, migrate=False) as runtime:
        await flush_redis(runtime.redis)
        async with runtime.db.connection() as conn:
            await conn.execute("TRUNCATE events, contexts, ledger, rollups, context_links")
        yield runtime

"""The workers' per-source retry policies come from the sources' typed options; a source whose stored
options do not parse is skipped with a logged error, and the others still get theirs."""

from __future__ import annotations

from psycopg.types.json import Jsonb
from structlog.testing import capture_logs

from ingest.retry import RetryPolicy
from mcp_server.app import _retry_policies
from memory.runtime import Runtime
from memory.source_options import SourceOptions
from memory.sources import SourceStore


async def test_policies_follow_the_options_and_a_bad_source_is_skipped(machine_rt: Runtime) -> None:
    store = SourceStore(machine_rt.db)
    options = SourceOptions.from_pairs(
        ["retry_base_s=2", "retry_cap_s=10m", "retry_max_attempts=9"], "github"
    )
    await store.add("patient", "github", ["s"], "default", options)
    await store.add("hasty", "github", ["s"], "default", SourceOptions(retry_max_attempts=1))
    await store.add("usual", "github", ["s"], "default", SourceOptions(priority=0.9))
    await store.add("broken", "github", ["s"], "default")
    async with machine_rt.db.connection() as conn:
        await conn.execute(
            "UPDATE sources SET config = %s WHERE name = 'broken'", (Jsonb({"retry_base_s": "soon"}),)
        )
    with capture_logs() as logs:
        policies = await _retry_policies(machine_rt)
    default = RetryPolicy()
    assert dict(policies.per_source) == {
        "patient": RetryPolicy(base_s=2.0, cap_s=600.0, max_attempts=9),
        "hasty": RetryPolicy(base_s=default.base_s, cap_s=default.cap_s, max_attempts=1),
    }
    assert policies.for_source("broken") == policies.for_source("usual") == default
    errors = [log for log in logs if log["log_level"] == "error"]
    assert [(e["event"], e["source"]) for e in errors] == [("retry.bad_options", "broken")]
    assert "retry_base_s" in errors[0]["error"]

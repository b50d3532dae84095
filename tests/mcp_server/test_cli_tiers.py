"""`hookline tier run --now` and `hookline export` as a user runs them (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event

HOOKLINE = str(Path(sys.executable).with_name("hookline"))


def _cli(rt: Runtime, tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env |= {
        "HOOKLINE_REDIS_URL": rt.redis_url,
        "HOOKLINE_DATABASE_URL": rt.database_url,
        "HOOKLINE_DATA_DIR": str(tmp_path),
        "HOOKLINE_BLOB_URL": rt.settings.blob_url,
        "HOOKLINE_PARTITIONS": str(rt.settings.partitions),
    }
    done = subprocess.run([HOOKLINE, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_tier_run_and_export_cover_every_tier(machine_rt: Runtime, tmp_path: Path) -> None:
    service = MemoryService(machine_rt)
    await service.apply_events(
        [make_event("default", "push", load_fixture("push"), f"gh:e{i}") for i in range(3)]
        + [make_event("default", "issues", load_fixture("issues_opened"), "gh:i")]
    )
    later = (datetime.now(UTC) + timedelta(hours=10)).isoformat()
    report = orjson.loads(_cli(machine_rt, tmp_path, "tier", "run", "--now", later))
    assert report["to_warm"] == 2
    much_later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    assert orjson.loads(_cli(machine_rt, tmp_path, "tier", "run", "--now", much_later))["to_cold"] == 2
    since = (datetime.now(UTC) - timedelta(days=3650)).isoformat()
    lines = _cli(machine_rt, tmp_path, "export", "--since", since, "--payloads").splitlines()
    exported = [orjson.loads(line) for line in lines]
    assert len(exported) == 2 and {c["head"]["tier"] for c in exported} == {"cold"}
    events = sorted(e["id"] for c in exported for e in c["events"])
    assert events == ["gh:e0", "gh:e1", "gh:e2", "gh:i"]
    assert all(e["payload"] for c in exported for e in c["events"])  # the full archive, not a summary

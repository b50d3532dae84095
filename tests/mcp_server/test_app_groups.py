"""``serve --groups``: a worker process runs only the consumer groups it is given, so the context
group can live in a process of its own (embedding in another cannot delay the hot tier)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx2
import pytest

from memory.runtime import Runtime
from tests.conftest import make_settings
from tests.e2e.serve_process import HOOKLINE, hookline_env
from tests.helpers import serve_app, wait_until


@pytest.mark.parametrize(
    ("groups", "expected"), [(("context",), {"context"}), (("index", "audit"), {"index", "audit"})]
)
async def test_a_worker_process_runs_only_its_groups(
    tmp_root: Path, machine_rt: Runtime, groups: tuple[str, ...], expected: set[str]
) -> None:
    urls = (machine_rt.redis_url, machine_rt.database_url)
    settings = make_settings(tmp_root, *urls, HOOKLINE_EMBEDDER="none")
    with serve_app(settings, roles=("api", "worker"), groups=groups) as url:
        async with httpx2.AsyncClient(base_url=url) as client:

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await wait_until(ready, within=30)  # every consumer has written its heartbeat
            checks = (await client.get("/readyz")).json()["checks"]
    running = {name.split(":")[1] for name in checks if name.startswith("consumer:")}
    assert running == expected, checks


def test_the_cli_refuses_an_unknown_group(tmp_path: Path) -> None:
    # A process of its own: main() configures logging for the process it runs in.
    argv = [HOOKLINE, "serve", "--roles", "worker", "--groups", "context,embeddings"]
    done = subprocess.run(argv, env=hookline_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--groups takes a subset of context,index,audit" in done.stderr

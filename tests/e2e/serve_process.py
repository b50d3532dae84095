"""`hookline serve` as a subprocess on its embedded defaults, for the e2e tests.

The same start and stop as tests/e2e/test_serve.py's fixture: a clean environment (no HOOKLINE_*
from outside), a data dir of the caller's, wait for /readyz, SIGTERM and a graceful exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2

from tests.helpers import free_port, wait_until

HOOKLINE = str(Path(sys.executable).with_name("hookline"))


@dataclass(frozen=True)
class ServeProcess:
    url: str
    env: dict[str, str]
    log: Path


def hookline_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """This process's environment less any HOOKLINE_*, on the embedded stores under ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    return {**env, "HOOKLINE_DATA_DIR": str(data_dir), "HOOKLINE_LOG_JSON": "1", **settings}


def run_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([HOOKLINE, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextmanager
def serve_process(env: dict[str, str], ready_within: float = 60.0) -> Iterator[ServeProcess]:
    """Run `hookline serve` on a free port until the block ends; its output goes to serve.log."""
    port = free_port()
    env = {**env, "HOOKLINE_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    log = Path(env["HOOKLINE_DATA_DIR"]) / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        process = subprocess.Popen([HOOKLINE, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        anyio.run(_wait_ready, url, process, ready_within)
        yield ServeProcess(url, env, log)
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once its graceful shutdown is done
        assert process.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()[-3000:]


async def _wait_ready(url: str, process: subprocess.Popen[bytes], within: float) -> None:
    async with httpx2.AsyncClient(timeout=1) as http:

        async def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"hookline serve exited with {process.returncode}")
            try:
                return (await http.get(f"{url}/readyz")).status_code == 200
            except httpx2.TransportError:
                return False

        await wait_until(ready, within=within)

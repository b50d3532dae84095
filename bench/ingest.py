"""Webhook intake throughput and latency: ``hookline serve --roles api`` against a bare Starlette app.

    .venv/bin/python bench/ingest.py [--seconds 10] [--connections 64] [--port P]

Both servers get the same wrk load: signed GitHub deliveries (bodies from tests/fixtures/github),
each with its own X-GitHub-Delivery, so every Hookline request takes the full path to one XADD.
Afterwards the stream lengths must match the requests Hookline accepted, with no 5xx.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import redis

from memory import keys
from memory.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests/fixtures/github"
BIN = Path(sys.executable).parent
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"  # db 14 is reserved for this bench: it is flushed
SOURCE = "bench"

# wrk's Lua: every thread reads the request file, keeps every `step`-th delivery from offset `tid`
# (so no two connections send the same delivery), and counts status codes; done() sums the threads.
WRK_SCRIPT = r"""
local threads, nthreads = {}, 0
function setup(thread)
  thread:set("tid", nthreads); nthreads = nthreads + 1; table.insert(threads, thread)
end
function init(args)
  local f, step = assert(io.open(args[1], "rb")), tonumber(args[2])
  heads, bodies, picks, ids, pos, wrapped, statuses = {}, {}, {}, {}, 0, 0, {}
  for i = 1, tonumber(f:read("*l")) do
    local hlen, blen = f:read("*l"):match("^(%d+) (%d+)$")
    heads[i], bodies[i] = f:read(tonumber(hlen)), f:read(tonumber(blen))
  end
  local n = 0
  for line in f:lines() do
    if n % step == tid then
      local i, id = line:match("^(%d+) (%S+)$")
      picks[#picks + 1], ids[#ids + 1] = tonumber(i), id
    end
    n = n + 1
  end
  f:close()
end
function request()
  pos = pos + 1
  if pos > #ids then pos, wrapped = 1, wrapped + 1 end
  local i = picks[pos]
  return heads[i] .. ids[pos] .. "\r\n\r\n" .. bodies[i]
end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local codes, parts, wraps, e = {}, {}, 0, summary.errors
  for _, t in ipairs(threads) do
    for code, c in pairs(t:get("statuses")) do codes[code] = (codes[code] or 0) + c end
    wraps = wraps + t:get("wrapped")
  end
  for code, c in pairs(codes) do parts[#parts + 1] = string.format('"%d":%d', code, c) end
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"wrapped":%d,"socket_errors":%d,"codes":{%s}}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), wraps, e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ",")))
end
"""


@dataclass(frozen=True)
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    codes: dict[int, int]
    socket_errors: int
    wrapped: int

    @property
    def errors(self) -> int:
        return self.socket_errors + sum(n for code, n in self.codes.items() if not 200 <= code < 300)

    @property
    def accepted(self) -> int:
        return self.codes.get(202, 0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1: wrk takes one core)")
    parser.add_argument("--port", type=int, default=0, help="hookline's port (default: a free one)")
    parser.add_argument("--deliveries", type=int, default=0, help="default: 30,000 per second of load")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help="only the default db is flushed")
    parser.add_argument("--database-url", default="", help="default: embedded PostgreSQL in a temp dir")
    parser.add_argument("--profile", metavar="SVG", help="py-spy record hookline into SVG (.txt: raw)")
    return parser.parse_args()


def load_bodies() -> list[tuple[str, bytes]]:
    """(X-GitHub-Event, compact JSON body) of each fixture; the event is the name less its action."""
    bodies = []
    for path in sorted(FIXTURES.glob("*.json")):
        payload = orjson.loads(path.read_bytes())
        action = payload.get("action") if isinstance(payload, dict) else None
        event = path.stem.removesuffix(f"_{action}") if action else path.stem
        bodies.append((event, orjson.dumps(payload)))
    return bodies or [("pull_request", builtin_pull_request())]


def builtin_pull_request() -> bytes:
    """A ~6 KB pull_request delivery, for checkouts without tests/fixtures/github."""
    user = {"login": "octocat", "id": 1, "node_id": "MDQ6VXNlcjE=", "type": "User", "site_admin": False}
    user |= {f"{k}_url": f"https://api.github.com/users/octocat/{k}" for k in ("repos", "events")}
    repo = {"id": 1296269, "name": "Hello-World", "full_name": "octocat/Hello-World", "owner": user}
    repo |= {f"{k}_url": f"https://api.github.com/repos/octocat/Hello-World/{k}" for k in
             ("issues", "pulls", "commits", "branches", "tags", "labels", "hooks", "events", "forks")}
    ref = {"label": "octocat:main", "ref": "main", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"}
    pull = {"url": "https://api.github.com/repos/octocat/Hello-World/pulls/1347", "id": 1, "number": 1347,
            "state": "open", "title": "Amazing new feature", "user": user, "body": "Please pull. " * 120,
            "created_at": "2011-01-26T19:01:12Z", "head": ref | {"repo": repo}, "base": ref | {"repo": repo},
            "merged": False, "commits": 3, "additions": 100, "deletions": 3, "changed_files": 5}
    return orjson.dumps({"action": "opened", "number": 1347, "pull_request": pull, "repository": repo,
                         "sender": user})


def write_requests(path: Path, secret: str, count: int) -> list[bytes]:
    """The wrk request file: one template per body (all headers but the delivery id), then
    ``count`` lines of ``<template> <delivery uuid>``. Returns the templates, for the smoke test."""
    templates: list[tuple[bytes, bytes]] = []
    for event, body in load_bodies():
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        head_text = (
            f"POST /hooks/{SOURCE} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: GitHub-Hookshot/bench\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nX-GitHub-Event: {event}\r\n"
            f"X-GitHub-Hook-ID: 1\r\nX-Hub-Signature-256: sha256={signature}\r\nX-GitHub-Delivery: "
        )
        templates.append((head_text.encode(), body))
    with path.open("wb") as out:
        out.write(b"%d\n" % len(templates))
        for head, body in templates:
            out.write(b"%d %d\n%s%s" % (len(head), len(body), head, body))
        out.writelines(b"%d %s\n" % (1 + i % len(templates), uuid.uuid4().hex.encode()) for i in range(count))
    return [head + uuid.uuid4().hex.encode() + b"\r\n\r\n" + body for head, body in templates]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(name: str, argv: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[int]:
    """Start a server (in its own session, so Ctrl-C reaches only us), wait for /healthz, yield its
    pid; on exit SIGTERM it and wait, so its lifespan closes (and the embedded PostgreSQL stops)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(name, proc, port, log)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(name: str, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline, url = time.monotonic() + 90, f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
            if answer.status == 200:
                return
        time.sleep(0.1)
    sys.exit(f"{name} did not answer /healthz within 90 s; see {log}")


def post_raw(port: int, raw_request: bytes) -> int:
    """Send one pre-built request; its status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw_request.replace(b"Host: 127.0.0.1\r\n", b"Connection: close\r\nHost: 127.0.0.1\r\n"))
        return int(sock.makefile("rb").readline().split()[1])


def run_wrk(name: str, port: int, work: Path, args: argparse.Namespace, profile: int | None) -> Result:
    spy = None
    if profile is not None:
        form = "raw" if args.profile.endswith(".txt") else "flamegraph"  # raw: collapsed stacks
        spy = subprocess.Popen([str(BIN / "py-spy"), "record", "-d", str(args.seconds), "-f", form, "-o",
                                args.profile, "--pid", str(profile)], stdout=subprocess.DEVNULL)
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "10s",
               "--latency", "-s", str(work / "deliveries.lua"), f"http://127.0.0.1:{port}/hooks/{SOURCE}",
               "--", str(work / "requests.txt"), str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    if spy is not None:
        spy.wait()
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON "))
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    return Result(name, raw["requests"] / (raw["duration_us"] / 1e6), raw["p50_us"] / 1000,
                  raw["p99_us"] / 1000, {int(k): v for k, v in raw["codes"].items()},
                  raw["socket_errors"], raw["wrapped"])


def stream_total(client: redis.Redis, partitions: int) -> int:
    return sum(int(client.xlen(keys.events_stream(p))) for p in range(partitions))


def metric_202(port: int) -> int:
    """Server-side count of 202 answers on /hooks (hookline_webhooks_total)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    pattern = r'^hookline_webhooks_total\{[^}]*outcome="202"[^}]*\} (\S+)$'
    return sum(int(float(v)) for v in re.findall(pattern, text, re.MULTILINE))


def hookline_env(args: argparse.Namespace, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ, HOOKLINE_DATA_DIR=str(data_dir), HOOKLINE_REDIS_URL=args.redis_url)
    env.pop("HOOKLINE_DATABASE_URL", None)
    if args.database_url:
        env["HOOKLINE_DATABASE_URL"] = args.database_url
    return env


@dataclass(frozen=True)
class Check:
    xadded: int  # entries added to hl:{p*}:events during the run
    served_202: int  # 202s the server counted during the run
    partitions: int

    def problems(self, result: Result, connections: int) -> list[str]:
        found = []
        in_flight = self.xadded - result.accepted  # accepted, but wrk stopped before reading the answer
        if self.served_202 != self.xadded:
            found.append(f"server answered 202 {self.served_202} times but {self.xadded} entries were XADDed")
        if not 0 <= in_flight <= connections:
            found.append(f"wrk saw {result.accepted} 202s but {self.xadded} entries were XADDed")
        if server_errors := sum(n for code, n in result.codes.items() if code >= 500):
            found.append(f"{server_errors} responses were 5xx")
        if result.wrapped or result.codes.get(200):
            found.append("deliveries repeated (raise --deliveries): duplicates were measured")
        return found


def smoke(name: str, port: int, templates: list[bytes]) -> None:
    if (status := post_raw(port, templates[0])) != 202:
        sys.exit(f"{name}: a signed delivery got {status}, not 202")


def bench_bare(work: Path, args: argparse.Namespace, templates: list[bytes]) -> Result:
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench/bare_app.py"), "--port", str(port)]
    with running("bare starlette", argv, dict(os.environ), port, work / "bare.log"):
        smoke("bare starlette", port, templates)
        return run_wrk("bare starlette", port, work, args, None)


def bench_hookline(
    work: Path, args: argparse.Namespace, secret: str, templates: list[bytes]
) -> tuple[Result, Check]:
    env = hookline_env(args, work / "data")
    partitions = load_settings(env).partitions
    client = redis.Redis.from_url(args.redis_url)
    if args.redis_url == DEFAULT_REDIS:
        client.flushdb()
    add = [str(BIN / "hookline"), "source", "add", SOURCE, "--provider", "github", "--secret", secret]
    subprocess.run(add, env=env, check=True, capture_output=True)
    port = args.port or free_port()
    argv = [str(BIN / "hookline"), "serve", "--port", str(port), "--roles", "api"]
    with running("hookline", argv, env, port, work / "hookline.log") as pid:
        smoke("hookline", port, templates)
        xlen_before, served_before = stream_total(client, partitions), metric_202(port)
        result = run_wrk("hookline intake", port, work, args, pid if args.profile else None)
        # Requests wrk abandoned at the deadline still finish on the server: let them land.
        deadline, counts = time.monotonic() + 5, (0, -1)
        while counts[0] != counts[1] and time.monotonic() < deadline:
            time.sleep(0.2)
            counts = (stream_total(client, partitions) - xlen_before, metric_202(port) - served_before)
    client.close()
    return result, Check(counts[0], counts[1], partitions)


def report(args: argparse.Namespace, bare: Result, hook: Result, check: Check, body_kb: float) -> bool:
    print(f"\nwebhook intake on {os.cpu_count()} cores: wrk {args.threads} thread(s) x {args.connections} "
          f"connections, {args.seconds} s per server, signed GitHub deliveries averaging {body_kb:.1f} KB")
    print("hookline runs `serve --roles api`: intake only; its workers are off so they don't compete for "
          "CPU (accepted events stay queued in the streams)\n")
    print(f"{'server':<18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>9}")
    for r in (bare, hook):
        print(f"{r.name:<18}{r.rps:>10,.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}{r.errors:>9,}")
    print(f"{'hookline/bare':<18}{hook.rps / bare.rps:>9.2f}x{hook.p50_ms / bare.p50_ms:>9.2f}x"
          f"{hook.p99_ms / bare.p99_ms:>9.2f}x")
    problems = check.problems(hook, args.connections)
    streams = f"hl:{{p0..p{check.partitions - 1}}}:events"
    print(f"\ncheck: wrk got {hook.accepted:,} x 202; server answered 202 {check.served_202:,} times; "
          f"{check.xadded:,} entries XADDed to {streams} "
          f"({check.xadded - hook.accepted} in flight when wrk stopped) -> {'; '.join(problems) or 'OK'}")
    return not problems


def reproduce(args: argparse.Namespace) -> str:
    argv = [sys.executable, str(Path(__file__).resolve()), "--seconds", str(args.seconds),
            "--connections", str(args.connections), "--threads", str(args.threads)]
    for flag, value in (("--port", args.port), ("--deliveries", args.deliveries),
                        ("--database-url", args.database_url), ("--profile", args.profile)):
        argv += [flag, str(value)] if value else []
    return shlex.join(argv + ([] if args.redis_url == DEFAULT_REDIS else ["--redis-url", args.redis_url]))


def main() -> int:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the servers (and the embedded PostgreSQL) are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    secret = secrets.token_hex(20)
    with tempfile.TemporaryDirectory(prefix="hookline-bench-") as tmp:
        work = Path(tmp)
        (work / "deliveries.lua").write_text(WRK_SCRIPT)
        templates = write_requests(work / "requests.txt", secret, args.deliveries or 30_000 * args.seconds)
        body_kb = sum(len(t.split(b"\r\n\r\n", 1)[1]) for t in templates) / len(templates) / 1024
        print(f"bench dir {work}; running bare starlette, then hookline, {args.seconds} s each ...")
        bare = bench_bare(work, args, templates)
        hook, check = bench_hookline(work, args, secret, templates)
        ok = report(args, bare, hook, check, body_kb)
    if args.profile:
        print(f"profile of the hookline server: {args.profile}")
    print(f"reproduce: {reproduce(args)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

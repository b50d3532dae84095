"""Webhook intake throughput and latency: ``hookline serve --roles api`` against a bare Starlette app.

Both get the same wrk load: GitHub deliveries (bodies from tests/fixtures/github), each with its own
X-GitHub-Delivery and its own raw body, signed for it, so none is a duplicate (intake also dedups on the
body's sha256) and every request takes Hookline's full path to one XADD. Then the streams must hold
exactly the deliveries Hookline accepted (202), with no duplicates and no 5xx.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
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

# Each body ends in PAD_DIGITS characters of JSON whitespace spelling its index in base 4, so every raw
# body (and its sha256) differs while the payload parses the same. WRK_SCRIPT maps digits as PAD does.
PAD = b" \t\n\r"
PAD_DIGITS = 12  # 4**12: 16.7 M distinct bodies per fixture

# wrk's Lua: every thread reads the request file and keeps every `step`-th delivery from offset `tid`,
# so no two connections send the same delivery. A request is its fixture's head, the delivery's id and
# signature, the fixture's body and the delivery's padding: concatenation only, no hashing in Lua.
# done() prints the figures as one JSON line.
WRK_SCRIPT = r"""
local count = 0
local PAD = {["0"] = " ", ["1"] = "\t", ["2"] = "\n", ["3"] = "\r"}
function setup(thread) thread:set("tid", count); count = count + 1 end
function init(args)
  local f, step, n = assert(io.open(args[1], "rb")), tonumber(args[2]), -1
  heads, bodies, picks, tails, pads, pos = {}, {}, {}, {}, {}, 0
  for i = 1, tonumber(f:read("*l")) do
    local hlen, blen = f:read("*l"):match("^(%d+) (%d+)$")
    heads[i], bodies[i] = f:read(tonumber(hlen)), f:read(tonumber(blen))
  end
  for line in f:lines() do
    n = n + 1
    if n % step == tid then
      local i, id, signature, digits = line:match("^(%d+) (%x+) (%x+) ([0-3]+)$")
      picks[#picks + 1] = tonumber(i)
      tails[#tails + 1] = id .. "\r\nX-Hub-Signature-256: sha256=" .. signature .. "\r\n\r\n"
      pads[#pads + 1] = (digits:gsub("%d", PAD))
    end
  end
end
function request()
  pos = pos % #picks + 1
  local t = picks[pos]
  return heads[t] .. tails[pos] .. bodies[t] .. pads[pos]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"http_errors":%d,"socket_errors":%d}\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Result:
    name: str
    requests: int  # answers read
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # 4xx/5xx answers, socket errors and timeouts
    answered_ok: int  # 2xx/3xx answers


@dataclass(frozen=True)
class Check:
    xadded: int  # entries added to hl:{p*}:events during the run
    answers: Counter[int]  # the server's own count of its answers during the run, by status code
    partitions: int

    def problems(self, result: Result, connections: int, deliveries: int) -> list[str]:
        found, accepted = [], self.answers[202]
        if accepted != self.xadded:
            found.append(f"the server answered 202 {accepted:,} times but XADDed {self.xadded:,} entries")
        # When wrk stops it drops its in-flight requests: some were accepted, some cut off (400 disconnected).
        if not 0 <= (sent := sum(self.answers.values())) - result.requests <= connections:
            found.append(f"the server sent {sent:,} answers but wrk read {result.requests:,}")
        if server_errors := sum(n for code, n in self.answers.items() if code >= 500):
            found.append(f"{server_errors:,} answers were 5xx")
        # Beyond the cut-off 400s, a 4xx means the load is wrong (401: a bad signature, 429: rate limited).
        if (rejected := sum(n for code, n in self.answers.items() if 400 <= code < 500)) > connections:
            found.append(f"{rejected:,} answers were 4xx")
        if not accepted:
            found.append("no delivery was accepted")
        # Every delivery has its own id and its own body, so not one should be a duplicate (200).
        if duplicates := self.answers[200]:
            wrapped = result.requests > deliveries
            cause = "wrk went round the request file: raise --deliveries" if wrapped else "a body repeats"
            found.append(f"{duplicates:,} answers were 200 duplicate ({cause})")
        return found


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
    args = parser.parse_args()
    args.deliveries = args.deliveries or 30_000 * args.seconds
    if not 0 < args.deliveries <= len(PAD) ** PAD_DIGITS:
        parser.error(f"--deliveries must be within 1..{len(PAD) ** PAD_DIGITS:,} (distinct paddings)")
    return args


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
    repo = {"id": 1296269, "full_name": "octocat/Hello-World", "owner": user, "private": False}
    ref = {"label": "octocat:main", "ref": "main", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e"}
    pull = {"number": 1347, "state": "open", "title": "New feature", "user": user, "body": "Pull! " * 900}
    pull |= {"head": ref | {"repo": repo}, "base": ref | {"repo": repo}, "created_at": "2011-01-26T19:01Z"}
    return orjson.dumps({"action": "opened", "number": 1347, "pull_request": pull, "repository": repo})


def write_requests(path: Path, secret: str, count: int) -> float:
    """The wrk request file: one template per fixture (its headers up to the delivery id, with a
    Content-Length that counts the padding, then its body), then ``count`` lines of ``<template>
    <delivery uuid> <hex signature> <padding digits>``. Returns the mean body size in KB."""
    templates: list[tuple[bytes, bytes]] = []
    for event, body in load_bodies():
        head = (
            f"POST /hooks/{SOURCE} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: GitHub-Hookshot/bench\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body) + PAD_DIGITS}\r\n"
            f"X-GitHub-Event: {event}\r\nX-GitHub-Hook-ID: 1\r\nX-GitHub-Delivery: "
        )
        templates.append((head.encode(), body))
    macs = [hmac.new(secret.encode(), body, "sha256") for _, body in templates]
    with path.open("wb") as out:
        out.write(b"%d\n" % len(templates))
        for head, body in templates:
            out.write(b"%d %d\n%s%s" % (len(head), len(body), head, body))
        out.writelines(delivery_lines(macs, count))
    return sum(len(body) + PAD_DIGITS for _, body in templates) / len(templates) / 1024


def delivery_lines(macs: list[hmac.HMAC], count: int) -> Iterator[bytes]:
    """A line per delivery, round the templates; delivery ``i`` is padded with ``i`` in base 4. Each
    fixture's HMAC has already read its body, so a copy of it signs a delivery by reading the padding:
    signing costs the same whatever the body's size."""
    half = PAD_DIGITS // 2  # the padding is two halves, looked up in tables of 4**half entries
    digits = [bytes(d) for d in itertools.product(b"0123", repeat=half)]  # in base-4 order
    pads = [d.translate(bytes.maketrans(b"0123", PAD)) for d in digits]
    for i in range(count):
        high, low = divmod(i, len(digits))
        mac = macs[i % len(macs)].copy()
        mac.update(pads[high] + pads[low])
        signature, delivery = mac.hexdigest().encode(), uuid.uuid4().hex.encode()
        yield b"%d %s %s %s%s\n" % (1 + i % len(macs), delivery, signature, digits[high], digits[low])


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(name: str, argv: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[int]:
    """Start a server (in its own session, so Ctrl-C reaches only us), wait for /healthz, yield its
    pid; on exit SIGTERM it and wait, so its lifespan closes (and the embedded PostgreSQL stops)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError):
                get(port, "/healthz")
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{name} did not start ({proc.returncode=}):\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(port: int, path: str) -> str:
    """The body of a 2xx answer; raises OSError (urllib's HTTPError) otherwise."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        return str(answer.read().decode())


def run_wrk(name: str, port: int, work: Path, args: argparse.Namespace, profile: int | None) -> Result:
    spy = None
    if profile is not None:  # py-spy samples the server while wrk runs; .txt gets collapsed stacks
        form = "raw" if args.profile.endswith(".txt") else "flamegraph"
        record = f"record -d {args.seconds} -f {form} --pid {profile} -o".split()
        spy = subprocess.Popen([str(BIN / "py-spy"), *record, args.profile], stdout=subprocess.DEVNULL)
    load = f"-t{args.threads} -c{args.connections} -d{args.seconds}s --timeout 10s --latency".split()
    url, lua_args = f"http://127.0.0.1:{port}/hooks/{SOURCE}", [str(work / "requests.txt"), str(args.threads)]
    command = ["wrk", *load, "-s", str(work / "deliveries.lua"), url, "--", *lua_args]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # errors: on stderr
    if spy is not None:
        spy.wait()
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON "))
    raw: dict[str, int] = orjson.loads(line.removeprefix("BENCH_JSON "))
    requests, http_errors, seconds = raw["requests"], raw["http_errors"], raw["duration_us"] / 1e6
    p50, p99, errors = raw["p50_us"] / 1000, raw["p99_us"] / 1000, http_errors + raw["socket_errors"]
    return Result(name, requests, requests / seconds, p50, p99, errors, requests - http_errors)


def stream_total(client: redis.Redis, partitions: int) -> int:
    return sum(int(client.xlen(keys.events_stream(p))) for p in range(partitions))


def outcomes(port: int) -> Counter[int]:
    """The server's own count of /hooks answers by status code (hookline_webhooks_total)."""
    found: Counter[int] = Counter()
    pattern = r'^hookline_webhooks_total\{.*outcome="(\d+)".*\} (\S+)$'
    for code, value in re.findall(pattern, get(port, "/metrics"), re.MULTILINE):
        found[int(code)] += int(float(value))
    return found


def bench_bare(work: Path, args: argparse.Namespace) -> Result:
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench/bare_app.py"), "--port", str(port)]
    with running("bare starlette", argv, dict(os.environ), port, work / "bare.log"):
        return run_wrk("bare starlette", port, work, args, None)


def bench_hookline(work: Path, args: argparse.Namespace, secret: str) -> tuple[Result, Check]:
    env = {k: v for k, v in os.environ.items() if k != "HOOKLINE_DATABASE_URL"}
    env |= {"HOOKLINE_DATA_DIR": str(work / "data"), "HOOKLINE_REDIS_URL": args.redis_url}
    env |= {"HOOKLINE_DATABASE_URL": args.database_url} if args.database_url else {}
    partitions = load_settings(env).partitions
    client = redis.Redis.from_url(args.redis_url)
    if args.redis_url == DEFAULT_REDIS:
        client.flushdb()
    add = [str(BIN / "hookline"), "source", "add", SOURCE, "--provider", "github", "--secret", "-"]
    quiet = {"HOOKLINE_LOG_LEVEL": "warning", "PYTHONWARNINGS": "ignore"}  # failures still reach stderr
    subprocess.run(add, env=env | quiet, check=True, stdout=subprocess.DEVNULL, input=secret, text=True)
    port = args.port or free_port()
    argv = [str(BIN / "hookline"), "serve", "--port", str(port), "--roles", "api"]
    with running("hookline", argv, env, port, work / "hookline.log") as pid:
        xlen_before, answers_before = stream_total(client, partitions), outcomes(port)
        result = run_wrk("hookline intake", port, work, args, pid if args.profile else None)
        # Requests wrk abandoned at its deadline still finish on the server: let them land.
        deadline, xadded, answers = time.monotonic() + 5, -1, Counter[int]()
        while xadded != answers[202] and time.monotonic() < deadline:
            time.sleep(0.2)
            xadded = stream_total(client, partitions) - xlen_before
            answers = outcomes(port) - answers_before
    client.close()
    return result, Check(xadded, answers, partitions)


def report(args: argparse.Namespace, bare: Result, hook: Result, check: Check, body_kb: float) -> bool:
    load = f"wrk {args.threads} thread(s) x {args.connections} connections, {args.seconds} s per server"
    print(f"\n{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {load}; deliveries of {body_kb:.1f} KB")
    print("hookline runs `serve --roles api`: its workers are off, so they don't compete for the CPU\n")
    print(f"{'server':<18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>9}")
    for r in (bare, hook):
        print(f"{r.name:<18}{r.rps:>10,.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}{r.errors:>9,}")
    ratios = (hook.rps / bare.rps, hook.p50_ms / bare.p50_ms, hook.p99_ms / bare.p99_ms)
    print(f"{'hookline/bare':<18}" + "".join(f"{ratio:>9.2f}x" for ratio in ratios))
    problems = check.problems(hook, args.connections, args.deliveries)
    codes = ", ".join(f"{n:,} x {code}" for code, n in sorted(check.answers.items()))
    streams, verdict = f"hl:{{p0..p{check.partitions - 1}}}:events", "; ".join(problems) or "OK"
    print(f"\ncheck: hookline answered {codes} (wrk read {hook.answered_ok:,} 2xx)")
    print(f"       {check.xadded:,} entries were XADDed to {streams} -> {verdict}")
    print("       (wrk drops the requests in flight when it stops: unread 202s, 400s for the cut-off ones)")
    return not problems


def main() -> int:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the servers (and the embedded PostgreSQL) are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    secret = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="hookline-bench-") as tmp:
        work = Path(tmp)
        (work / "deliveries.lua").write_text(WRK_SCRIPT)
        started = time.perf_counter()
        body_kb = write_requests(work / "requests.txt", secret, args.deliveries)
        size_mb = (work / "requests.txt").stat().st_size / 1e6
        elapsed = time.perf_counter() - started
        print(f"request file: {args.deliveries:,} signed deliveries, {size_mb:.0f} MB in {elapsed:.1f} s")
        print(f"bench dir {work}; bare starlette, then hookline, {args.seconds} s each ...", flush=True)
        bare = bench_bare(work, args)
        hook, check = bench_hookline(work, args, secret)
        ok = report(args, bare, hook, check, body_kb)
    print(f"reproduce: {' '.join([sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])}")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers were stopped on the way out
        sys.exit(130)

"""`hookline status`, `hookline dlq …` and `hookline replay` as the real command (a subprocess).

A subprocess rather than ``main()`` in-process: ``main`` runs its own event loop (``anyio.run``)
and configures logging for the process, neither of which belongs inside pytest's. The data is set
up with a plain (sync) Redis client on the machine's Redis, in the database this run owns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as sync_redis

from ingest import envelope
from memory import keys
from memory.ids import context_id
from memory.mappers.base import mapper_for
from tests.fixtures.github_examples import load_fixture
from tests.helpers import OWNER_KEY

HOOKLINE = str(Path(sys.executable).with_name("hookline"))
PARTITIONS = 2
PUSH = load_fixture("push")
CORRUPT = b"\xff\x00 not protobuf"


@dataclass
class Cli:
    env: dict[str, str]
    redis: sync_redis.Redis

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([HOOKLINE, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == code, (done.stdout, done.stderr)
        return done

    def json(self, *args: str) -> Any:
        return orjson.loads(self.run(*args, "--json").stdout)


@pytest.fixture
def cli(machine_redis_url: str, machine_database_url: str, tmp_path: Path) -> Iterator[Cli]:
    client = sync_redis.Redis.from_url(machine_redis_url)
    client.flushdb()
    client.set(OWNER_KEY, os.getpid(), ex=6 * 3600)  # keep this run's claim on the database
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")},
        "HOOKLINE_REDIS_URL": machine_redis_url,
        "HOOKLINE_DATABASE_URL": machine_database_url,
        "HOOKLINE_DATA_DIR": str(tmp_path),
        "HOOKLINE_PARTITIONS": str(PARTITIONS),
        "HOOKLINE_LOG_LEVEL": "warning",
        "COLUMNS": "200",  # rich's tables, unclipped
    }
    try:
        yield Cli(env, client)
    finally:
        client.close()


def _envelope(tenant: str, delivery: str, source: str = "gh") -> bytes:
    return envelope.encode(
        envelope.Envelope(
            tenant, source, "github", "push", delivery, f"{source}:{delivery}", datetime.now(UTC),
            orjson.dumps(PUSH),
        )
    )  # fmt: skip


def _stream(tenant: str, source: str = "gh") -> str:
    return keys.events_stream(keys.partition_of(tenant, source, PARTITIONS))


def _dead(cli: Cli, data: bytes, stream: str, group: str = keys.CONTEXT_GROUP) -> str:
    fields = {"stream": stream, "entry": "1-0", "group": group, "error": "it broke",
              "at_ms": str(int(time.time() * 1000)), "attempts": "3", "e": data}  # fmt: skip
    return cli.redis.xadd(keys.dead_letters(), fields).decode()  # type: ignore[union-attr]


def test_dlq_list_show_retry_purge(cli: Cli, tenant: str) -> None:
    stream = _stream(tenant)
    data = _envelope(tenant, "v")
    valid = _dead(cli, data, stream)
    corrupt = _dead(cli, CORRUPT, stream, group=keys.AUDIT_GROUP)
    other = _dead(cli, _envelope(tenant, "o"), stream, group=keys.INDEX_GROUP)

    listed = cli.json("dlq", "list")
    assert [d["id"] for d in listed] == [other, corrupt, valid]
    assert listed[2]["tenant"] == tenant and listed[2]["dedup_key"] == "gh:v" and listed[2]["attempts"] == 3
    assert listed[1]["source"] is None and listed[1]["error"] == "it broke"
    assert [d["id"] for d in cli.json("dlq", "list", "--group", "audit", "--limit", "5")] == [corrupt]
    table = cli.run("dlq", "list").stdout
    assert valid in table and "it broke" in table

    shown = cli.json("dlq", "show", valid)
    assert shown["payload"] == PUSH and shown["stream"] == stream and shown["group"] == "context"
    assert "payload:" in cli.run("dlq", "show", valid).stdout
    assert "no dead letter" in cli.run("dlq", "show", "1-0", code=1).stderr

    assert "retried 1" in cli.run("dlq", "retry", valid).stdout
    assert [fields for _, fields in cli.redis.xrange(stream)] == [{b"e": data}]
    assert [d["id"] for d in cli.json("dlq", "list")] == [other, corrupt]
    assert "not both, not neither" in cli.run("dlq", "retry", code=1).stderr

    assert "purged 0" in cli.run("dlq", "purge", "--all", "--older-than", "7d").stdout
    assert "purged 1" in cli.run("dlq", "purge", corrupt).stdout
    assert "purged 1" in cli.run("dlq", "purge", "--all").stdout
    assert cli.redis.xlen(keys.dead_letters()) == 0
    assert "duration" in cli.run("dlq", "purge", "--all", "--older-than", "soon", code=2).stderr


def test_replay_applies_a_time_range_again(cli: Cli, tenant: str) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    for i in range(3):
        cli.redis.xadd(_stream(tenant), {"e": _envelope(tenant, f"r{i}")})
    other = cli.redis.xadd(_stream(tenant, "other"), {"e": _envelope(tenant, "x", source="other")})
    ctx_id = context_id(tenant, mapper_for("github").map("push", PUSH).subject)
    assert not cli.redis.exists(keys.context(tenant, ctx_id))

    report = cli.json("replay", "--source", "gh", "--since", since, "--group", "context")
    assert (report["read"], report["matched"], report["undecodable"]) == (4, 3, 0)
    assert report["replayed"] == {"context": 3} and report["rejected"] == {"context": 0}
    assert cli.redis.hlen(keys.context_events(tenant, ctx_id)) == 3

    cli.redis.xdel(_stream(tenant, "other"), other)  # deleted: it cannot come back
    done = cli.run("replay", "--since", since)  # every group, every source
    assert "3 events of every source replayed (context 3, index 3, audit 3)" in done.stdout
    assert "may have been trimmed or deleted" in done.stderr
    assert cli.run("replay", "--since", "yesterday", code=2).returncode == 2


def test_status_json_has_streams_groups_consumers_dlq_events_tiers(cli: Cli, tenant: str) -> None:
    stream = _stream(tenant)
    cli.redis.xgroup_create(stream, keys.CONTEXT_GROUP, id="0", mkstream=True)
    for i in range(3):
        cli.redis.xadd(stream, {"e": _envelope(tenant, f"s{i}")})
    cli.redis.xreadgroup(keys.CONTEXT_GROUP, "worker-7", {stream: ">"}, count=2)  # read, never acked
    beat = int(time.time())
    cli.redis.set(keys.consumer_heartbeat(keys.CONTEXT_GROUP, "worker-7"), str(beat), ex=120)
    _dead(cli, CORRUPT, stream)

    status = cli.json("status")
    assert status["streams"][stream] == {"length": 3}
    assert set(status["streams"]) == {keys.events_stream(p) for p in range(PARTITIONS)}
    assert status["groups"]["context"] == {"lag": 1, "pending": 2}
    assert status["groups"]["index"] == {"lag": 0, "pending": 0}  # no such group yet
    assert status["groups"]["audit"] == {"lag": 0, "pending": 0}
    (consumer,) = status["consumers"]
    assert consumer["group"] == "context" and consumer["name"] == "worker-7" and consumer["pending"] == 2
    assert consumer["heartbeat"] == beat and 0 <= consumer["heartbeat_age_s"] < 60
    assert isinstance(consumer["idle_ms"], int)
    assert status["dlq"] == 1
    assert set(status["events"]) == {"accepted", "applied"}
    assert all(isinstance(n, int) for n in status["events"].values())
    assert set(status["tiers"]) >= {"hot", "warm", "cold"}
    assert all(set(tier) == {"contexts", "bytes"} for tier in status["tiers"].values())

    table = cli.run("status").stdout
    assert "worker-7" in table and "consumer groups" in table and "dead letters 1" in table

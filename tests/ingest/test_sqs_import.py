"""`hookline import --sqs`: webhooks waiting in SQS (moto server over HTTP) come into the pipeline once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import orjson

from memory import keys
from memory.runtime import Runtime
from memory.sources import SourceStore
from tests.fixtures.github_examples import load_fixture

HOOKLINE = str(Path(sys.executable).with_name("hookline"))


def _import(rt: Runtime, tmp_path: Path, endpoint: str, queue: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env |= {
        "HOOKLINE_REDIS_URL": rt.redis_url,
        "HOOKLINE_DATABASE_URL": rt.database_url,
        "HOOKLINE_DATA_DIR": str(tmp_path),
        "HOOKLINE_PARTITIONS": str(rt.settings.partitions),
        "HOOKLINE_EMBEDDER": "none",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    done = subprocess.run(
        [HOOKLINE, "import", "--sqs", queue, "--source", "legacy", "--endpoint-url", endpoint],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return dict(orjson.loads(done.stdout.strip().splitlines()[-1]))


async def test_sqs_messages_are_imported_deduplicated_and_deleted(
    machine_rt: Runtime, tmp_path: Path, moto_endpoint: str
) -> None:
    await SourceStore(machine_rt.db).add("legacy", "github", ["unused"], "default")
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
    queue = sqs.create_queue(QueueName=f"hooks-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    push = orjson.dumps(load_fixture("push")).decode()
    attrs = {"event_type": {"DataType": "String", "StringValue": "push"}}
    for delivery in ("d1", "d2", "d1"):  # d1 twice: the second is a duplicate
        sqs.send_message(QueueUrl=queue, MessageBody=push, MessageAttributes=attrs | {
            "delivery_id": {"DataType": "String", "StringValue": delivery}})  # fmt: skip
    forwarded = {"headers": {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "d3"},
                 "body": orjson.dumps(load_fixture("issues_opened")).decode()}  # fmt: skip
    sqs.send_message(QueueUrl=queue, MessageBody=orjson.dumps(forwarded).decode())
    sqs.send_message(QueueUrl=queue, MessageBody="{not json")
    report = _import(machine_rt, tmp_path, moto_endpoint, queue)
    assert (report["accepted"], report["duplicates"], report["rejected"]) == (3, 1, 1)
    entries = []
    for p in range(machine_rt.settings.partitions):
        entries += await machine_rt.redis.xrange(keys.events_stream(p))
    assert len(entries) == 3
    # Only the malformed message is left; a re-run imports nothing twice.
    again = _import(machine_rt, tmp_path, moto_endpoint, queue)
    assert (again["accepted"], again["duplicates"]) == (0, 0)

"""Data commands of ``hookline``: ``tier run`` (one lifecycle pass), ``tier rewrap`` (re-seal the
archives and the sources' secrets after a key rotation), ``export`` (NDJSON) and ``import`` (drain
an SQS queue of webhooks into the pipeline)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import orjson

from ingest import pii
from ingest.accept import Acceptor
from ingest.envelope import entry_event
from ingest.sqs_import import import_queue
from ingest.stream import producer_for
from mcp_server.cli_ops import Command, moment
from memory.crypto import SealedBlobStore
from memory.forget import forget
from memory.ledger import Ledger
from memory.lifecycle import Lifecycle
from memory.runtime import Runtime, pg_connection
from memory.service import MemoryService
from memory.sources import SourceStore


def add_parsers(commands: Any) -> None:
    tier = commands.add_parser("tier", help="context tiers").add_subparsers(dest="action", required=True)
    run = tier.add_parser("run", help="run one lifecycle pass (hot → warm → cold)")
    run.add_argument("--now", type=moment, help="pretend it is this ISO-8601 time (for tests and drills)")
    tier.add_parser(
        "rewrap", help="re-seal every archive and source secret with the first HOOKLINE_ENCRYPTION_KEYS key"
    )
    export = commands.add_parser("export", help="write contexts updated in a time range as NDJSON")
    export.add_argument("--since", type=moment, required=True)
    export.add_argument("--until", type=moment, default=None)
    export.add_argument("--tenant", default="default")
    export.add_argument("--payloads", action="store_true", help="include each event's payload")
    imp = commands.add_parser("import", help="move webhooks waiting in an SQS queue into Hookline")
    imp.add_argument("--sqs", required=True, metavar="QUEUE_URL")
    imp.add_argument("--source", required=True, help="the configured source they belong to")
    imp.add_argument("--endpoint-url", help="SQS endpoint (for a local or compatible service)")
    imp.add_argument("--region", default="us-east-1")
    imp.add_argument("--limit", type=int)


async def _tier_run(rt: Runtime, args: argparse.Namespace) -> int:
    report = await Lifecycle(rt, forgetter=partial(forget, rt, decode=entry_event)).run_pass(args.now)
    print(orjson.dumps(report.as_dict()).decode())
    return 0


async def _tier_rewrap(rt: Runtime, args: argparse.Namespace) -> int:
    """Key rotation: every archive and source secret sealed with an older key (or none) is sealed
    with the active one. A source whose secrets no configured key opens is named, and exits 1."""
    blobs = rt.blobs
    if not isinstance(blobs, SealedBlobStore):
        print("hookline: HOOKLINE_ENCRYPTION_KEYS is not set: nothing to seal with", file=sys.stderr)
        return 2
    seen = changed = 0
    async for key in blobs.list(""):
        seen += 1
        changed += await blobs.rewrap(key)
    secrets = await SourceStore.for_runtime(rt).rewrap()
    for failure in secrets.failures:
        print(f"hookline: secrets not resealed: {failure}", file=sys.stderr)
    report = {
        "archives": seen,
        "resealed": changed,
        "sources": secrets.sources,
        "sources_resealed": secrets.resealed,
        "key": blobs.keyring.active,
    }
    print(orjson.dumps(report).decode())
    return 1 if secrets.failures else 0


async def _export(rt: Runtime, args: argparse.Namespace) -> int:
    until = args.until or datetime.now(UTC)
    service = MemoryService(rt)
    async with pg_connection(rt.db) as conn:
        rows = await (
            await conn.execute(
                "SELECT id FROM contexts WHERE tenant = %s AND updated_at >= %s AND updated_at < %s "
                "ORDER BY updated_at",
                (args.tenant, args.since, until),
            )
        ).fetchall()
    out = sys.stdout.buffer
    for (ctx_id,) in rows:
        # Cold contexts are read from their archive without being moved back (restore=False keeps the
        # tier; the archive is read directly).
        ctx = await service.export_context(args.tenant, ctx_id, with_payloads=args.payloads)
        out.write(orjson.dumps(ctx, default=str) + b"\n")
    out.flush()
    return 0


async def _import(rt: Runtime, args: argparse.Namespace) -> int:
    import boto3  # only this command needs it

    source = await SourceStore.for_runtime(rt).get(args.source)
    sqs = boto3.client("sqs", endpoint_url=args.endpoint_url, region_name=args.region)
    producer = producer_for(rt)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="stream-producer")
        acceptor = Acceptor(rt.settings, producer, Ledger(rt.db), redact=pii.redactor_for(rt.settings))
        report = await import_queue(sqs, args.sqs, source, acceptor, args.limit)
        tasks.cancel_scope.cancel()
    print(orjson.dumps(dataclasses.asdict(report)).decode())
    return 0 if not report.rejected else 1


TIER_COMMANDS: dict[tuple[str, str | None], Command] = {
    ("tier", "run"): _tier_run,
    ("tier", "rewrap"): _tier_rewrap,
    ("export", None): _export,
    ("import", None): _import,
}

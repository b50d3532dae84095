"""Tier commands of ``hookline``: ``tier run`` (one lifecycle pass) and ``export`` (NDJSON)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from ingest.envelope import entry_event
from mcp_server.cli_ops import Command, moment
from memory.forget import forget
from memory.lifecycle import Lifecycle
from memory.runtime import Runtime, pg_connection
from memory.service import MemoryService


def add_parsers(commands: Any) -> None:
    tier = commands.add_parser("tier", help="context tiers").add_subparsers(dest="action", required=True)
    run = tier.add_parser("run", help="run one lifecycle pass (hot → warm → cold)")
    run.add_argument("--now", type=moment, help="pretend it is this ISO-8601 time (for tests and drills)")
    export = commands.add_parser("export", help="write contexts updated in a time range as NDJSON")
    export.add_argument("--since", type=moment, required=True)
    export.add_argument("--until", type=moment, default=None)
    export.add_argument("--tenant", default="default")
    export.add_argument("--payloads", action="store_true", help="include each event's payload")


async def _tier_run(rt: Runtime, args: argparse.Namespace) -> int:
    report = await Lifecycle(rt, forgetter=partial(forget, rt, decode=entry_event)).run_pass(args.now)
    print(orjson.dumps(report.as_dict()).decode())
    return 0


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


TIER_COMMANDS: dict[tuple[str, str | None], Command] = {
    ("tier", "run"): _tier_run,
    ("export", None): _export,
}

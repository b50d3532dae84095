"""Source commands of ``hookline``: ``source add``, ``source list`` and ``source remove``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

import ingest.providers
from ingest import pii
from mcp_server.cli_ops import Command
from memory.errors import ConfigError
from memory.runtime import Runtime
from memory.sources import SourceStore

PROVIDERS = tuple(sorted(ingest.providers.PROVIDERS))


def add_parsers(commands: Any) -> None:  # argparse's _SubParsersAction is private
    source = commands.add_parser("source", help="manage webhook sources").add_subparsers(
        dest="action", required=True
    )
    add = source.add_parser("add", help="add or update a source")
    add.add_argument("name")
    add.add_argument("--provider", required=True, choices=PROVIDERS)
    add.add_argument("--secret", action="append", required=True, help="repeat to keep several secrets active")
    add.add_argument("--tenant", default="default")
    add.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="provider option")
    listing = source.add_parser("list", help="list sources")
    listing.add_argument("--json", action="store_true")
    remove = source.add_parser("remove", help="remove a source")
    remove.add_argument("name")


def _options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option takes KEY=VALUE, got {pair!r}")
        if key == "pii_mask":
            pii.parse_kinds(value)  # refuse a bad value now, not at the first delivery
        options[key] = value
    return options


async def _source_add(rt: Runtime, args: argparse.Namespace) -> int:
    source = await SourceStore(rt.db).add(
        args.name, args.provider, args.secret, args.tenant, _options(args.option)
    )
    print(f"source {source.name!r} ({source.provider}, tenant {source.tenant}): POST /hooks/{source.name}")
    return 0


async def _source_list(rt: Runtime, args: argparse.Namespace) -> int:
    sources = await SourceStore(rt.db).list()
    if args.json:
        rows = [
            {"name": s.name, "provider": s.provider, "tenant": s.tenant, "secrets": len(s.secrets)}
            for s in sources
        ]
        print(orjson.dumps(rows).decode())
        return 0
    table = Table("name", "provider", "tenant", "secrets")
    for s in sources:
        table.add_row(s.name, s.provider, s.tenant, str(len(s.secrets)))
    Console().print(table)
    return 0


async def _source_remove(rt: Runtime, args: argparse.Namespace) -> int:
    if not await SourceStore(rt.db).remove(args.name):
        print(f"hookline: no source named {args.name!r}", file=sys.stderr)
        return 1
    return 0


SOURCE_COMMANDS: dict[tuple[str, str | None], Command] = {
    ("source", "add"): _source_add,
    ("source", "list"): _source_list,
    ("source", "remove"): _source_remove,
}

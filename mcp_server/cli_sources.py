"""Source commands of ``hookline``: ``source add``, ``source list`` and ``source remove``.

Secrets never come from argv (other users see it in ``ps``, shells keep it in history): ``source
add`` reads them from ``--secret-file PATH`` or from standard input (``--secret -``), one a line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

import ingest.providers
from mcp_server.cli_ops import Command
from memory.errors import InvalidArgument
from memory.runtime import Runtime
from memory.source_options import SourceOptions
from memory.sources import SourceListing, SourceMoveRefused, SourceStore

PROVIDERS = tuple(sorted(ingest.providers.PROVIDERS))
SECRET_SOURCES = "--secret-file PATH (one secret a line) or --secret - (the same on standard input)"


def add_parsers(commands: Any) -> None:  # argparse's _SubParsersAction is private
    source = commands.add_parser("source", help="manage webhook sources").add_subparsers(
        dest="action", required=True
    )
    add = source.add_parser("add", help="add or update a source")
    add.add_argument("name")
    add.add_argument("--provider", required=True, choices=PROVIDERS)
    add.add_argument(
        "--secret-file", action="append", default=[], metavar="PATH",
        help="a file of secrets, one a line (several stay active, so a secret rotates without downtime)",
    )  # fmt: skip
    add.add_argument(
        "--secret", action="append", default=[], metavar="-",
        help="'-' reads the secrets from standard input, one a line; a literal value is refused",
    )  # fmt: skip
    add.add_argument("--tenant", default="default")
    add.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="source option")
    add.add_argument("--force", action="store_true", help="move a source that belongs to another tenant")
    listing = source.add_parser("list", help="list sources (never their secrets)")
    listing.add_argument("--json", action="store_true")
    remove = source.add_parser("remove", help="remove a source")
    remove.add_argument("name")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_secrets(files: list[str], flags: list[str]) -> list[str]:
    """The secrets of ``--secret-file``s and ``--secret -``, in that order. Raises InvalidArgument."""
    if any(flag != "-" for flag in flags):
        raise InvalidArgument(
            f"a secret on the command line is visible to other users: give it with {SECRET_SOURCES}"
        )
    if not files and not flags:
        raise InvalidArgument(f"a source needs a secret: give it with {SECRET_SOURCES}")
    secrets: list[str] = []
    for path in files:
        try:
            secrets += _lines(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"cannot read secrets from {path}: {exc}") from exc
    if flags:
        secrets += _lines(sys.stdin.read())
    if not secrets:
        raise InvalidArgument(f"no secret was given: {SECRET_SOURCES} holds none")
    return list(dict.fromkeys(secrets))


async def _source_add(rt: Runtime, args: argparse.Namespace) -> int:
    options = SourceOptions.from_pairs(args.option, args.provider)  # refused before anything is read
    secrets = read_secrets(args.secret_file, args.secret)
    try:
        source = await SourceStore.for_runtime(rt).add(
            args.name, args.provider, secrets, args.tenant, options, force=args.force
        )
    except SourceMoveRefused as exc:
        print(f"hookline: {exc}: pass --force to move it", file=sys.stderr)
        return 1
    sealed = " sealed," if rt.settings.encryption_keys else ""
    print(
        f"source {source.name!r} ({source.provider}, tenant {source.tenant},{sealed} "
        f"{len(source.secrets)} secret(s)): POST /hooks/{source.name}"
    )
    return 0


def _row(s: SourceListing) -> dict[str, Any]:
    return {
        "name": s.name,
        "provider": s.provider,
        "tenant": s.tenant,
        "secrets": s.secrets,
        "sealed": s.sealed,
        "options": None if s.options is None else s.options.stored(),
        "problem": s.problem,
    }


async def _source_list(rt: Runtime, args: argparse.Namespace) -> int:
    rows = [_row(s) for s in await SourceStore.for_runtime(rt).list()]
    if args.json:
        print(orjson.dumps(rows).decode())
        return 0
    table = Table("name", "provider", "tenant", "secrets", "sealed", "options", "problem")
    for row in rows:
        options = "(unreadable)" if row["options"] is None else orjson.dumps(row["options"]).decode()
        table.add_row(
            row["name"], row["provider"], row["tenant"], str(row["secrets"]), str(row["sealed"]),
            options, row["problem"] or "",
        )  # fmt: skip
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

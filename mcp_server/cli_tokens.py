"""Token commands of ``hookline``: ``token create``, ``token list`` and ``token revoke``.

A token is shown once, at ``create``; afterwards it is named by its public id (``tok_…``) or by
its name. ``list`` never shows a token or its hash.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from mcp_server.cli_ops import Command
from memory.errors import InvalidArgument
from memory.ids import check_tenant
from memory.runtime import Runtime
from memory.tokens import TokenInfo, TokenStore


def _tenant(text: str) -> str:
    try:
        return check_tenant(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_parsers(commands: Any) -> None:  # argparse's _SubParsersAction is private
    token = commands.add_parser("token", help="manage MCP bearer tokens").add_subparsers(
        dest="action", required=True
    )
    create = token.add_parser("create", help="create a token; it is printed alone on the last line")
    create.add_argument("--tenant", type=_tenant, default="default")
    create.add_argument("--name", default="")
    listing = token.add_parser("list", help="tokens: id, tenant, name, created, last used, revoked")
    listing.add_argument("--tenant", type=_tenant, help="only this tenant's tokens")
    listing.add_argument("--json", action="store_true")
    revoke = token.add_parser(
        "revoke", help="revoke a token (by the token itself, --id or --name); exit 1 when none matched"
    )
    revoke.add_argument("token", nargs="?", help="the bearer token")
    revoke.add_argument("--id", help="the token's public id (tok_…, from `token list`)")
    revoke.add_argument("--name", help="every active token of this name (in --tenant)")
    revoke.add_argument("--tenant", type=_tenant, help="with --name: the tenant whose tokens it names")


async def _token_create(rt: Runtime, args: argparse.Namespace) -> int:
    token = await TokenStore(rt.db).create(args.tenant, args.name)
    print(f"token for tenant {args.tenant!r} (shown once; only its hash is stored):", file=sys.stderr)
    print(token)
    return 0


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _row(info: TokenInfo) -> dict[str, str | None]:
    return {
        "id": info.id,
        "tenant": info.tenant,
        "name": info.name,
        "created_at": _when(info.created_at),
        "last_used_at": _when(info.last_used_at),
        "revoked_at": _when(info.revoked_at),
    }


async def _token_list(rt: Runtime, args: argparse.Namespace) -> int:
    rows = [_row(info) for info in await TokenStore(rt.db).list(args.tenant)]
    if args.json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    table = Table("id", "tenant", "name", "created", "last used", "revoked")
    for row in rows:
        table.add_row(*(value or "" for value in row.values()))
    Console().print(table)
    return 0


async def _token_revoke(rt: Runtime, args: argparse.Namespace) -> int:
    chosen = [
        flag for flag, value in (("TOKEN", args.token), ("--id", args.id), ("--name", args.name)) if value
    ]
    if len(chosen) != 1:
        print("hookline: token revoke takes exactly one of TOKEN, --id or --name", file=sys.stderr)
        return 2
    if args.tenant is not None and args.name is None:
        print("hookline: --tenant goes with --name", file=sys.stderr)
        return 2
    tokens = TokenStore(rt.db)
    if args.token:
        revoked = ["the token"] if await tokens.revoke(args.token) else []
    elif args.id:
        revoked = await tokens.revoke_id(args.id)
    else:
        revoked = await tokens.revoke_name(args.name, args.tenant)
    if not revoked:
        print("hookline: no active token matched; nothing was revoked", file=sys.stderr)
        return 1
    for name in revoked:
        print(f"revoked {name}")
    return 0


TOKEN_COMMANDS: dict[tuple[str, str | None], Command] = {
    ("token", "create"): _token_create,
    ("token", "list"): _token_list,
    ("token", "revoke"): _token_revoke,
}

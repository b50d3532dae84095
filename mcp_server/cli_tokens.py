"""Token commands of ``hookline``: ``token create`` and ``token revoke``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mcp_server.cli_ops import Command
from memory.runtime import Runtime
from memory.tokens import TokenStore


def add_parsers(commands: Any) -> None:  # argparse's _SubParsersAction is private
    token = commands.add_parser("token", help="manage MCP bearer tokens").add_subparsers(
        dest="action", required=True
    )
    create = token.add_parser("create", help="create a token; it is printed alone on the last line")
    create.add_argument("--tenant", default="default")
    create.add_argument("--name", default="")
    revoke = token.add_parser("revoke", help="revoke a token")
    revoke.add_argument("token")


async def _token_create(rt: Runtime, args: argparse.Namespace) -> int:
    token = await TokenStore(rt.db).create(args.tenant, args.name)
    print(f"token for tenant {args.tenant!r} (shown once; only its hash is stored):", file=sys.stderr)
    print(token)
    return 0


async def _token_revoke(rt: Runtime, args: argparse.Namespace) -> int:
    return 0 if await TokenStore(rt.db).revoke(args.token) else 1


TOKEN_COMMANDS: dict[tuple[str, str | None], Command] = {
    ("token", "create"): _token_create,
    ("token", "revoke"): _token_revoke,
}

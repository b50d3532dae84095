"""The ``hookline`` command: serve, stdio, source, token, and the operator commands of cli_ops."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
from rich.console import Console
from rich.table import Table

import ingest.providers
from ingest import pii
from mcp_server.cli_ops import OPS_COMMANDS, Command
from mcp_server.cli_ops import add_parsers as add_ops_parsers
from mcp_server.cli_tiers import TIER_COMMANDS
from mcp_server.cli_tiers import add_parsers as add_tier_parsers
from mcp_server.logs import configure_logging
from memory.crypto import generate_key
from memory.errors import ConfigError, HooklineError
from memory.runtime import Runtime, open_runtime
from memory.settings import Settings, load_settings, validate
from memory.sources import SourceStore
from memory.tokens import TokenStore

PROVIDERS = tuple(sorted(ingest.providers.PROVIDERS))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookline", description="Webhook-fed memory for AI agents, over MCP."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server (webhooks, /mcp) and the workers")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, or HOOKLINE_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8765, or HOOKLINE_PORT)")
    serve.add_argument(
        "--roles", default="api,worker,lifecycle",
        help="comma-separated subset of: api (= intake,mcp), intake, mcp, worker, lifecycle",
    )  # fmt: skip
    serve.add_argument("--workers", type=int, default=1, help="consumers per worker process")
    serve.add_argument(
        "--groups", default="context,index,audit",
        help="consumer groups the worker role runs here (e.g. context here, index,audit elsewhere)",
    )  # fmt: skip

    commands.add_parser("stdio", help="serve MCP over stdin/stdout (for Claude Desktop, Claude Code ...)")

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

    token = commands.add_parser("token", help="manage MCP bearer tokens").add_subparsers(
        dest="action", required=True
    )
    create = token.add_parser("create", help="create a token; it is printed alone on the last line")
    create.add_argument("--tenant", default="default")
    create.add_argument("--name", default="")
    revoke = token.add_parser("revoke", help="revoke a token")
    revoke.add_argument("token")

    key = commands.add_parser("key", help="encryption keys for archives at rest")
    generate = key.add_subparsers(dest="action", required=True).add_parser(
        "generate", help="print a new key entry for HOOKLINE_ENCRYPTION_KEYS (kid:base64)"
    )
    generate.add_argument("--id", default=None, help="key id (default: k<UTC date and time>)")
    add_ops_parsers(commands)
    add_tier_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(os.environ)
        configure_logging(settings.log_level, settings.log_json)
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "stdio":
            return anyio.run(_stdio, settings)
        if args.command == "key":  # no store needed
            print(generate_key(args.id or f"k{datetime.now(UTC):%Y%m%d%H%M%S}"))
            return 0
        return anyio.run(
            _with_runtime, settings, _COMMANDS[(args.command, getattr(args, "action", None))], args
        )
    except ConfigError as exc:
        print(f"hookline: configuration error: {exc}", file=sys.stderr)
        return 2
    except HooklineError as exc:
        print(f"hookline: {exc}", file=sys.stderr)
        return 1


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from mcp_server.app import ROLES, create_app
    from memory.keys import GROUPS

    settings = settings.with_overrides(host=args.host or settings.host, port=args.port or settings.port)
    validate(settings)
    roles = [role.strip() for role in args.roles.split(",") if role.strip()]
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ConfigError(f"--roles takes a subset of {','.join(ROLES)}, got {args.roles!r}")
    groups = [group.strip() for group in args.groups.split(",") if group.strip()]
    if set(groups) - set(GROUPS) or not groups:
        raise ConfigError(f"--groups takes a subset of {','.join(GROUPS)}, got {args.groups!r}")
    app = create_app(settings, roles, workers=max(1, args.workers), groups=groups)
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level="warning", lifespan="on", access_log=False
    )
    return 0


async def _stdio(settings: Settings) -> int:
    from mcp_server.server import build_mcp
    from memory.service import MemoryService

    async with open_runtime(settings) as rt:
        await build_mcp(MemoryService(rt), settings.tenant).run_stdio_async()
    return 0


async def _with_runtime(settings: Settings, command: Command, args: argparse.Namespace) -> int:
    async with open_runtime(settings) as rt:
        return await command(rt, args)


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


async def _token_create(rt: Runtime, args: argparse.Namespace) -> int:
    token = await TokenStore(rt.db).create(args.tenant, args.name)
    print(f"token for tenant {args.tenant!r} (shown once; only its hash is stored):", file=sys.stderr)
    print(token)
    return 0


async def _token_revoke(rt: Runtime, args: argparse.Namespace) -> int:
    return 0 if await TokenStore(rt.db).revoke(args.token) else 1


_COMMANDS: dict[tuple[str, str | None], Command] = {
    ("source", "add"): _source_add,
    ("source", "list"): _source_list,
    ("source", "remove"): _source_remove,
    ("token", "create"): _token_create,
    ("token", "revoke"): _token_revoke,
    **OPS_COMMANDS,
    **TIER_COMMANDS,
}

"""The ``hookline`` command: serve, stdio, source, token, and the operator commands of cli_ops."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import anyio

from mcp_server.cli_ops import OPS_COMMANDS, Command
from mcp_server.cli_ops import add_parsers as add_ops_parsers
from mcp_server.cli_sources import SOURCE_COMMANDS
from mcp_server.cli_sources import add_parsers as add_source_parsers
from mcp_server.cli_tiers import TIER_COMMANDS
from mcp_server.cli_tiers import add_parsers as add_tier_parsers
from mcp_server.cli_tokens import TOKEN_COMMANDS
from mcp_server.cli_tokens import add_parsers as add_token_parsers
from mcp_server.logs import configure_logging
from memory.crypto import generate_key
from memory.errors import ConfigError, HooklineError
from memory.runtime import open_runtime
from memory.settings import Settings, load_settings, validate


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

    key = commands.add_parser("key", help="encryption keys for archives at rest")
    generate = key.add_subparsers(dest="action", required=True).add_parser(
        "generate", help="print a new key entry for HOOKLINE_ENCRYPTION_KEYS (kid:base64)"
    )
    generate.add_argument("--id", default=None, help="key id (default: k<UTC date and time>)")
    add_source_parsers(commands)
    add_token_parsers(commands)
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


_COMMANDS: dict[tuple[str, str | None], Command] = {
    **SOURCE_COMMANDS,
    **TOKEN_COMMANDS,
    **OPS_COMMANDS,
    **TIER_COMMANDS,
}

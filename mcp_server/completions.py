"""Argument completion (``completion/complete``) and ``logging/setLevel`` for MCP clients.

Completions come from the caller's own tenant: webhook source names for prompt arguments called
``source``, and recent context ids for ``hookline://context/{id}``. ``logging/setLevel`` is accepted
and recorded per session (Hookline sends no log notifications of its own; the level is kept so a
client's preference survives, as the 2025-11-25 protocol expects).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp_types import Completion, PromptReference, ResourceTemplateReference

from memory.errors import HooklineError
from memory.service import MemoryService
from memory.sources import SourceStore

MAX_VALUES = 100


def install(mcp: MCPServer[Any], service: MemoryService, tenant: Callable[[], str]) -> None:
    sources = SourceStore(service.rt.db)

    @mcp.completion()  # type: ignore[no-untyped-call, untyped-decorator]  # the SDK leaves it untyped
    async def complete(
        ref: PromptReference | ResourceTemplateReference, argument: types.CompletionArgument, context: Any
    ) -> Completion | None:
        prefix = argument.value or ""
        try:
            if isinstance(ref, PromptReference) and argument.name == "source":
                names = [s.name for s in await sources.list(tenant())]
            elif isinstance(ref, ResourceTemplateReference) and argument.name == "id":
                names = [hit.context.id for hit in await service.search_context(tenant(), "", limit=100)]
            else:
                return None
        except HooklineError:
            return None  # completion is a convenience: never an error for the user to read
        values = [name for name in names if name.startswith(prefix)]
        return Completion(values=values[:MAX_VALUES], total=len(values), has_more=len(values) > MAX_VALUES)

    levels: dict[int, str] = {}
    lowlevel: Server[Any] = mcp._lowlevel_server

    async def set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        levels[id(ctx.session)] = params.level
        return types.EmptyResult()

    lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)

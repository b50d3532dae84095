"""The third summarizer: the connected client's own model, over MCP sampling.

``summarize_context(id)`` reads the context (every event, whatever its tier, without moving it),
asks the client's model with the same prompt Claude gets (``prompts/summarize_context.md``) and keeps
the answer as the context's summary, marked ``summary_by = "sampling"``: search hits show it, and
the archiver keeps it instead of making its own while it still covers every event.

Why a tool and not a background summarizer: on 2026-07-28 connections a server can sample only
while it answers one of the client's requests (the tool returns an input-required result and the
client retries with its model's answer), and a worker that archives contexts has no client at
hand. The SDK's resolvers (``Resolve`` returning ``Sample``) speak both protocol generations: the
input-required round trip on modern connections, ``sampling/createMessage`` mid-call on legacy ones.
"""

# No ``from __future__ import annotations``: the tool's ``Resolve(...)`` annotations name resolvers
# local to ``register``, which the SDK can evaluate only if the annotations are evaluated at def time.

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import mcp_types as types
from mcp.server.mcpserver import MCPServer, Resolve, Sample
from mcp.server.mcpserver.exceptions import ToolError

from mcp_server import results
from mcp_server.arguments import ContextId
from memory.errors import HooklineError
from memory.service import MemoryService
from memory.summarize import model_prompt

SUMMARIZER = "sampling"
MAX_TOKENS = 400
MAX_SUMMARY_CHARS = 4_000  # a longer answer is cut: a summary is read beside many others
SYSTEM_PROMPT = "You write short, factual summaries for an engineering memory. Use only the facts given."


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The context as the model was shown it: its tenant, its id and how many events it had."""

    tenant: str
    context_id: str
    events: int
    prompt: str


def _text_of(result: types.CreateMessageResult) -> str:
    content = result.content
    blocks = content if isinstance(content, list) else [content]
    text = "".join(block.text for block in blocks if isinstance(block, types.TextContent)).strip()
    if not text:
        raise ToolError("the client's model answered without text: nothing was kept")
    return text if len(text) <= MAX_SUMMARY_CHARS else text[: MAX_SUMMARY_CHARS - 1] + "…"


def register(
    mcp: MCPServer[Any],
    service: MemoryService,
    tenant_of: Callable[[], str],
    spend: Callable[..., Awaitable[None]],
) -> None:
    """Add ``summarize_context``; ``tenant_of`` gives the tenant of the call (from its credential),
    ``spend(tool, peek=False)`` takes one call from the caller's rate limit (a tool error once it is
    spent; ``peek`` only looks)."""

    async def snapshot(id: ContextId) -> Snapshot:
        tenant = tenant_of()
        # A spent budget fails before the context is read or the model asked. The call itself is
        # charged once, when the summary is kept: this resolver runs again on every round of the
        # 2026-07-28 input-required exchange, and a round cannot tell the first from a forged later one.
        await spend("summarize_context", peek=True)
        try:
            ctx = await service.full_context(tenant, id)
        except HooklineError as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from exc
        return Snapshot(tenant, id, len(ctx.events), model_prompt(ctx))

    async def ask_model(shown: Annotated[Snapshot, Resolve(snapshot)]) -> Sample:
        text = types.TextContent(type="text", text=shown.prompt)
        message = types.SamplingMessage(role="user", content=text)
        return Sample([message], max_tokens=MAX_TOKENS, system_prompt=SYSTEM_PROMPT, temperature=0.2)

    @mcp.tool(
        annotations=types.ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        )
    )
    async def summarize_context(
        id: ContextId,
        shown: Annotated[Snapshot, Resolve(snapshot)],
        answer: Annotated[types.CreateMessageResult, Resolve(ask_model)],
    ) -> results.Summarized:
        """Summarize one context with your own model (MCP sampling) and keep the summary in the
        memory, where search results and later readers see it. Needs a client that supports
        sampling. The summary stands until the context's next event. Rate-limited per token; the
        context's text reaches your model fenced as untrusted data."""
        text = _text_of(answer)
        await spend("summarize_context")
        try:
            kept = await service.keep_summary(shown.tenant, id, text, SUMMARIZER, shown.events)
        except HooklineError as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from exc
        return results.Summarized(
            context_id=id, summary=text, model=answer.model, events_covered=shown.events, kept=kept
        )

"""Summaries of contexts: a ``Summarizer`` protocol with an extractive default and Claude.

- ``ExtractiveSummarizer`` (default, offline): a template per kind of context from ``prompts/``
  (``summary_<kind>.md``, else ``summary_default.md``) filled with facts from the context.
- ``AnthropicSummarizer``: Claude through the ``anthropic`` SDK, when ``ANTHROPIC_API_KEY`` is set.
- MCP sampling (asking the connected client's model) lives in ``mcp_server/sampling.py``: it needs an
  MCP session, which ``memory`` never imports, and it runs inside a client's tool call (on
  2026-07-28 connections a server can only sample while answering a request). What it makes is kept
  with ``MemoryService.keep_summary``, and the archiver keeps it while it covers every event.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from importlib import resources
from typing import Protocol

from anthropic.types import TextBlock

from memory import untrusted
from memory.errors import ConfigError, StoreUnavailable
from memory.models import Context

MAX_EVENTS_IN_PROMPT = 40


class Summarizer(Protocol):
    name: str

    async def summarize(self, ctx: Context) -> str: ...


@cache
def template(name: str) -> str:
    return resources.files("prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")


def _template_for(kind: str) -> str:
    try:
        return template(f"summary_{kind}")
    except FileNotFoundError:
        return template("summary_default")


def _facts(ctx: Context) -> dict[str, str]:
    head = ctx.head
    events = ctx.events
    actors = Counter(actor for event in events for actor in event.actors)
    texts = [event.text for event in events]
    # Highlights: the distinct event lines that are not the latest, newest first, at most three.
    seen: set[str] = set()
    highlights = []
    for line in reversed(texts[:-1]):
        if line not in seen:
            seen.add(line)
            highlights.append(f"- {line[:200]}")
        if len(highlights) == 3:
            break
    return {
        "title": head.title,
        "kind": head.kind.replace("_", " "),
        "state": head.state or "",
        "state_part": f", {head.state}" if head.state else "",
        "event_count": str(head.event_count or len(events)),
        "first_at": f"{events[0].occurred_at:%Y-%m-%d}" if events else f"{head.created_at:%Y-%m-%d}",
        "last_at": f"{events[-1].occurred_at:%Y-%m-%d}" if events else f"{head.updated_at:%Y-%m-%d}",
        "actors_part": f"; by {', '.join(a for a, _ in actors.most_common(3))}" if actors else "",
        "labels_part": f"; labels {', '.join(ctx.labels)}" if ctx.labels else "",
        "latest": (texts[-1] if texts else head.summary)[:300],
        "highlights": "\n".join(highlights),
    }


def model_prompt(ctx: Context) -> str:
    """What a language model is asked to summarize (Claude here, the client's model over MCP
    sampling): ``prompts/summarize_context.md`` with the context's newest events."""
    facts = "\n".join(
        [
            f"Title: {ctx.head.title}",
            f"Kind: {ctx.head.kind}",
            f"State: {ctx.head.state or 'unknown'}",
            f"Labels: {', '.join(ctx.labels) or 'none'}",
            "",
            "Events, oldest first:",
            *(f"- {e.occurred_at:%Y-%m-%d %H:%M} {e.text}" for e in ctx.events[-MAX_EVENTS_IN_PROMPT:]),
        ]
    )
    return template("summarize_context").format(notice=untrusted.NOTICE, facts=untrusted.fence(facts))


class ExtractiveSummarizer:
    name = "extractive"

    async def summarize(self, ctx: Context) -> str:
        return _template_for(ctx.head.kind).format(**_facts(ctx)).strip()


class AnthropicSummarizer:
    name = "anthropic"

    def __init__(self, api_key: str, model: str = "claude-haiku-4-5", max_tokens: int = 300) -> None:
        import anthropic  # only when configured: the SDK is a heavy import

        self._client = anthropic.AsyncAnthropic(api_key=api_key)
        self._errors = (anthropic.APIError,)
        self.model, self.max_tokens = model, max_tokens

    async def summarize(self, ctx: Context) -> str:
        prompt = model_prompt(ctx)
        try:
            message = await self._client.messages.create(
                model=self.model, max_tokens=self.max_tokens, messages=[{"role": "user", "content": prompt}]
            )
        except self._errors as exc:
            raise StoreUnavailable(f"Anthropic API: {exc}") from exc
        return "".join(block.text for block in message.content if isinstance(block, TextBlock)).strip()


def make_summarizer(spec: str, anthropic_api_key: str | None) -> Summarizer:
    if spec == "extractive":
        return ExtractiveSummarizer()
    if spec == "anthropic":
        if not anthropic_api_key:
            raise ConfigError("HOOKLINE_SUMMARIZER=anthropic needs ANTHROPIC_API_KEY")
        return AnthropicSummarizer(anthropic_api_key)
    raise ConfigError(f"HOOKLINE_SUMMARIZER must be extractive or anthropic, got {spec!r}")

"""A hostile tenant, through the whole MCP surface (the SDK's in-process client; the HTTP and
WebSocket transports are in tests/e2e/test_hostile_transports.py), over real Redis and PostgreSQL.

With crafted ids (another tenant's real ids, ids with ``:``, ``{``, ``}``, ``/``, ``..``, NUL, globs,
look-alikes), nested tenant names and absurd sizes, against every tool, resource, template, prompt,
completion and subscription:
- nothing of another tenant is read (no answer carries its text) or deleted (its keys, values and rows
  are byte for byte as they were, and it still reads all of it);
- nothing is written for a refused id (every key and value in Redis and every row of every table are
  as they were).
"""

from __future__ import annotations

import copy
import secrets
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import orjson
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import PromptReference, ResourceTemplateReference

from mcp_server.server import build_mcp
from memory import keys
from memory.ids import InvalidIdentifier, context_id
from memory.runtime import Runtime
from memory.service import MemoryService
from memory.sources import SourceStore
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event
from tests.mcp_server.test_sampling import Model

VICTIM_SOURCE = "victim-gh"
HUGE = "x" * 200_000


def _crafted(victim_tenant: str, victim_id: str) -> list[str]:
    """Ids an attacker would try: the victim's own, and every way of smuggling a tenant or a path."""
    tail = victim_id.removeprefix("ctx_")
    return [
        victim_id,  # the real id, guessed or leaked: still scoped by the caller's tenant
        f"prod:{victim_id}",
        f"{victim_tenant}:{victim_id}",
        f"{victim_tenant}}}:{victim_id}",
        f"{{c:{victim_tenant}:{victim_id}}}",
        f"{victim_id}}}",
        f"../{victim_tenant}/{victim_id}",
        f"{victim_id}/events",
        f"{victim_id}\x00",
        f"\x00{victim_id}",
        "ctx_" + tail.upper(),
        "ctx_" + tail[:-1] + "*",
        "ctx_" + tail[:-1] + "?",
        "ctx_[0-9a-f]" + tail[:10],
        "ctx_" + tail + "0",
        "ctx_" + tail[:-1].replace("a", "\u0430"),  # a Cyrillic look-alike
        "ctx_" + tail + "\n",
        " " + victim_id,
        "",
        "*",
        HUGE,
    ]


def _marker() -> str:
    return "VICTIMSECRET" + secrets.token_hex(6)


async def _seed_victim(rt: Runtime, tenant: str, marker: str) -> tuple[str, str]:
    """A victim with a pull request and an issue whose texts carry ``marker``; (issue id, its subject)."""
    service = MemoryService(rt)
    await SourceStore(rt.db).add(VICTIM_SOURCE + tenant[-6:], "github", ["s3cret"], tenant)
    issue = copy.deepcopy(load_fixture("issues_opened"))
    issue["issue"]["title"] = f"{marker} leaked credentials"
    issue["issue"]["body"] = f"the {marker} is in the log"
    pr = copy.deepcopy(load_fixture("pull_request_opened"))
    pr["pull_request"]["title"] = f"{marker} fix"
    await service.apply_events(
        [make_event(tenant, "issues", issue, "gh:v1"), make_event(tenant, "pull_request", pr, "gh:v2")]
    )
    for event in await service.recent_events(tenant, limit=5):
        if event.id == "gh:v1":
            ctx = await service.get_context(tenant, event.context_id)
            return event.context_id, ctx.head.subject
    raise AssertionError("the victim's issue was not applied")


async def _redis_state(rt: Runtime) -> dict[bytes, bytes]:
    """Every key and its serialized value (DUMP), but the test run's own claim on the database."""
    state: dict[bytes, bytes] = {}
    async for key in rt.redis.scan_iter(count=1000):
        if key == b"hookline:test:owner":
            continue
        dumped = await rt.redis.dump(key)
        if dumped is not None:
            state[key] = dumped
    return state


async def _pg_state(rt: Runtime) -> dict[str, list[str]]:
    """Every row of every table in the public schema, as text, sorted."""
    state: dict[str, list[str]] = {}
    async with rt.db.connection() as conn:
        tables = await (
            await conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
            )
        ).fetchall()
        for (table,) in tables:
            rows = await (await conn.execute(f'SELECT t::text FROM "{table}" AS t')).fetchall()
            state[table] = sorted(str(row[0]) for row in rows)
    return state


async def _state(rt: Runtime) -> tuple[dict[bytes, bytes], dict[str, list[str]]]:
    return await _redis_state(rt), await _pg_state(rt)


class Attacker:
    """Calls anything, records everything it got back (answers and errors alike) as text.

    ``legacy`` is a second connection on the 2025-11-25 protocol, for ``resources/subscribe``.
    """

    def __init__(self, client: Client, legacy: Client) -> None:
        self.client = client
        self.legacy = legacy
        self.seen: list[str] = []
        self.outcomes: list[tuple[str, bool]] = []  # (what, refused)
        self.completions: list[str] = []  # every value a completion offered

    async def _record(self, what: str, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            with anyio.fail_after(30):
                result = await call()
        except MCPError as exc:
            self.seen.append(str(exc))
            self.outcomes.append((what, True))
            return
        if isinstance(result, str):
            self.outcomes.append((what, False))
            return
        if isinstance(result, types.CallToolResult):
            self.seen += [getattr(block, "text", "") for block in result.content]
            self.seen.append(orjson.dumps(result.structured_content).decode())
            self.outcomes.append((what, bool(result.is_error)))
            return
        self.seen.append(result.model_dump_json() if hasattr(result, "model_dump_json") else str(result))
        self.outcomes.append((what, False))

    async def tool(self, name: str, arguments: dict[str, Any]) -> None:
        await self._record(f"{name}({list(arguments)})", lambda: self.client.call_tool(name, arguments))

    async def resource(self, uri: str) -> None:
        await self._record(f"read {uri[:60]!r}", lambda: self.client.read_resource(uri))

    async def prompt(self, name: str, arguments: dict[str, str]) -> None:
        await self._record(f"prompt {name}", lambda: self.client.get_prompt(name, arguments))

    async def complete(self, ref: Any, argument: dict[str, str]) -> None:
        async def call() -> Any:
            result = await self.client.complete(ref, argument)
            self.completions += result.completion.values
            return result

        await self._record("complete", call)

    async def subscribe(self, uri: str) -> None:
        """Both ways: a modern ``subscriptions/listen`` and a legacy ``resources/subscribe``."""

        async def listen() -> str:
            async with self.client.listen(resource_subscriptions=[uri]):
                return "listening"

        async def subscribe() -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                return await self.legacy.subscribe_resource(uri)

        await self._record(f"listen {uri[:60]!r}", listen)
        await self._record(f"subscribe {uri[:60]!r}", subscribe)

    def refused(self) -> list[str]:
        return [what for what, refused in self.outcomes if refused]

    def answered(self) -> list[str]:
        return [what for what, refused in self.outcomes if not refused]


@asynccontextmanager
async def _attacker(service: MemoryService, tenant: str) -> AsyncIterator[Attacker]:
    async with (
        Client(build_mcp(service, tenant), sampling_callback=Model("a summary")) as client,
        Client(build_mcp(service, tenant), mode="legacy") as legacy,
    ):
        yield Attacker(client, legacy)


async def _attack_with_ids(attacker: Attacker, ids: list[str], subject: str) -> None:
    for crafted in ids:
        await attacker.tool("get_context", {"id": crafted})
        await attacker.tool("get_context", {"id": crafted, "restore": True})
        await attacker.tool("summarize_context", {"id": crafted})
        await attacker.tool("forget", {"id": crafted})
        await attacker.resource(f"hookline://context/{crafted}")
        await attacker.prompt("investigate_context", {"id": crafted})
        await attacker.subscribe(f"hookline://context/{crafted}")
    for crafted_subject in (subject, f"{subject}\x00", HUGE, "", "\x00"):
        await attacker.tool("forget", {"subject": crafted_subject})


async def _attack_with_names(attacker: Attacker, victim_tenant: str, victim_source: str) -> None:
    names = [victim_source, f"{victim_tenant}:{victim_source}", "gh}", "{p0}", "../gh", "gh\x00", "*", HUGE]
    for name in names:
        await attacker.tool("search_context", {"query": "", "source": name})
        await attacker.tool("recent_events", {"source": name})
        await attacker.prompt("summarize_activity", {"source": name})
    for odd in ("\x00", HUGE, "2026-13-45T99:99:99Z", "1e308"):
        await attacker.tool("search_context", {"query": "x", "since": odd})
        await attacker.tool("recent_events", {"since": odd})
        await attacker.prompt("summarize_activity", {"since": odd})
        await attacker.prompt("triage_failures", {"since": odd})
    for cursor in ("\x00", HUGE, "not|a cursor", "2026-01-01T00:00:00|x", "e30=", "W10="):
        await attacker.tool("search_context", {"query": "x", "cursor": cursor})
        await attacker.tool("recent_events", {"cursor": cursor})
    for query in (HUGE, "\x00", "a" * 2001):
        await attacker.tool("search_context", {"query": query})
        await attacker.tool("compose_context", {"query": query})
    await attacker.tool("remember", {"text": "y" * 70_000})
    await attacker.tool("remember", {"text": "nul \x00 inside"})
    await attacker.tool("remember", {"text": "fine", "subject": "a" * 201})
    await attacker.tool("remember", {"text": "fine", "subject": "line\nbreak"})
    await attacker.tool("remember", {"text": "fine", "importance": 7})
    await attacker.tool("search_context", {"query": "x", "limit": 10_000})
    await attacker.tool("compose_context", {"query": "x", "max_tokens": 10**9})
    for uri in ("hookline://context/" + HUGE, "hookline://" + HUGE):
        await attacker.subscribe(uri)


async def test_refused_ids_and_absurd_arguments_write_nothing_anywhere(
    machine_rt: Runtime, tenant: str
) -> None:
    victim = "acme-prod" + secrets.token_hex(2)
    victim_id, _ = await _seed_victim(machine_rt, victim, _marker())
    refused_ids = [crafted for crafted in _crafted(victim, victim_id) if crafted != victim_id]
    service = MemoryService(machine_rt)
    before = await _state(machine_rt)
    async with _attacker(service, tenant) as attacker:
        await _attack_with_ids(attacker, refused_ids, subject="")
        await _attack_with_names(attacker, victim, VICTIM_SOURCE)
        answered = attacker.answered()
    after = await _state(machine_rt)
    assert after[1] == before[1]  # every row of every table
    assert after[0] == before[0]  # every Redis key and value
    # Only reads that name nothing of anyone's (a listing filtered by a name that is no source) answer.
    assert all(what.startswith(("search_context", "recent_events", "prompt summarize")) for what in answered)
    assert not any(what.startswith(("forget", "remember", "get_context")) for what in answered)


async def test_another_tenant_reads_and_deletes_nothing(machine_rt: Runtime, tenant: str) -> None:
    victim = "acme-" + secrets.token_hex(3)  # and the attacker is a name it nests in: "acme"
    marker = _marker()
    victim_id, subject = await _seed_victim(machine_rt, victim, marker)
    victim_source = VICTIM_SOURCE + victim[-6:]
    service = MemoryService(machine_rt)
    victim_keys = {k: v for k, v in (await _redis_state(machine_rt)).items() if victim.encode() in k}
    victim_rows = await _victim_rows(machine_rt, victim)
    assert victim_keys and victim_rows["contexts"]

    async with _attacker(service, "acme") as attacker:
        await _attack_with_ids(attacker, _crafted(victim, victim_id), subject)
        await _attack_with_names(attacker, victim, victim_source)
        await attacker.tool("search_context", {"query": marker})
        await attacker.tool("search_context", {"query": "leaked credentials"})
        await attacker.tool("compose_context", {"query": marker})
        await attacker.tool("recent_events", {})
        await attacker.tool("pipeline_status", {})
        await attacker.resource("hookline://recent")
        await attacker.resource("hookline://status")
        await attacker.prompt("summarize_activity", {"since": "2000-01-01T00:00:00Z"})
        await attacker.prompt("triage_failures", {"since": "2000-01-01T00:00:00Z"})
        prompt_ref = PromptReference(type="ref/prompt", name="summarize_activity")
        template = ResourceTemplateReference(type="ref/resource", uri="hookline://context/{id}")
        for prefix in ("", "v", victim_source[:3], "ctx_", victim_id[:8], "\x00", HUGE):
            await attacker.complete(prompt_ref, {"name": "source", "value": prefix})
            await attacker.complete(template, {"name": "id", "value": prefix})
        templates = await attacker.client.list_resource_templates()
        assert [t.uri_template for t in templates.resource_templates] == ["hookline://context/{id}"]

    # The victim's text reached nobody (the attacker's own queries and ids echo back; those are theirs).
    victim_texts = (f"{marker} leaked", f"{marker} fix", f"the {marker} is")
    assert not [text for text in attacker.seen if any(victim in text for victim in victim_texts)]
    assert victim_source not in attacker.completions and victim_id not in attacker.completions
    # Deleted nothing: the victim's keys, values and rows are as they were, and it reads them all.
    after = {k: v for k, v in (await _redis_state(machine_rt)).items() if victim.encode() in k}
    assert after == victim_keys
    assert await _victim_rows(machine_rt, victim) == victim_rows
    mine = await service.get_context(victim, victim_id)
    assert marker in mine.head.title
    assert context_id("acme", subject) != victim_id  # the same subject is another context elsewhere


async def test_completions_offer_only_the_callers_own_names(machine_rt: Runtime, tenant: str) -> None:
    victim = "acme-" + secrets.token_hex(3)
    victim_id, _ = await _seed_victim(machine_rt, victim, _marker())
    service = MemoryService(machine_rt)
    await SourceStore(machine_rt.db).add("own-" + tenant[-8:].replace("_", "-"), "github", ["s"], tenant)
    async with Client(build_mcp(service, tenant)) as client:
        prompt_ref = PromptReference(type="ref/prompt", name="summarize_activity")
        sources = await client.complete(prompt_ref, {"name": "source", "value": ""})
        ids = await client.complete(
            ResourceTemplateReference(type="ref/resource", uri="hookline://context/{id}"),
            {"name": "id", "value": "ctx_"},
        )
    assert sources.completion.values == ["own-" + tenant[-8:].replace("_", "-")]
    assert victim_id not in ids.completion.values


async def test_a_credential_whose_tenant_breaks_the_rule_is_refused_everywhere(
    machine_rt: Runtime, tenant: str
) -> None:
    """A tenant name from before the rule (``acme:prod``) cannot reach a key: every call is refused."""
    service = MemoryService(machine_rt)
    before = await _state(machine_rt)
    async with _attacker(service, "acme:prod") as attacker:
        await attacker.tool("search_context", {"query": "x"})
        await attacker.tool("recent_events", {})
        await attacker.tool("remember", {"text": "hello"})
        await attacker.tool("forget", {"id": "ctx_" + "0" * 20})
        await attacker.tool("pipeline_status", {})
        await attacker.resource("hookline://recent")
        await attacker.prompt("summarize_activity", {})
        await attacker.subscribe("hookline://context/ctx_" + "0" * 20)
        assert attacker.answered() == []
        unexpected = [text for text in attacker.seen if text not in ("", "null") and "AuthError" not in text]
        assert not unexpected
    assert await _state(machine_rt) == before


async def _victim_rows(rt: Runtime, victim: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    async with rt.db.connection() as conn:
        for table in ("contexts", "events", "ledger", "sources", "rollups", "context_links", "forget_audit"):
            found = await (
                await conn.execute(f"SELECT t::text FROM {table} AS t WHERE t.tenant = %s", (victim,))
            ).fetchall()
            rows[table] = sorted(str(row[0]) for row in found)
    return rows


BAD_TENANTS = ["acme:prod", "Acme", "", "a" * 64, "a}b", "{t:x}", "a/b", "a\x00", "-a", "\u00e4"]
BAD_IDS = [
    "ctx_x",
    "prod:ctx_" + "ab" * 10,
    "ctx_" + "ab" * 10 + "}",
    "CTX_" + "AB" * 10,
    "ctx_" + "ab" * 10 + "\x00",
]


@pytest.mark.parametrize("tenant", BAD_TENANTS)
def test_every_context_key_refuses_a_tenant_the_rule_refuses(tenant: str) -> None:
    for build in (keys.context, keys.context_events, keys.context_warm, keys.context_forgotten):
        with pytest.raises(InvalidIdentifier):
            build(tenant, "ctx_" + "ab" * 10)


@pytest.mark.parametrize("ctx_id", [*BAD_IDS, HUGE])
def test_every_context_key_refuses_an_id_the_rule_refuses(ctx_id: str) -> None:
    for build in (keys.context, keys.context_events, keys.context_warm, keys.context_forgotten):
        with pytest.raises(InvalidIdentifier):
            build("acme", ctx_id)
    assert keys.context("acme", "ctx_" + "ab" * 10) == "hl:{c:acme:ctx_" + "ab" * 10 + "}:ctx"


async def test_forgetting_an_id_nobody_uses_leaves_nothing_behind(machine_rt: Runtime, tenant: str) -> None:
    """A loop of forgets of made-up (well-formed) ids must not fill Redis with tombstones."""
    service = MemoryService(machine_rt)
    before = await _redis_state(machine_rt)
    made_up = ["ctx_" + secrets.token_hex(10) for _ in range(5)]
    async with Client(build_mcp(service, tenant)) as client:
        for ctx_id in made_up:
            result = await client.call_tool("forget", {"id": ctx_id})
            assert result.is_error and "NotFound" in result.content[0].text  # type: ignore[union-attr]
    after = await _redis_state(machine_rt)
    new_keys = {key for key in after if key not in before}
    assert all(b":rate:" in key for key in new_keys), new_keys  # only the caller's rate budget
    for ctx_id in made_up:
        assert not await machine_rt.redis.exists(keys.context_forgotten(tenant, ctx_id))

"""The whole MCP surface through the SDK's in-process client, over the machine's Redis and PostgreSQL:
every tool (remember through real workers, forget down to the last byte), the resources, the
prompts and live updates (modern listen and legacy subscribe, tenant-scoped)."""

from __future__ import annotations

import copy
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import mcp_types as types
import orjson
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated

from ingest import envelope
from ingest.stream import StreamProducer, Submission
from ingest.worker import Worker, WorkerConfig, audit_handler, context_handler, index_handler
from mcp_server.server import build_mcp
from memory import keys
from memory.errors import NotFound
from memory.ids import context_id
from memory.ledger import Ledger
from memory.lifecycle import Lifecycle
from memory.runtime import Runtime
from memory.service import MemoryService
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event, wait_until

SOURCE = "gh"
README_PR = "github:Codertocat/Hello-World#pr/2"  # the subject of the pull_request_opened fixture
WITHIN_S = 10


@asynccontextmanager
async def pipeline(rt: Runtime) -> AsyncIterator[StreamProducer]:
    """A producer and one worker per consumer group, as `hookline serve` runs them."""
    service = MemoryService(rt)
    handlers = {
        keys.CONTEXT_GROUP: context_handler(service),
        keys.INDEX_GROUP: index_handler(service),
        keys.AUDIT_GROUP: audit_handler(Ledger(rt.db)),
    }
    workers = [
        Worker(rt.redis, handler, rt.settings.partitions, WorkerConfig(group, 50, 20), f"surface-{group}")
        for group, handler in handlers.items()
    ]
    producer = StreamProducer(rt.redis)
    finished = [anyio.Event() for _ in workers]

    async def run(worker: Worker, done: anyio.Event) -> None:
        try:
            await worker.run()
        finally:
            done.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="producer")
        for worker, done in zip(workers, finished, strict=True):
            tasks.start_soon(run, worker, done, name=f"worker-{worker.config.group}")
        try:
            yield producer
        finally:
            for worker in workers:  # as the app stops them: finish the batch in hand, ack it
                worker.stop()
            with anyio.fail_after(WITHIN_S):
                for done in finished:
                    await done.wait()
            tasks.cancel_scope.cancel()


async def enqueue(
    rt: Runtime,
    producer: StreamProducer,
    tenant: str,
    event_type: str,
    payload: dict[str, Any],
    delivery: str,
) -> str:
    """Queue a GitHub delivery as intake does; returns its stream entry id."""
    partition = keys.partition_of(tenant, SOURCE, rt.settings.partitions)
    data = envelope.encode(
        envelope.Envelope(tenant, SOURCE, "github", event_type, delivery, f"{SOURCE}:{delivery}",
                          datetime.now(UTC), orjson.dumps(payload))
    )  # fmt: skip
    result = await producer.submit(
        Submission(
            keys.dedup_window(partition, tenant, SOURCE, f"{SOURCE}:{delivery}"),
            3600,
            keys.events_stream(partition),
            keys.accepted_counter(partition),
            data,
        )
    )
    assert result.entry_id is not None
    return result.entry_id


def pull_request(repo: str, number: int, title: str, action: str = "opened") -> dict[str, Any]:
    payload = copy.deepcopy(load_fixture("pull_request_opened"))
    payload["repository"]["full_name"] = repo
    payload["number"] = payload["pull_request"]["number"] = number
    payload["pull_request"]["title"] = title
    payload["action"] = action
    return payload


async def _seed(service: MemoryService, tenant: str) -> None:
    failed = copy.deepcopy(load_fixture("workflow_run_completed"))
    failed["workflow_run"]["conclusion"] = "failure"
    await service.apply_events(
        [
            make_event(tenant, "pull_request", load_fixture("pull_request_opened"), "gh:1"),
            make_event(tenant, "push", load_fixture("push"), "gh:2"),
            make_event(tenant, "issues", load_fixture("issues_opened"), "gh:3"),
            make_event(tenant, "workflow_run", failed, "gh:4"),
        ]
    )


def _text(result: Any) -> str:
    return str(result.content[0].text)


# -- tools -------------------------------------------------------------------------------------


async def test_every_tool_has_a_description_an_output_schema_and_annotations(
    machine_rt: Runtime, tenant: str
) -> None:
    async with Client(build_mcp(MemoryService(machine_rt), tenant)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    reads = {"search_context", "get_context", "compose_context", "recent_events", "pipeline_status"}
    assert set(tools) == reads | {"remember", "forget", "summarize_context"}
    for name, tool in tools.items():
        assert tool.description and tool.output_schema and tool.annotations, name
        assert tool.annotations.read_only_hint is (name in reads), name
        assert tool.annotations.destructive_hint is (name == "forget"), name
    assert tools["remember"].input_schema["required"] == ["text"]
    assert "cursor" in tools["search_context"].input_schema["properties"]


async def test_search_pages_through_its_hits_with_a_cursor(machine_rt: Runtime, tenant: str) -> None:
    service = MemoryService(machine_rt)
    await _seed(service, tenant)
    async with Client(build_mcp(service, tenant)) as client:
        first = (await client.call_tool("search_context", {"query": "", "limit": 3})).structured_content
        assert len(first["hits"]) == 3 and first["next_cursor"]
        rest = await client.call_tool(
            "search_context", {"query": "", "limit": 3, "cursor": first["next_cursor"]}
        )
        assert len(rest.structured_content["hits"]) == 1 and rest.structured_content["next_cursor"] is None
        ids = [hit["id"] for hit in first["hits"] + rest.structured_content["hits"]]
        assert len(set(ids)) == 4
        other = await client.call_tool("search_context", {"query": "README", "cursor": first["next_cursor"]})
        assert other.is_error and "another search" in _text(other)
        cold = await client.call_tool("search_context", {"query": "", "tier": "cold"})
        assert cold.structured_content["hits"] == []


async def test_remember_goes_through_the_stream_and_a_worker_applies_it(
    machine_rt: Runtime, tenant: str
) -> None:
    note = f"Deploys freeze on Fridays ({secrets.token_hex(3)})"
    async with Client(build_mcp(MemoryService(machine_rt), tenant)) as client:
        first = await client.call_tool("remember", {"text": note, "subject": "release policy"})
        assert not first.is_error, _text(first)
        queued = first.structured_content
        assert queued["status"] == "queued" and queued["event_id"].startswith("agent:")
        assert (
            await client.call_tool("get_context", {"id": queued["context_id"]})
        ).is_error  # not applied yet
        async with pipeline(machine_rt):

            async def applied() -> bool:
                return not (await client.call_tool("get_context", {"id": queued["context_id"]})).is_error

            await wait_until(applied, within=WITHIN_S)
        ctx = (await client.call_tool("get_context", {"id": queued["context_id"]})).structured_content
        assert [event["id"] for event in ctx["events"]] == [queued["event_id"]]
        assert ctx["source"] == "agent" and note[:40] in ctx["events"][0]["text"]
        again = (
            await client.call_tool("remember", {"text": note, "subject": "release policy"})
        ).structured_content
        assert again == {**queued, "duplicate": True, "status": "duplicate"}
        found = (
            await client.call_tool("search_context", {"query": "deploys freeze fridays"})
        ).structured_content
        assert found["hits"][0]["id"] == queued["context_id"]


@pytest.mark.parametrize(
    ("tool", "arguments", "needle"),
    [
        ("forget", {}, "exactly one"),
        ("forget", {"id": "ctx_" + "1" * 20, "subject": "y"}, "exactly one"),
        ("forget", {"id": "ctx_00000000000000000000"}, "NotFound"),
        ("remember", {"text": ""}, "text"),
        ("remember", {"text": "x", "importance": 2}, "importance"),
        ("search_context", {"query": "x", "cursor": "not-a-cursor"}, "cursor"),
        ("search_context", {"query": "x", "tier": "lukewarm"}, "tier"),
        ("get_context", {"id": "ctx_" + "0" * 20}, "NotFound"),
    ],
)
async def test_bad_calls_are_readable_tool_errors(
    machine_rt: Runtime, tenant: str, tool: str, arguments: dict[str, Any], needle: str
) -> None:
    async with Client(build_mcp(MemoryService(machine_rt), tenant)) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error and needle in _text(result)


async def test_pipeline_status_reports_groups_streams_and_tiers(machine_rt: Runtime, tenant: str) -> None:
    async with Client(build_mcp(MemoryService(machine_rt), tenant)) as client, pipeline(machine_rt):
        await client.call_tool("remember", {"text": "status check"})
        result = await client.call_tool("pipeline_status", {})
    status = result.structured_content
    assert not result.is_error and {"streams", "groups", "dlq", "events", "tiers"} <= set(status)
    assert status["events"]["accepted"] >= 1


# -- forget ------------------------------------------------------------------------------------


async def _redis_bytes(rt: Runtime) -> bytes:
    """Every key name and every value in the database, as one blob to search."""
    chunks: list[bytes] = []
    async for name in rt.redis.scan_iter(count=1000):
        chunks.append(name)
        kind = (await rt.redis.type(name)).decode()
        if kind == "string":
            chunks.append(await rt.redis.get(name) or b"")
        elif kind == "hash":
            chunks += [item for pair in (await rt.redis.hgetall(name)).items() for item in pair]
        elif kind == "list":
            chunks += await rt.redis.lrange(name, 0, -1)
        elif kind == "set":
            chunks += list(await rt.redis.smembers(name))
        elif kind == "zset":
            chunks += await rt.redis.zrange(name, 0, -1)
        elif kind == "stream":
            for _, fields in await rt.redis.xrange(name):
                chunks += [item for pair in fields.items() for item in pair]
    return b"\n".join(chunks)


async def _rows_mentioning(rt: Runtime, needle: str) -> dict[str, int]:
    found = {}
    async with rt.db.connection() as conn:
        for table in ("contexts", "events", "ledger", "forget_audit"):
            sql = f"SELECT count(*) FROM {table} t WHERE t::text LIKE %s"
            found[table] = (await (await conn.execute(sql, (f"%{needle}%",))).fetchone())[0]  # type: ignore[index]
    return found


async def test_forget_leaves_no_byte_of_the_subject_anywhere(machine_rt: Runtime, tenant: str) -> None:
    rt = machine_rt
    secret = secrets.token_hex(6)
    repo, subject = f"octo/forget-{secret}", f"github:octo/forget-{secret}#pr/7"
    async with Client(build_mcp(MemoryService(rt), tenant)) as client:
        async with pipeline(rt) as producer:
            plan = pull_request(repo, 7, f"Plan {secret}")
            opened = await enqueue(rt, producer, tenant, "pull_request", plan, f"{secret}-1")
            closed = pull_request(repo, 7, f"Plan {secret}", "closed")
            closing = await enqueue(rt, producer, tenant, "pull_request", closed, f"{secret}-2")
            await enqueue(
                rt, producer, tenant, "pull_request", pull_request("octo/kept", 8, "Kept"), "kept-1"
            )

            async def applied_everywhere() -> bool:
                rows = await _rows_mentioning(rt, secret)
                return rows["events"] == 2 and await _ledger_count(rt, tenant) == 3

            await wait_until(applied_everywhere, within=WITHIN_S)
        # With the workers stopped: one more event not yet read by any group, one entry waiting for a
        # retry and one dead letter, as a failing worker would leave them.
        late = StreamProducer(rt.redis)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(late.run, name="late-producer")
            again = pull_request(repo, 7, f"Plan {secret} again")
            unread = await enqueue(rt, late, tenant, "pull_request", again, f"{secret}-3")
            tasks.cancel_scope.cancel()
        stream = keys.events_stream(keys.partition_of(tenant, SOURCE, rt.settings.partitions))
        await rt.redis.zadd(keys.retries(keys.INDEX_GROUP), {f"{stream}|{opened}": 1})
        await rt.redis.hset(keys.attempts(keys.INDEX_GROUP), f"{stream}|{opened}", 2)
        envelope_bytes = (await rt.redis.xrange(stream, opened, opened))[0][1][b"e"]
        dead = {"stream": stream, "entry": opened, "group": "index", "error": "boom", "e": envelope_bytes}
        await rt.redis.xadd(keys.dead_letters(), {**dead, "attempts": "5", "at_ms": "1"})
        assert secret.encode() in await _redis_bytes(rt)

        result = await client.call_tool("forget", {"subject": subject})
        assert not result.is_error, _text(result)
        deleted = result.structured_content["deleted"]
        assert deleted["stream_entries"] == 3 and deleted["events"] == 2 and deleted["ledger"] == 2
        assert deleted["contexts"] == 1 and deleted["dead_letters"] == 1 and deleted["retries"] == 1
        assert deleted["redis_keys"] >= 2 and deleted["dedup_keys"] == 3

        assert secret.encode() not in await _redis_bytes(rt)
        assert await _rows_mentioning(rt, secret) == {
            "contexts": 0,
            "events": 0,
            "ledger": 0,
            "forget_audit": 0,
        }
        kept = await client.call_tool("search_context", {"query": "Kept"})
        assert [hit["title"] for hit in kept.structured_content["hits"]] == ["octo/kept#8 Kept"]
        again = await client.call_tool("forget", {"subject": subject})
        assert again.is_error and "NotFound" in _text(again)
    async with rt.db.connection() as conn:
        audit = await (
            await conn.execute("SELECT subject_hash, counts FROM forget_audit WHERE tenant = %s", (tenant,))
        ).fetchall()
    assert audit == [(hashlib.sha256(subject.encode()).hexdigest(), deleted)]
    for group in keys.GROUPS:  # no pending list points at a deleted entry
        still = await rt.redis.xpending_range(stream, group, "-", "+", 1000)
        assert {row["message_id"].decode() for row in still}.isdisjoint({opened, closing, unread})


async def _ledger_count(rt: Runtime, tenant: str) -> int:
    async with rt.db.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM ledger WHERE tenant = %s", (tenant,))
        ).fetchone()
    return int(row[0]) if row else 0


async def test_forget_reaches_the_warm_and_cold_tiers(machine_rt: Runtime, tenant: str) -> None:
    rt = machine_rt
    service = MemoryService(rt)
    secret = secrets.token_hex(6)
    await service.apply_events(
        [make_event(tenant, "pull_request", pull_request(f"octo/cold-{secret}", 3, "Archived"), "gh:c1")]
    )
    ctx_id = (await service.recent_events(tenant, limit=1))[0].context_id
    now = datetime.now(UTC)
    await Lifecycle(rt).run_pass(now + timedelta(hours=10))
    assert await rt.redis.llen(keys.zstd_sample_pool(SOURCE)) == 1  # a training sample, with the payload
    await Lifecycle(rt).run_pass(now + timedelta(hours=200))
    archive = (await rt.redis.hget(keys.context(tenant, ctx_id), "archive_key") or b"").decode()
    assert archive and await rt.blobs.get(archive)
    async with Client(build_mcp(service, tenant)) as client:
        result = await client.call_tool("forget", {"id": ctx_id})
    assert not result.is_error, _text(result)
    assert result.structured_content["deleted"]["archives"] == 1
    assert result.structured_content["deleted"]["samples"] == 1
    with pytest.raises(NotFound):
        await rt.blobs.get(archive)
    assert secret.encode() not in await _redis_bytes(rt)


# -- resources and prompts -------------------------------------------------------------------


async def test_resources_list_and_read_as_json(machine_rt: Runtime, tenant: str) -> None:
    service = MemoryService(machine_rt)
    await _seed(service, tenant)
    async with Client(build_mcp(service, tenant)) as client:
        listed = {str(resource.uri) for resource in (await client.list_resources()).resources}
        assert {"hookline://recent", "hookline://status"} <= listed
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert "hookline://context/{id}" in templates
        recent_doc = orjson.loads((await client.read_resource("hookline://recent")).contents[0].text)
        assert "never as instructions" in recent_doc["notice"]  # third-party text is data
        recent = recent_doc["untrusted_data"]
        assert sorted(e["id"] for e in recent["events"]) == ["gh:1", "gh:2", "gh:3", "gh:4"]
        status = orjson.loads((await client.read_resource("hookline://status")).contents[0].text)
        assert {"groups", "streams", "tiers"} <= set(status)
        ctx_id = recent["events"][0]["context_id"]
        read = await client.read_resource(f"hookline://context/{ctx_id}")
        context = orjson.loads(read.contents[0].text)["untrusted_data"]
        assert context["id"] == ctx_id and context["events"]
        with pytest.raises(MCPError, match=r"NotFound|no context"):
            await client.read_resource("hookline://context/ctx_" + "0" * 20)
        with pytest.raises(MCPError, match="InvalidIdentifier"):
            await client.read_resource("hookline://context/ctx_missing")


async def test_prompts_embed_the_tenants_real_data(machine_rt: Runtime, tenant: str) -> None:
    service = MemoryService(machine_rt)
    await _seed(service, tenant)
    ctx_id = context_id(tenant, README_PR)
    now = datetime.now(UTC)
    unmappable = envelope.Envelope(tenant, SOURCE, "github", "push", "d", "gh:d", now, b"[1]")
    await machine_rt.redis.xadd(
        keys.dead_letters(),
        {"stream": keys.events_stream(0), "entry": "1-0", "group": "context", "error": "payload is not JSON",
         "attempts": "1", "at_ms": str(int(now.timestamp() * 1000)), "e": envelope.encode(unmappable)},
    )  # fmt: skip
    async with Client(build_mcp(service, tenant)) as client:
        names = {prompt.name for prompt in (await client.list_prompts()).prompts}
        assert {"summarize_activity", "triage_failures", "investigate_context"} <= names
        summary = (await client.get_prompt("summarize_activity", {})).messages[0].content.text
        assert "Update the README with new information." in summary and "(`ctx_" in summary
        # the fixture's workflow run is years old: it is found only when the period reaches back
        triage = (await client.get_prompt("triage_failures", {"since": "2000-01-01T00:00:00Z"})).messages[0]
        triage = triage.content.text
        assert "octo-org/octo-repo" in triage and "failure" in triage and "payload is not JSON" in triage
        deep = (await client.get_prompt("investigate_context", {"id": ctx_id})).messages[0].content.text
        assert ctx_id in deep and "opened pull request #2" in deep
        with pytest.raises(MCPError, match="ISO-8601"):
            await client.get_prompt("summarize_activity", {"since": "last week"})
        with pytest.raises(MCPError, match="NotFound"):
            await client.get_prompt("investigate_context", {"id": "ctx_" + "0" * 20})
        with pytest.raises(MCPError, match="InvalidIdentifier"):
            await client.get_prompt("investigate_context", {"id": "ctx_missing"})


# -- live updates ----------------------------------------------------------------------------


async def test_a_modern_listener_hears_its_context_change(machine_rt: Runtime, tenant: str) -> None:
    service = MemoryService(machine_rt)
    await _seed(service, tenant)
    ctx_id = context_id(tenant, README_PR)
    uri = f"hookline://context/{ctx_id}"
    async with (
        Client(build_mcp(service, tenant)) as client,
        client.listen(resource_subscriptions=[uri]) as sub,
    ):
        closed = pull_request(
            "Codertocat/Hello-World", 2, "Update the README with new information.", "closed"
        )
        await service.apply_events([make_event(tenant, "pull_request", closed, "gh:closed")])
        with anyio.fail_after(1):
            event = await anext(sub)
    assert event == ResourceUpdated(uri)


async def test_a_legacy_subscriber_hears_only_its_own_tenants_contexts(
    machine_rt: Runtime, tenant: str
) -> None:
    service = MemoryService(machine_rt)
    other = "t_" + secrets.token_hex(4)
    await _seed(service, tenant)
    await _seed(service, other)
    mine, theirs = context_id(tenant, README_PR), context_id(other, README_PR)
    heard: dict[str, list[str]] = {tenant: [], other: []}
    arrived = {tenant: anyio.Event(), other: anyio.Event()}

    def handler(who: str) -> Any:
        async def record(message: Any) -> None:
            if isinstance(message, types.ResourceUpdatedNotification):
                heard[who].append(message.params.uri)
                arrived[who].set()

        return record

    async with (
        Client(build_mcp(service, tenant), mode="legacy", message_handler=handler(tenant)) as client,
        Client(build_mcp(service, other), mode="legacy", message_handler=handler(other)) as intruder,
    ):
        with pytest.warns(MCPDeprecationWarning):
            await client.subscribe_resource(f"hookline://context/{mine}")
        with pytest.warns(MCPDeprecationWarning):  # the intruder asks for my context, and its own
            await intruder.subscribe_resource(f"hookline://context/{mine}")
        with pytest.warns(MCPDeprecationWarning):
            await intruder.subscribe_resource(f"hookline://context/{theirs}")
        push = load_fixture("pull_request_opened")
        await service.apply_events([make_event(tenant, "pull_request", push, "gh:again")])
        await service.apply_events([make_event(other, "pull_request", push, "gh:again")])
        with anyio.fail_after(1):
            await arrived[tenant].wait()
            await arrived[other].wait()  # published after mine: mine would have come first
    assert heard == {tenant: [f"hookline://context/{mine}"], other: [f"hookline://context/{theirs}"]}


async def test_when_the_connection_whose_lifespan_reads_closes_another_takes_over(
    machine_rt: Runtime, tenant: str
) -> None:
    """Each in-process connection runs the server's lifespan; one of them reads the channels, and
    when it closes, a lifespan still running takes over."""
    service = MemoryService(machine_rt)
    await _seed(service, tenant)
    server = build_mcp(service, tenant)
    uri = f"hookline://context/{context_id(tenant, README_PR)}"
    heard = anyio.Event()

    async def record(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification) and message.params.uri == uri:
            heard.set()

    first_open, close_first, first_closed = anyio.Event(), anyio.Event(), anyio.Event()

    async def first_connection() -> None:  # opened first: its lifespan reads the channels
        async with Client(server, mode="legacy") as first:
            with pytest.warns(MCPDeprecationWarning):
                await first.subscribe_resource(uri)
            first_open.set()
            await close_first.wait()
        first_closed.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(first_connection, name="first-connection")
        await first_open.wait()
        async with Client(server, mode="legacy", message_handler=record) as second:
            with pytest.warns(MCPDeprecationWarning):
                await second.subscribe_resource(uri)
            close_first.set()
            await first_closed.wait()

            async def announced_and_heard() -> bool:  # a message sent in the hand-over gap is lost
                await machine_rt.redis.publish(keys.context_updates(tenant), context_id(tenant, README_PR))
                return heard.is_set()

            await wait_until(announced_and_heard, within=5)

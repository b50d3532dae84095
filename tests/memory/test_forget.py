"""forget() reaches every store: a context that went through every tier, with a roll-up, a link,
pre-warm keys, cached embeddings, stream entries, a retry and a dead letter, leaves no byte of its
text anywhere - every Redis key and value (warm blobs decompressed), every column of every
PostgreSQL table, every blob (opened when sealed, decompressed) - while a similar context of the same
tenant and one of another tenant stay whole and readable.

On the machine's Redis and the embedded PostgreSQL (pgvector, for embeddings and links), with the
real local embedder, a file:// blob store, plain and sealed with HOOKLINE_ENCRYPTION_KEYS.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
import zstandard

from ingest import envelope
from ingest.stream import StreamProducer, Submission
from memory import keys
from memory.crypto import generate_key
from memory.forget import forget
from memory.ids import context_id
from memory.ledger import Ledger
from memory.lifecycle import Lifecycle
from memory.mappers.base import mapper_for
from memory.models import Event
from memory.rollups import roll_up
from memory.runtime import Runtime, open_runtime
from memory.service import MemoryService
from memory.tiers.hot import HotTier
from memory.tiers.warm import MIN_SAMPLES, frame_dictionary
from tests.conftest import make_settings
from tests.fixtures.github_examples import load_fixture
from tests.helpers import flush_redis

SOURCE, OTHER_SOURCE = "gh", "gh-other"
FILLERS = 18  # with the two contexts of interest: enough demotions to train a dictionary
ROUNDS = MIN_SAMPLES - 4  # times the context to forget goes warm before a dictionary is trained
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@pytest.fixture(params=["plain", "sealed"])
async def frt(
    request: pytest.FixtureRequest, tmp_path: Path, machine_redis_url: str, embedded_database_url: str
) -> AsyncIterator[Runtime]:
    """Vectors (embedded PostgreSQL, local embedder), a blob store of its own, archives sealed or not."""
    extra = {"HOOKLINE_BLOB_URL": (tmp_path / "blobs").as_uri()}
    if request.param == "sealed":
        extra["HOOKLINE_ENCRYPTION_KEYS"] = generate_key("k1")
    settings = make_settings(tmp_path, machine_redis_url, embedded_database_url, **extra)
    async with open_runtime(settings, migrate=False) as runtime:
        await flush_redis(runtime.redis)
        async with runtime.db.connection() as conn:
            await conn.execute("TRUNCATE events, contexts, ledger, rollups, context_links, forget_audit")
        yield runtime


# -- the data ----------------------------------------------------------------------------------


def _issue(repo: str, number: int, title: str, body: str) -> dict[str, Any]:
    payload = copy.deepcopy(load_fixture("issues_opened"))
    payload["repository"]["full_name"] = repo
    payload["issue"].update(number=number, title=title, body=body)
    return payload


PLAN = (
    "Roll the new release out to the canary hosts first, watch the error rate and the latency for an "
    "hour, then continue region by region; roll back at once if the error budget burns too fast."
)


def _plan(number: int, marker: str) -> dict[str, Any]:
    """A deployment plan issue that says ``marker`` in its title and body (the rest is shared)."""
    return _issue("octo/deploys", number, f"Deploy plan {marker}", f"{PLAN} Code name {marker}.")


def _subject(issue: dict[str, Any]) -> str:
    return mapper_for("github").map("issues", issue).subject


def _comment(issue: dict[str, Any], body: str) -> dict[str, Any]:
    payload = copy.deepcopy(load_fixture("issue_comment_created"))
    payload["repository"], payload["issue"] = issue["repository"], issue["issue"]
    payload["comment"]["body"] = body
    return payload


class Deliveries:
    """Queues events as intake does (stream entries, dedup keys) and returns them as workers see them."""

    def __init__(self, rt: Runtime, producer: StreamProducer) -> None:
        self.rt = rt
        self.producer = producer
        self.envelopes: dict[str, bytes] = {}  # event id -> envelope

    async def __call__(self, tenant: str, source: str, event_type: str, payload: dict[str, Any]) -> Event:
        delivery = secrets.token_hex(6)
        dedup = f"{source}:{delivery}"
        data = envelope.encode(
            envelope.Envelope(tenant, source, "github", event_type, delivery, dedup, datetime.now(UTC),
                              orjson.dumps(payload))
        )  # fmt: skip
        partition = keys.partition_of(tenant, source, self.rt.settings.partitions)
        result = await self.producer.submit(
            Submission(keys.dedup_window(partition, tenant, source, dedup), 3600,
                       keys.events_stream(partition), keys.accepted_counter(partition), data)
        )  # fmt: skip
        assert result.entry_id is not None
        self.envelopes[dedup] = data
        return envelope.entry_event(data, result.entry_id)


@asynccontextmanager
async def delivering(rt: Runtime) -> AsyncIterator[Deliveries]:
    producer = StreamProducer(rt.redis)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(producer.run, name="producer")
        yield Deliveries(rt, producer)
        tasks.cancel_scope.cancel()


# -- reading every store -----------------------------------------------------------------------


async def _redis_texts(rt: Runtime) -> list[tuple[str, bytes]]:
    """Every key name and value (envelopes decoded; warm blobs also decompressed, with the
    dictionary their frame names, which must exist), as (key, bytes) to search."""
    redis: Any = rt.redis  # bytes in, bytes out
    found: list[tuple[str, bytes]] = []
    frames: list[tuple[str, bytes]] = []
    async for raw_name in redis.scan_iter(count=1000):
        name = raw_name.decode()
        found.append((name, raw_name))
        kind = (await redis.type(raw_name)).decode()
        values: list[bytes] = []
        if kind == "string":
            values = [await redis.get(raw_name) or b""]
        elif kind == "hash":
            values = [item for pair in (await redis.hgetall(raw_name)).items() for item in pair]
        elif kind == "list":
            values = await redis.lrange(raw_name, 0, -1)
        elif kind == "set":
            values = list(await redis.smembers(raw_name))
        elif kind == "zset":
            values = await redis.zrange(raw_name, 0, -1)
        elif kind == "stream":
            for _, fields in await redis.xrange(raw_name):
                values += [item for pair in fields.items() for item in pair]
                if b"e" in fields:  # an envelope, whose payload may be compressed
                    values.append(envelope.decode_envelope(fields[b"e"]).payload)
        else:
            raise AssertionError(f"{name} is a {kind}: the scan does not read those")
        found += [(name, value) for value in values]
        frames += [(name, value) for value in values if value.startswith(ZSTD_MAGIC)]
    for name, frame in frames:
        dict_id = frame_dictionary(frame, 0)
        dictionary = await redis.get(keys.zstd_dictionary(dict_id)) if dict_id else None
        assert dict_id == 0 or dictionary is not None, f"{name} needs dictionary {dict_id}, which is gone"
        decompressor = (
            zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary))
            if dictionary
            else zstandard.ZstdDecompressor()
        )
        found.append((name, decompressor.decompress(frame)))
    return found


async def _postgres_texts(rt: Runtime, needle: str) -> dict[str, int]:
    """Rows of every table of the schema with ``needle`` in any column (cast to text; bytea as is)."""
    found: dict[str, int] = {}
    async with rt.db.connection() as conn:
        columns = await (
            await conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
            )
        ).fetchall()
        tables: dict[str, list[str]] = {}
        for table, column, kind in columns:
            test = f"position(%(raw)s in \"{column}\") > 0" if kind == "bytea" else (
                f"strpos(\"{column}\"::text, %(text)s) > 0"
            )  # fmt: skip
            tables.setdefault(str(table), []).append(test)
        assert {"contexts", "events", "ledger", "rollups", "context_links", "forget_audit"} <= set(tables)
        for table, tests in tables.items():
            sql = f'SELECT count(*) FROM "{table}" WHERE {" OR ".join(tests)}'
            row = await (await conn.execute(sql, {"text": needle, "raw": needle.encode()})).fetchone()
            if row and row[0]:
                found[table] = int(row[0])
    return found


async def _blob_texts(rt: Runtime, root: Path) -> list[tuple[str, bytes]]:
    """Every blob as stored (on disk), as the store opens it, and decompressed."""
    files = [p for p in await anyio.to_thread.run_sync(lambda: list(root.rglob("*"))) if p.is_file()]
    found: list[tuple[str, bytes]] = [(str(p), await anyio.Path(p).read_bytes()) for p in files]
    async for key in rt.blobs.list(""):
        data = await rt.blobs.get(key)
        found += [(key, data), (key, zstandard.ZstdDecompressor().decompress(data))]
    return found


async def _everywhere(rt: Runtime, root: Path, needle: str) -> dict[str, list[str]]:
    """Where ``needle`` is: Redis keys, PostgreSQL tables, blobs."""
    raw = needle.encode()
    return {
        "redis": sorted({name for name, value in await _redis_texts(rt) if raw in value}),
        "postgres": sorted(await _postgres_texts(rt, needle)),
        "blobs": sorted({name for name, value in await _blob_texts(rt, root) if raw in value}),
    }


# -- the test ------------------------------------------------------------------------------------


async def test_forget_leaves_no_trace_in_any_store(frt: Runtime, tenant: str, tmp_path: Path) -> None:
    rt, other_tenant = frt, f"o{tenant}"
    gone, kept, theirs = (f"zq{secrets.token_hex(8)}" for _ in range(3))  # unique markers
    service = MemoryService(rt)
    async with delivering(rt) as deliver:
        # The context to forget (its marker in the title, the body and a comment), a near
        # duplicate of the same tenant (two events: it ranks above the fillers in the roll-up), one
        # of another tenant, and fillers enough to train a dictionary.
        opened, similar, foreign = _plan(7, gone), _plan(8, kept), _plan(7, theirs)
        first = [
            await deliver(tenant, SOURCE, "issues", opened),
            await deliver(tenant, SOURCE, "issue_comment", _comment(opened, f"Agreed: {gone}")),
        ]
        rest = [
            await deliver(tenant, SOURCE, "issues", similar),
            await deliver(tenant, SOURCE, "issue_comment", _comment(similar, f"Agreed: {kept}")),
        ]
        rest += [
            await deliver(tenant, SOURCE, "issues", _issue("octo/chores", 100 + i, f"Chore {i}", "Tidy up."))
            for i in range(FILLERS)
        ]
        rest.append(await deliver(other_tenant, OTHER_SOURCE, "issues", foreign))
    envelopes = deliver.envelopes

    # Applied as the workers would (hot tier, index with embeddings and links, ledger); the context
    # to forget first, so that it is the longest idle and its document trains the dictionary.
    await service.apply_events(first)
    await service.apply_events(rest)
    await Ledger(rt.db).record([*first, *rest])
    target, neighbour = (context_id(tenant, _subject(issue)) for issue in (opened, similar))
    foreigner = context_id(other_tenant, _subject(foreign))
    head, _, _ = await HotTier(rt.redis).read_raw(tenant, target)  # (not a read: no access recorded)
    assert first[0].stream_id and head["title"].endswith(gone)

    # Hot -> warm, and back to hot by a comment, again and again before there are samples enough
    # for a dictionary: zstd's trainer keeps the text that recurs across samples (here in most of
    # them), as that of a busy context, demoted and promoted all day long, does.
    now = datetime.now(UTC)
    await _pin_all_but(rt, target)
    for round_ in range(ROUNDS):
        assert (await Lifecycle(rt).run_pass(now + timedelta(hours=10 * (round_ + 1)))).to_warm == 1
        async with delivering(rt) as deliver:
            again = _comment(opened, f"Round {round_}: {gone}")
            await service.apply_events([await deliver(tenant, SOURCE, "issue_comment", again)])
    await _pin_all_but(rt, None)
    await Lifecycle(rt).run_pass(now + timedelta(hours=40))  # every context warm: a dictionary
    trained = int(await rt.redis.get(keys.zstd_current_dictionary(SOURCE)) or 0)
    assert trained and gone.encode() in (await rt.redis.get(keys.zstd_dictionary(trained)) or b"")
    # Then only it goes cold (archived).
    await _pin_all_but(rt, target)
    await Lifecycle(rt).run_pass(now + timedelta(hours=400))
    await _pin_all_but(rt, None)
    head, _, _ = await HotTier(rt.redis).read_raw(tenant, target)
    assert head["tier"] == "cold" and await rt.blobs.get(head["archive_key"])

    # A day's roll-up, reads that teach the pre-warmer (then a pre-warm: cold -> warm), a search.
    assert await roll_up(rt, now.date()) == 2
    for ctx_id in (neighbour, target, neighbour, target):
        await service.get_context(tenant, ctx_id, agent="triage")
    assert await service.prewarmer.warm(tenant, [target]) == [target]
    await service.search_context(tenant, f"deploy plan {gone}")
    # Another comment: warm -> hot again (the archive stays); then a retry and a dead letter.
    async with delivering(rt) as deliver:
        await service.apply_events([await deliver(tenant, SOURCE, "issue_comment", _comment(opened, gone))])
    assert (await service.get_context(tenant, target)).head.tier == "hot"
    stream = keys.events_stream(keys.partition_of(tenant, SOURCE, rt.settings.partitions))
    await rt.redis.zadd(keys.retries(keys.INDEX_GROUP), {f"{stream}|{first[1].stream_id}": 1})
    await rt.redis.hset(keys.attempts(keys.INDEX_GROUP), f"{stream}|{first[1].stream_id}", 2)
    dead: dict[str, str | bytes] = {"stream": stream, "entry": first[0].stream_id, "group": "index"}
    dead |= {"error": "boom", "e": envelopes[first[0].id], "attempts": "5", "at_ms": "1"}
    await rt.redis.xadd(keys.dead_letters(), dead)  # type: ignore[arg-type]

    using = [n for n in await _warm_dictionaries(rt, tenant) if n == trained]
    pool = await rt.redis.lrange(keys.zstd_sample_pool(SOURCE), 0, -1)
    samples = [sample for sample in pool if gone.encode() in sample]
    before = await _everywhere(rt, tmp_path, gone)
    assert {
        keys.context(tenant, target),
        keys.context_events(tenant, target),
        keys.zstd_dictionary(trained),
        keys.zstd_sample_pool(SOURCE),
        keys.dead_letters(),
        stream,
    } <= set(before["redis"])
    assert {"contexts", "events", "rollups"} <= set(before["postgres"])
    assert before["blobs"]
    assert await _redis_ids(rt, target) > {keys.embedding_context(tenant, target)}
    async with rt.db.connection() as conn:
        links = await (await conn.execute("SELECT a, b FROM context_links")).fetchall()
    assert tuple(sorted((target, neighbour))) in links

    report = await forget(rt, tenant, target, envelope.entry_event)

    counts = report.counts
    events = 2 + ROUNDS + 1  # opened, commented, the rounds' comments, the late one
    assert counts["stream_entries"] == events and counts["events"] == events and counts["ledger"] == 2
    assert counts["retries"] == 1 and counts["dead_letters"] == 1 and counts["contexts"] == 1
    assert counts["archives"] == 1 and counts["samples"] == len(samples) > ROUNDS
    assert counts["links"] == 1
    assert counts["dictionaries"] == 1 and counts["recompressed"] == len(using) > 0
    assert counts["rollups_rewritten"] == 1 and counts["prewarm_keys"] >= 5 and counts["redis_keys"] == 3
    assert await _everywhere(rt, tmp_path, gone) == {"redis": [], "postgres": [], "blobs": []}
    # Not even its id, but for the tombstone (Redis) and the audit row (PostgreSQL).
    assert await _redis_ids(rt, target) == {keys.context_forgotten(tenant, target)}
    assert await _postgres_texts(rt, target) == {"forget_audit": 1}
    assert await rt.redis.exists(keys.zstd_dictionary(trained)) == 0
    assert trained not in await _warm_dictionaries(rt, tenant)
    assert int(await rt.redis.get(keys.zstd_current_dictionary(SOURCE)) or 0) != trained

    # The similar context and the other tenant's: whole, readable, their own traces in place.
    mine = await service.get_context(tenant, neighbour, restore=True)
    assert mine.head.tier == "warm" and mine.head.title.endswith(kept) and len(mine.events) == 2
    chore = _issue("octo/chores", 100, "Chore 0", "Tidy up.")
    assert (await service.get_context(tenant, context_id(tenant, _subject(chore)))).events
    yours = await service.get_context(other_tenant, foreigner)
    assert yours.head.title.endswith(theirs)
    for marker in (kept, theirs):
        where = await _everywhere(rt, tmp_path, marker)
        assert where["redis"] and {"contexts", "events", "rollups"} <= set(where["postgres"]), where
    assert await rt.redis.exists(keys.embedding_context(tenant, neighbour)) == 1
    async with rt.db.connection() as conn:
        summary, contexts = (
            await (
                await conn.execute("SELECT summary, contexts FROM rollups WHERE tenant = %s", (tenant,))
            ).fetchone()
        ) or ("", 0)
    assert f"[{neighbour}]" in summary and f"[{target}]" not in summary and contexts == FILLERS + 1


async def _pin_all_but(rt: Runtime, ctx_id: str | None) -> None:
    """Keep every other context where it is during a lifecycle pass (or none, with None)."""
    async with rt.db.connection() as conn:
        await conn.execute(
            "UPDATE contexts SET pinned = (%s::text IS NOT NULL AND id <> %s)", (ctx_id, ctx_id)
        )


async def _warm_dictionaries(rt: Runtime, tenant: str) -> list[int]:
    """The dictionary each warm blob of the tenant's source names in its frame."""
    redis: Any = rt.redis
    used = []
    async for name in redis.scan_iter(match=f"hl:{{c:{tenant}:*}}:warm"):
        used.append(frame_dictionary(await redis.get(name) or b"", -1))
    return used


async def _redis_ids(rt: Runtime, ctx_id: str) -> set[str]:
    """The keys whose name or value holds the context's id."""
    return {name for name, value in await _redis_texts(rt) if ctx_id.encode() in value}

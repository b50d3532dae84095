"""forget and the warm tier's zstd dictionaries (``WarmCodec.scrub``), on both real Redis servers.

A dictionary that learned from a forgotten context holds its text verbatim; it must go, without
losing the warm blobs compressed with it nor a write that races the scrub.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import redis.asyncio as aioredis

from memory import keys
from memory.ids import context_id, head_key
from memory.models import ContextEvent
from memory.runtime import Runtime
from memory.tiers import document
from memory.tiers.hot import HotTier, HotWrite
from memory.tiers.warm import MIN_SAMPLES, WarmCodec, WarmContexts, first_event_id, frame_dictionary

SOURCE = "gh"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
SECRET = b"zq-forgotten-plan-7f3a"


def _text(subject: str) -> str:
    if subject.endswith("#1"):  # the context to forget: its secret, said the same way in each event
        return f"Deployment plan {SECRET.decode()} for the canary hosts, step by step."
    return f"Routine maintenance of {subject}: rotate the logs, patch the hosts, check backups."


async def _hot(rt: Runtime, tenant: str, subject: str, events: int) -> tuple[str, list[str]]:
    """A hot context of ``events`` events; returns its id and event ids."""
    ctx_id = context_id(tenant, subject)
    writes = []
    for n in range(events):
        at = T0 + timedelta(minutes=n)
        event = ContextEvent(f"gh:{subject[-1]}-{n}", "issues", _text(subject), at, at, ("alice",))
        head = {"source": SOURCE, "subject": subject, "kind": "issue", "title": _text(subject)[:40],
                "state": "open", "url": "", "labels": "[]", "fields": "{}"}  # fmt: skip
        writes.append(
            HotWrite(tenant, ctx_id, event, head_key(int(at.timestamp() * 1000), event.id), 0.5, head)
        )
    await HotTier(rt.redis).apply(writes, T0)
    return ctx_id, [w.event.id for w in writes]


async def _document(rt: Runtime, tenant: str, ctx_id: str) -> bytes:
    head, events, _ = await HotTier(rt.redis).read_raw(tenant, ctx_id)
    return document.encode(head, events)


async def _to_warm(rt: Runtime, codec: WarmCodec, tenant: str, ctx_id: str, dict_id: int) -> None:
    head, events, _ = await HotTier(rt.redis).read_raw(tenant, ctx_id)
    raw = document.encode(head, events)
    blob = await codec.compress(dict_id, raw)
    assert await HotTier(rt.redis).to_warm(tenant, ctx_id, blob, len(events), dict_id, len(raw))


def _listing(tenant: str, ids: list[str]) -> WarmContexts:
    async def warm(source: str) -> AsyncIterator[tuple[str, str]]:
        for ctx_id in ids:
            yield tenant, ctx_id

    return warm


async def _setup(rt: Runtime, tenant: str) -> tuple[WarmCodec, str, list[str], list[str], int]:
    """The context to forget (half the samples are its documents) and others, warm with the
    dictionary trained on them; returns (codec, its id, its event ids, the others' ids, dict id)."""
    codec = WarmCodec(rt.redis)
    target, event_ids = await _hot(rt, tenant, "github:o/r#1", 3)
    others = [(await _hot(rt, tenant, f"github:o/r#{n}", 2))[0] for n in range(2, 10)]
    pool = [await _document(rt, tenant, target)] * (MIN_SAMPLES // 2)
    pool += [await _document(rt, tenant, ctx_id) for ctx_id in others]
    await rt.redis.lpush(keys.zstd_sample_pool(SOURCE), *pool)
    trained = await codec.train(SOURCE, pool)
    assert trained and SECRET in (await rt.redis.get(keys.zstd_dictionary(trained)) or b"")
    for ctx_id in others:
        await _to_warm(rt, codec, tenant, ctx_id, trained)
    return codec, target, event_ids, others, trained


async def _readable(rt: Runtime, codec: WarmCodec, tenant: str, ctx_id: str) -> bytes:
    head, _, blob = await HotTier(rt.redis).read_raw(tenant, ctx_id)
    assert blob is not None
    return await WarmCodec(rt.redis).decompress(int(head["warm_dict"]), blob)  # a fresh process' view


async def test_a_dictionary_that_learned_from_the_context_is_replaced_and_deleted(
    rt: Runtime, tenant: str
) -> None:
    codec, _target, event_ids, others, trained = await _setup(rt, tenant)
    before = {ctx_id: await _readable(rt, codec, tenant, ctx_id) for ctx_id in others}
    members = orjson.loads(await rt.redis.hget(keys.zstd_members(SOURCE), str(trained)) or b"[]")
    assert min(event_ids) in members  # the record names the context by its first event id

    assert await codec.remove_samples(SOURCE, event_ids, "github:o/r#1") == MIN_SAMPLES // 2
    counts = await codec.scrub(SOURCE, event_ids, True, _listing(tenant, others))

    assert counts == {"dictionaries": 1, "recompressed": len(others), "dictionaries_kept": 0}
    assert await rt.redis.exists(keys.zstd_dictionary(trained)) == 0
    assert await rt.redis.hexists(keys.zstd_members(SOURCE), str(trained)) == 0
    current = await codec.current(SOURCE)
    assert current != trained  # retrained from the cleaned pool, or none (too few samples left)
    for ctx_id in others:
        assert await _readable(rt, codec, tenant, ctx_id) == before[ctx_id]
        head, _, blob = await HotTier(rt.redis).read_raw(tenant, ctx_id)
        assert blob is not None and frame_dictionary(blob, -1) == int(head["warm_dict"]) == current
    for raw in await rt.redis.lrange(keys.zstd_sample_pool(SOURCE), 0, -1):
        assert SECRET not in raw
    # Safe to run again: nothing left to do.
    again = await codec.scrub(SOURCE, event_ids, False, _listing(tenant, others))
    assert again == {"dictionaries": 0, "recompressed": 0, "dictionaries_kept": 0}


async def test_a_dictionary_of_other_contexts_is_left_alone(rt: Runtime, tenant: str) -> None:
    codec, _, _, others, trained = await _setup(rt, tenant)
    _, stranger_events = await _hot(rt, tenant, "github:o/r#x", 1)  # never in a sample

    assert await codec.remove_samples(SOURCE, stranger_events, "github:o/r#x") == 0
    counts = await codec.scrub(SOURCE, stranger_events, False, _listing(tenant, others))

    assert counts["dictionaries"] == counts["recompressed"] == 0
    assert (
        await rt.redis.exists(keys.zstd_dictionary(trained)) == 1 and await codec.current(SOURCE) == trained
    )


async def test_a_blob_written_during_the_scrub_is_not_overwritten(
    rt: Runtime, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec, _target, event_ids, others, _trained = await _setup(rt, tenant)
    racing = others[0]
    plain = WarmCodec(rt.redis)
    concurrent = await plain.compress(0, b'{"events":{},"head":{"title":"written meanwhile"}}')
    compress = codec.compress

    async def compress_while_someone_writes(dict_id: int, data: bytes) -> bytes:
        # What a concurrent event and demotion do between the scrub's read and its write.
        if await rt.redis.get(keys.context_warm(tenant, racing)) != concurrent:
            await rt.redis.set(keys.context_warm(tenant, racing), concurrent)
        return await compress(dict_id, data)

    monkeypatch.setattr(codec, "compress", compress_while_someone_writes)
    await codec.remove_samples(SOURCE, event_ids, None)
    counts = await codec.scrub(SOURCE, event_ids, True, _listing(tenant, others))

    assert await rt.redis.get(keys.context_warm(tenant, racing)) == concurrent  # the later write won
    assert counts["recompressed"] == len(others) - 1 and counts["dictionaries"] == 1


async def test_a_scrub_interrupted_before_the_delete_is_finished_by_a_rerun(
    rt: Runtime, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    codec, _target, event_ids, others, trained = await _setup(rt, tenant)

    async def crash(source: str, dict_ids: set[int]) -> None:
        raise aioredis.ConnectionError("the process died here")

    await codec.remove_samples(SOURCE, event_ids, None)

    with monkeypatch.context() as patch:
        patch.setattr(codec, "_drop", crash)
        with pytest.raises(aioredis.ConnectionError):
            await codec.scrub(SOURCE, event_ids, True, _listing(tenant, others))
    assert await rt.redis.exists(keys.zstd_dictionary(trained)) == 1  # not yet deleted

    counts = await WarmCodec(rt.redis).scrub(SOURCE, event_ids, False, _listing(tenant, others))

    assert counts["dictionaries"] == 1 and await rt.redis.exists(keys.zstd_dictionary(trained)) == 0
    for ctx_id in others:
        await _readable(rt, codec, tenant, ctx_id)  # every blob still decompresses


async def test_a_retired_dictionary_is_not_used_and_its_blobs_stay_readable(rt: Runtime, tenant: str) -> None:
    _codec, _, _, _others, trained = await _setup(rt, tenant)
    other_process = WarmCodec(rt.redis)
    await other_process.compress(trained, b"warm the cache")  # it holds the dictionary in memory
    await rt.redis.sadd(keys.zstd_retired(), str(trained))  # a forget retired it meanwhile

    blob = await other_process.compress(trained, b"a demotion that read the old current id")

    assert frame_dictionary(blob, -1) == 0  # compressed with no dictionary
    await rt.redis.delete(keys.zstd_dictionary(trained))
    # Recorded with the retired id, read by the frame's: no dictionary needed.
    assert await WarmCodec(rt.redis).decompress(trained, blob) == b"a demotion that read the old current id"


async def test_a_dictionary_trained_before_records_existed_is_scrubbed(rt: Runtime, tenant: str) -> None:
    codec, _target, event_ids, others, trained = await _setup(rt, tenant)
    await rt.redis.delete(keys.zstd_members(SOURCE))  # as an older version left it

    assert await codec.scrub(SOURCE, event_ids, False, _listing(tenant, others)) == {
        "dictionaries": 0,
        "recompressed": 0,
        "dictionaries_kept": 0,
    }  # fmt: skip  (nothing says it learned from the context, and no sample of it was found)
    removed = await codec.remove_samples(SOURCE, event_ids, None)
    counts = await codec.scrub(SOURCE, event_ids, removed > 0, _listing(tenant, others))

    assert removed and counts["dictionaries"] == 1
    assert await rt.redis.exists(keys.zstd_dictionary(trained)) == 0


def test_the_first_event_id_of_a_sample() -> None:
    sample = document.encode({"title": "t"}, {"gh:b": "{}", 'gh:"a"': "{}"})
    assert first_event_id(sample) == 'gh:"a"'
    assert first_event_id(sample[:14]) == ""  # cut inside the id
    assert first_event_id(b'{"events":{},"head":{}}') == ""
    assert first_event_id(b"not a document") == ""

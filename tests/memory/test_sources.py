"""``SourceStore`` on the real PostgreSQL: typed options, secrets sealed at rest and bound to the
source's name, misconfigured rows, moves between tenants, the bounded cache, and rewrap."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from memory.cache import TtlLru
from memory.crypto import SEALED_TEXT, Keyring, generate_key, text_sealed_with
from memory.errors import InvalidArgument, UnknownSource
from memory.ids import InvalidIdentifier
from memory.runtime import Runtime
from memory.source_options import SourceOptions
from memory.sources import SourceMisconfigured, SourceMoveRefused, SourceStore

KEY_1 = generate_key("k1")
KEY_2 = generate_key("k2")
KEY_3 = generate_key("k3")


async def _row(rt: Runtime, name: str) -> tuple[str, list[str], dict[str, object]]:
    async with rt.db.connection() as conn:
        row = await (
            await conn.execute("SELECT tenant, secrets, config FROM sources WHERE name = %s", (name,))
        ).fetchone()
    assert row is not None
    return row[0], list(row[1]), dict(row[2])


async def _execute(rt: Runtime, query: str, *params: object) -> None:
    async with rt.db.connection() as conn:
        await conn.execute(query, params)


async def test_options_are_stored_normalized_and_loaded_typed(machine_rt: Runtime, tenant: str) -> None:
    options = SourceOptions.from_pairs(["dedup_window=24h", "priority=0.8", "pii_mask=email"], "github")
    await SourceStore(machine_rt.db).add("gh", "github", ["s3cret"], tenant, options)
    assert (await _row(machine_rt, "gh"))[2] == {"dedup_window": 86400, "priority": 0.8, "pii_mask": "email"}
    source = await SourceStore(machine_rt.db).get("gh")
    assert source.options == options and source.options.dedup_window == 86400
    assert source.secrets == ("s3cret",) and source.tenant == tenant


@pytest.mark.parametrize(
    "config",
    [{"dedup_window": "soon"}, {"nope": 1}, {"header": "X-Sig"}, {"priority": 7}, ["not", "an", "object"]],
)
async def test_a_bad_stored_option_makes_the_source_misconfigured_not_broken(
    machine_rt: Runtime, tenant: str, config: object
) -> None:
    store = SourceStore(machine_rt.db)
    await store.add("gh", "github", ["s3cret"], tenant)
    await store.add("fine", "github", ["s3cret"], tenant)
    await _execute(machine_rt, "UPDATE sources SET config = %s WHERE name = 'gh'", Jsonb(config))
    fresh = SourceStore(machine_rt.db)
    with pytest.raises(SourceMisconfigured, match="source 'gh' has"):
        await fresh.get("gh")
    with pytest.raises(SourceMisconfigured):  # cached as broken for the TTL, raised afresh each time
        await fresh.get("gh")
    assert (await fresh.get("fine")).name == "fine"
    listed = {s.name: s for s in await fresh.list(tenant)}
    assert listed["gh"].options is None and listed["gh"].problem and "gh" in listed["gh"].problem
    assert listed["fine"].options == SourceOptions() and listed["fine"].problem is None


async def test_secrets_are_sealed_at_rest_and_open_only_with_the_keys_and_under_their_name(
    machine_rt: Runtime, tenant: str
) -> None:
    sealing = SourceStore(machine_rt.db, Keyring.parse(KEY_1))
    await sealing.add("gh", "github", ["first-secret", "second-secret"], tenant)
    await sealing.add("other", "github", ["other-secret"], tenant)
    _, stored, _ = await _row(machine_rt, "gh")
    assert all(s.startswith(SEALED_TEXT) and text_sealed_with(s) == "k1" for s in stored)
    assert not any("secret" in s for s in stored)
    assert (await SourceStore(machine_rt.db, Keyring.parse(f"{KEY_2},{KEY_1}")).get("gh")).secrets == (
        "first-secret",
        "second-secret",
    )
    listing = next(s for s in await sealing.list() if s.name == "gh")
    assert (listing.secrets, listing.sealed, listing.problem) == (2, 2, None)

    with pytest.raises(SourceMisconfigured, match="HOOKLINE_ENCRYPTION_KEYS is not set"):
        await SourceStore(machine_rt.db).get("gh")
    with pytest.raises(SourceMisconfigured, match="not configured"):
        await SourceStore(machine_rt.db, Keyring.parse(KEY_2)).get("gh")
    # A sealed secret copied into another source's row does not open there.
    await _execute(machine_rt, "UPDATE sources SET secrets = %s WHERE name = 'other'", stored)
    with pytest.raises(SourceMisconfigured, match="tampered or moved"):
        await SourceStore(machine_rt.db, Keyring.parse(KEY_1)).get("other")
    with pytest.raises(InvalidArgument, match="may not begin"):
        await sealing.add("gh2", "github", [stored[0]], tenant)


async def test_moving_a_source_to_another_tenant_must_be_forced(machine_rt: Runtime, tenant: str) -> None:
    store = SourceStore(machine_rt.db)
    await store.add("gh", "github", ["one"], tenant)
    await store.add("gh", "github", ["two"], tenant, SourceOptions(priority=0.2))  # same tenant: updates
    assert await _row(machine_rt, "gh") == (tenant, ["two"], {"priority": 0.2})
    with pytest.raises(SourceMoveRefused, match=f"belongs to tenant '{tenant}'"):
        await store.add("gh", "github", ["three"], "elsewhere")
    assert await _row(machine_rt, "gh") == (tenant, ["two"], {"priority": 0.2})  # untouched
    await store.add("gh", "github", ["three"], "elsewhere", force=True)
    assert await _row(machine_rt, "gh") == ("elsewhere", ["three"], {})
    assert (await store.get("gh")).tenant == "elsewhere"


@pytest.mark.parametrize("name", ["Gh", "a:b", "x{1}", "../etc", "a\x00b", "", "x" * 64])
async def test_names_and_tenants_follow_the_identifier_rule(machine_rt: Runtime, name: str) -> None:
    store = SourceStore(machine_rt.db)
    with pytest.raises(InvalidIdentifier):
        await store.get(name)
    with pytest.raises(InvalidIdentifier):
        await store.add(name, "github", ["s"], "default")
    with pytest.raises(InvalidIdentifier):
        await store.add("fine", "github", ["s"], name or "Bad")
    async with machine_rt.db.connection() as conn:
        count = await (await conn.execute("SELECT count(*) FROM sources")).fetchone()
    assert count == (0,)


async def test_unknown_names_are_cached_as_misses_and_cannot_grow_the_cache(machine_rt: Runtime) -> None:
    store = SourceStore(machine_rt.db, cache_ttl_s=60, max_entries=8)
    for n in range(50):
        with pytest.raises(UnknownSource):
            await store.get(f"nobody-{n}")
    cache = store._cache
    loading = store._loading
    assert isinstance(cache, TtlLru) and isinstance(loading, TtlLru)
    assert len(cache) == 8 and len(loading) == 0
    # A miss is remembered for the TTL: a source added behind this store's back is not seen yet.
    await SourceStore(machine_rt.db).add("nobody-49", "github", ["s"], "default")
    with pytest.raises(UnknownSource):
        await store.get("nobody-49")
    assert (await SourceStore(machine_rt.db).get("nobody-49")).name == "nobody-49"
    await store.add("nobody-49", "github", ["s2"], "default")  # this store's own writes drop the entry
    assert (await store.get("nobody-49")).secrets == ("s2",)


async def test_rewrap_seals_plaintext_and_old_key_secrets_with_the_first_key(
    machine_rt: Runtime, tenant: str
) -> None:
    await SourceStore(machine_rt.db).add("plain", "github", ["p-secret"], tenant)
    await SourceStore(machine_rt.db, Keyring.parse(KEY_1)).add("old", "github", ["o-secret"], tenant)
    await SourceStore(machine_rt.db, Keyring.parse(KEY_2)).add("current", "github", ["c-secret"], tenant)
    await SourceStore(machine_rt.db, Keyring.parse(KEY_3)).add("lost", "github", ["l-secret"], tenant)
    current_before = await _row(machine_rt, "current")

    rotated = SourceStore(machine_rt.db, Keyring.parse(f"{KEY_2},{KEY_1}"))
    report = await rotated.rewrap()
    assert (report.sources, report.resealed) == (4, 2)
    assert len(report.failures) == 1 and report.failures[0].startswith("lost: ")
    for name in ("plain", "old", "current"):
        _, secrets, _ = await _row(machine_rt, name)
        assert [text_sealed_with(s) for s in secrets] == ["k2"]
    assert await _row(machine_rt, "current") == current_before  # already on the first key: untouched
    only_new = SourceStore(machine_rt.db, Keyring.parse(KEY_2))
    assert (await only_new.get("plain")).secrets == ("p-secret",)
    assert (await only_new.get("old")).secrets == ("o-secret",)
    assert (await rotated.rewrap()).resealed == 0
    with pytest.raises(InvalidArgument, match="not set"):
        await SourceStore(machine_rt.db).rewrap()

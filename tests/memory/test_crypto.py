"""Encryption at rest of the archives (``memory.crypto``): the keyring, sealing bound to the blob's
key, and a context driven to cold with ``HOOKLINE_ENCRYPTION_KEYS`` set, on the file store and on S3
(moto over HTTP), then a key rotation with ``hookline tier rewrap``."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import boto3
import pytest

from memory import keys
from memory.crypto import MAGIC, DecryptionError, Keyring, SealedBlobStore, generate_key
from memory.errors import ConfigError
from memory.lifecycle import Lifecycle
from memory.runtime import Runtime, open_runtime
from memory.service import MemoryService
from memory.tiers.blobstore import FileBlobStore
from tests.conftest import make_settings
from tests.e2e.serve_process import hookline_env, run_cli
from tests.fixtures.github_examples import load_fixture
from tests.helpers import make_event

HOUR = timedelta(hours=1)
KEY_1 = generate_key("k1")
KEY_2 = generate_key("k2")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("k1", "kid:base64key"),
        (":" + KEY_1.split(":")[1], "kid:base64key"),
        ("k1:not base64!", "not valid base64"),
        ("k1:" + base64.b64encode(os.urandom(16)).decode(), "must be 32 bytes"),
        (f"{KEY_1},{KEY_1}", "listed twice"),
    ],
)
def test_a_malformed_keyring_is_refused(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Keyring.parse(spec)


def test_a_sealed_blob_opens_only_where_it_was_stored_and_untouched() -> None:
    ring = Keyring.parse(f"{KEY_1}")
    sealed = ring.seal(b"the archive", b"contexts/a")
    assert sealed.startswith(MAGIC) and b"the archive" not in sealed
    assert ring.open(sealed, b"contexts/a") == b"the archive"
    with pytest.raises(DecryptionError, match="tampered or moved"):
        ring.open(sealed, b"contexts/b")  # copied under another context's key
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(DecryptionError, match="tampered or moved"):
        ring.open(flipped, b"contexts/a")
    with pytest.raises(DecryptionError, match="not configured"):
        Keyring.parse(KEY_2).open(sealed, b"contexts/a")
    with pytest.raises(DecryptionError, match="truncated"):
        ring.open(MAGIC, b"contexts/a")
    assert ring.open(b"plain, from before", b"contexts/a") == b"plain, from before"
    assert ring.seal(b"x", b"k") != ring.seal(b"x", b"k")  # a fresh nonce every time


async def _to_cold(rt: Runtime, tenant: str) -> tuple[str, str]:
    """A context with a distinctive comment, driven to cold; (its id, the archive's key)."""
    service = MemoryService(rt)
    payload = load_fixture("issue_comment_created")
    payload["comment"]["body"] = "the launch code is swordfish-4711"
    await service.apply_events([make_event(tenant, "issue_comment", payload, "gh:c1")])
    ctx_id = (await service.recent_events(tenant, limit=1))[0].context_id
    now = datetime.now(UTC)
    await Lifecycle(rt).run_pass(now + 10 * HOUR)
    assert (await Lifecycle(rt).run_pass(now + 200 * HOUR)).to_cold == 1
    archive = (await rt.redis.hget(keys.context(tenant, ctx_id), "archive_key") or b"").decode()
    assert archive
    return ctx_id, archive


async def test_archives_are_sealed_on_files_and_a_rotation_reseals_them(
    tmp_root: Path, rt: Runtime, tenant: str
) -> None:
    data_dir = tmp_root / f"enc-{tenant}"
    env = {"HOOKLINE_DATA_DIR": str(data_dir), "HOOKLINE_EMBEDDER": "none"}
    settings = make_settings(tmp_root, rt.redis_url, rt.database_url, **env, HOOKLINE_ENCRYPTION_KEYS=KEY_1)
    async with open_runtime(settings, migrate=False) as sealed_rt:
        ctx_id, archive = await _to_cold(sealed_rt, tenant)
        on_disk = await FileBlobStore(data_dir / "blobs").get(archive)
        assert on_disk.startswith(MAGIC + bytes([2]) + b"k1")
        restored = await MemoryService(sealed_rt).get_context(tenant, ctx_id, restore=True)
        assert "swordfish-4711" in restored.events[0].text

    # Rotation: k2 first, k1 still listed; `tier rewrap` re-seals; then k1 can go.
    cli_env = hookline_env(
        data_dir, HOOKLINE_EMBEDDER="none", HOOKLINE_REDIS_URL=rt.redis_url,
        HOOKLINE_DATABASE_URL=rt.database_url, HOOKLINE_ENCRYPTION_KEYS=f"{KEY_2},{KEY_1}",
    )  # fmt: skip
    out = (await anyio.to_thread.run_sync(lambda: run_cli(cli_env, "tier", "rewrap"))).replace(" ", "")
    assert '"resealed":1' in out and '"key":"k2"' in out
    assert (await FileBlobStore(data_dir / "blobs").get(archive)).startswith(MAGIC + bytes([2]) + b"k2")
    only_new = make_settings(tmp_root, rt.redis_url, rt.database_url, **env, HOOKLINE_ENCRYPTION_KEYS=KEY_2)
    async with open_runtime(only_new, migrate=False) as rotated:
        ctx = await MemoryService(rotated).export_context(tenant, ctx_id)
        assert "swordfish-4711" in ctx["events"][0]["text"]


async def test_archives_are_sealed_in_s3(
    tmp_root: Path, rt: Runtime, tenant: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    bucket = f"hl-enc-{tenant.replace('_', '-')}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    env = {
        "HOOKLINE_DATA_DIR": str(tmp_root / f"enc-s3-{tenant}"),
        "HOOKLINE_EMBEDDER": "none",
        "HOOKLINE_BLOB_URL": f"s3://{bucket}/archive",
        "HOOKLINE_S3_ENDPOINT_URL": moto_endpoint,
        "HOOKLINE_ENCRYPTION_KEYS": KEY_1,
    }
    settings = make_settings(tmp_root, rt.redis_url, rt.database_url, **env)
    async with open_runtime(settings, migrate=False) as sealed_rt:
        assert isinstance(sealed_rt.blobs, SealedBlobStore)
        ctx_id, archive = await _to_cold(sealed_rt, tenant)
        stored = s3.get_object(Bucket=bucket, Key=f"archive/{archive}")["Body"].read()
        assert stored.startswith(MAGIC) and b"swordfish" not in stored
        exported = await MemoryService(sealed_rt).export_context(tenant, ctx_id)
        assert "swordfish-4711" in exported["events"][0]["text"]

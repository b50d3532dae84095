"""One contract for every blob store, run against file:// (a temp dir) and s3:// (moto over HTTP)."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest

from memory.errors import ConfigError, InvalidArgument, NotFound, StoreUnavailable
from memory.tiers.blobstore import BlobStore, FileBlobStore, open_blobstore
from memory.tiers.s3 import S3BlobStore, S3Credentials
from tests.helpers import free_port

CREDENTIALS = S3Credentials("testing", "testing")  # moto accepts any
HOSTILE_KEYS = ["../x", "a/../../x", "/abs", "", "a//b", "a/", "./a", ".hidden", "a/\x00b", "x" * 1025]


@pytest.fixture(scope="module")
def s3_admin(moto_endpoint: str) -> Iterator[Any]:
    """A plain boto3 client, to set up buckets and to look behind a store's back."""
    client = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client("s3", endpoint_url=moto_endpoint)
    yield client
    client.close()


@pytest.fixture
def bucket(s3_admin: Any) -> str:
    name = "hl-test-" + secrets.token_hex(4)
    s3_admin.create_bucket(Bucket=name)
    return name


def s3_store(endpoint: str, bucket: str, prefix: str = "", **options: Any) -> S3BlobStore:
    return S3BlobStore(bucket, prefix, endpoint_url=endpoint, credentials=CREDENTIALS, **options)


@pytest.fixture(params=["file", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    blobs: BlobStore
    if request.param == "file":
        blobs = open_blobstore(tmp_path.as_uri())
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        blobs = s3_store(endpoint, request.getfixturevalue("bucket"), "archive")
    try:
        yield blobs
    finally:
        await blobs.aclose()


async def keys(blobs: BlobStore, prefix: str = "") -> list[str]:
    return [key async for key in blobs.list(prefix)]


def tree(root: Path) -> list[str]:
    """Every file and directory under ``root``, hidden ones included."""
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


# The contract ---------------------------------------------------------------------------------


async def test_round_trip(store: BlobStore) -> None:
    await store.put("contexts/2026/01/31/c1.json.zst", b"\x28\xb5\x2f\xfd hello")
    assert await store.get("contexts/2026/01/31/c1.json.zst") == b"\x28\xb5\x2f\xfd hello"


async def test_round_trip_of_5_mb_of_binary(store: BlobStore) -> None:
    data = os.urandom(5 * 1024 * 1024)
    await store.put("big.bin", data)
    assert await store.get("big.bin") == data


async def test_empty_blob(store: BlobStore) -> None:
    await store.put("empty", b"")
    assert await store.get("empty") == b""


async def test_overwrite_replaces_the_blob(store: BlobStore) -> None:
    await store.put("k", b"first, and longer")
    await store.put("k", b"second")
    assert await store.get("k") == b"second"
    assert await keys(store) == ["k"]


async def test_get_of_a_missing_key_is_not_found(store: BlobStore) -> None:
    with pytest.raises(NotFound):
        await store.get("contexts/nope.json.zst")


async def test_delete_is_idempotent(store: BlobStore) -> None:
    await store.put("a/b", b"x")
    await store.delete("a/b")
    await store.delete("a/b")
    await store.delete("never/was")
    with pytest.raises(NotFound):
        await store.get("a/b")


async def test_a_key_and_a_key_under_it_are_different_blobs(store: BlobStore) -> None:
    await store.put("a/b", b"x")
    with pytest.raises(NotFound):
        await store.get("a")
    await store.delete("a")  # nothing by that name: not an error
    assert await store.get("a/b") == b"x"


async def test_list_by_prefix_in_sorted_order(store: BlobStore) -> None:
    written = [
        "contexts/2026/01/31/c2.json.zst",
        "contexts/2026/01/31/c1.json.zst",
        "contexts/2026/02/01/c3.json.zst",
        "contexts/2026/01/3x.json.zst",
        "contexts/2026/01.x",
        "other/c9.json.zst",
        "top",
    ]
    for key in written:
        await store.put(key, key.encode())

    assert await keys(store) == sorted(written)
    assert await keys(store, "contexts/2026/01/31/") == [
        "contexts/2026/01/31/c1.json.zst",
        "contexts/2026/01/31/c2.json.zst",
    ]
    assert await keys(store, "contexts/2026/01") == [
        "contexts/2026/01.x",
        "contexts/2026/01/31/c1.json.zst",
        "contexts/2026/01/31/c2.json.zst",
        "contexts/2026/01/3x.json.zst",
    ]
    assert await keys(store, "contexts/2026/0") == sorted(k for k in written if k.startswith("contexts/"))
    assert await keys(store, "t") == ["top"]
    assert await keys(store, "top") == ["top"]
    assert await keys(store, "contexts/2027/") == []
    assert await keys(store, "nothing/here/") == []


async def test_list_of_an_empty_store(store: BlobStore) -> None:
    assert await keys(store) == []


async def test_list_after_delete(store: BlobStore) -> None:
    await store.put("d/1", b"1")
    await store.put("d/2", b"2")
    await store.delete("d/1")
    assert await keys(store, "d/") == ["d/2"]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
async def test_hostile_keys_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(InvalidArgument):
        await store.put(key, b"x")
    with pytest.raises(InvalidArgument):
        await store.get(key)
    with pytest.raises(InvalidArgument):
        await store.delete(key)


@pytest.mark.parametrize("prefix", ["../", "/abs", "a//", "../../etc/p", ".git/"])
async def test_hostile_prefixes_are_refused(store: BlobStore, prefix: str) -> None:
    with pytest.raises(InvalidArgument):
        await keys(store, prefix)


async def test_ping(store: BlobStore) -> None:
    await store.ping()


async def test_concurrent_writes_of_one_key_leave_one_whole_blob(store: BlobStore) -> None:
    versions = [bytes([n]) * 100_000 for n in range(8)]
    async with anyio.create_task_group() as tg:
        for data in versions:
            tg.start_soon(store.put, "contended", data)
    assert await store.get("contended") in versions
    assert await keys(store) == ["contended"]


# file:// only ---------------------------------------------------------------------------------


async def test_file_store_keeps_blobs_under_its_root(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "root")
    await blobs.put("contexts/2026/01/31/c1.json.zst", b"x")
    assert await anyio.Path(tmp_path / "root/contexts/2026/01/31/c1.json.zst").read_bytes() == b"x"
    assert tree(tmp_path) == [
        "root",
        "root/contexts",
        "root/contexts/2026",
        "root/contexts/2026/01",
        "root/contexts/2026/01/31",
        "root/contexts/2026/01/31/c1.json.zst",
    ]


async def test_a_failed_file_write_leaves_no_temp_file(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path)
    await blobs.put("a/b", b"x")
    with pytest.raises(StoreUnavailable, match="cannot write blob 'a'"):
        await blobs.put("a", b"y")  # "a" is a directory: the final rename fails
    assert tree(tmp_path) == ["a", "a/b"]
    assert await blobs.get("a/b") == b"x"


async def test_file_listing_ignores_stray_temp_files(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path)
    await blobs.put("d/k", b"x")
    (tmp_path / "d" / ".k.crashed.tmp").write_bytes(b"half")  # left by a process killed mid-write
    assert await keys(blobs) == ["d/k"]


async def test_file_ping_of_an_unusable_root(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreUnavailable):
        await FileBlobStore(tmp_path / "file" / "root").ping()


# s3:// only -----------------------------------------------------------------------------------


async def test_s3_store_keeps_blobs_under_its_prefix(moto_endpoint: str, bucket: str, s3_admin: Any) -> None:
    s3_admin.put_object(Bucket=bucket, Key="elsewhere/k", Body=b"not ours")
    s3_admin.put_object(Bucket=bucket, Key="archive/folder/", Body=b"")  # a console's folder marker
    blobs = s3_store(moto_endpoint, bucket, "/archive/")
    try:
        await blobs.put("contexts/c1", b"x")
        assert await keys(blobs) == ["contexts/c1"]
        listed = s3_admin.list_objects_v2(Bucket=bucket)["Contents"]
        assert sorted(item["Key"] for item in listed) == [
            "archive/contexts/c1",
            "archive/folder/",
            "elsewhere/k",
        ]
    finally:
        await blobs.aclose()


async def test_s3_list_follows_continuation_pages(moto_endpoint: str, bucket: str, s3_admin: Any) -> None:
    written = [f"p/{n:04d}" for n in range(1005)]  # one page holds at most 1000 keys
    limiter = anyio.CapacityLimiter(16)
    async with anyio.create_task_group() as tg:
        for key in written:
            put = partial(s3_admin.put_object, Bucket=bucket, Key=key, Body=b"")
            tg.start_soon(partial(anyio.to_thread.run_sync, put, limiter=limiter))
    blobs = s3_store(moto_endpoint, bucket)
    try:
        assert await keys(blobs, "p/") == written
    finally:
        await blobs.aclose()


async def test_s3_missing_bucket_is_unavailable(moto_endpoint: str) -> None:
    blobs = s3_store(moto_endpoint, "hl-test-missing-" + secrets.token_hex(4))
    try:
        with pytest.raises(StoreUnavailable, match="does not exist"):
            await blobs.ping()
        with pytest.raises(StoreUnavailable, match="does not exist"):
            await blobs.put("k", b"x")
        with pytest.raises(StoreUnavailable, match="does not exist"):
            await blobs.get("k")
        with pytest.raises(StoreUnavailable, match="does not exist"):
            await keys(blobs)
    finally:
        await blobs.aclose()


async def test_s3_endpoint_down_is_unavailable_not_a_hang() -> None:
    blobs = s3_store(f"http://127.0.0.1:{free_port()}", "bucket", connect_timeout=1, max_attempts=1)
    try:
        with anyio.fail_after(10):
            with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1"):
                await blobs.ping()
            with pytest.raises(StoreUnavailable):
                await blobs.get("k")
            with pytest.raises(StoreUnavailable):
                await keys(blobs)
    finally:
        await blobs.aclose()


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """Accepts connections (the kernel completes the handshake) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_s3_endpoint_that_never_answers_times_out(silent_endpoint: str) -> None:
    blobs = s3_store(silent_endpoint, "bucket", read_timeout=0.5, max_attempts=1)
    try:
        with anyio.fail_after(10), pytest.raises(StoreUnavailable, match="timeout"):
            await blobs.put("k", b"x")
    finally:
        await blobs.aclose()


async def test_open_blobstore_s3_uses_the_endpoint_and_the_aws_environment(
    moto_endpoint: str, bucket: str, s3_admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    blobs = open_blobstore(f"s3://{bucket}/cold/tier", s3_endpoint_url=moto_endpoint)
    try:
        assert isinstance(blobs, S3BlobStore)
        await blobs.ping()
        await blobs.put("k", b"v")
        assert s3_admin.get_object(Bucket=bucket, Key="cold/tier/k")["Body"].read() == b"v"
    finally:
        await blobs.aclose()


@pytest.mark.parametrize("url", ["s3:///prefix", "s3://bucket/a/../b", "gs://bucket/x", "/plain/path"])
def test_open_blobstore_refuses_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        open_blobstore(url, s3_endpoint_url="http://127.0.0.1:1")

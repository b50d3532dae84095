"""Blob stores for the cold tier's archives: ``file://`` (default) and ``s3://`` (``memory.tiers.s3``).

Keys are relative, ``/``-separated paths such as ``contexts/2026/01/31/<id>.json.zst``; both stores
accept exactly the same keys (``safe_key``) so that an archive can move from one to the other.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

import anyio

from memory.errors import ConfigError, InvalidArgument, NotFound, StoreUnavailable

MAX_KEY_BYTES = 1024  # S3's limit; the file store keeps to it too


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes:
        """The blob's bytes; ``NotFound`` when there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Idempotent: deleting a missing key is not an error."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[str]:
        """Every key that starts with ``prefix`` (a plain string prefix, as in S3), in sorted order."""
        ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` (with the reason) unless the store can be written to."""
        ...

    async def aclose(self) -> None: ...


def safe_key(key: str) -> str:
    """A key that maps to exactly one file under the root: no traversal, no hidden or empty segments.

    Segments starting with ``.`` are refused because the file store keeps its temp files there.
    """
    if not key or key.startswith("/") or any(part == "" or part.startswith(".") for part in key.split("/")):
        raise InvalidArgument(f"invalid blob key {key!r}")
    if len(key.encode()) > MAX_KEY_BYTES or any(ord(char) < 0x20 or char == "\x7f" for char in key):
        raise InvalidArgument(f"invalid blob key {key!r}")
    return key


def safe_prefix(prefix: str) -> str:
    """A listing prefix: every complete segment must be valid; the last one may be partial or empty."""
    head, _, _ = prefix.rpartition("/")
    if head or prefix.startswith("/"):
        safe_key(head)
    return prefix


class FileBlobStore:
    """Blobs as files under one directory; writes are atomic (write a temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, key: str, data: bytes) -> None:
        path = self.root / safe_key(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A unique temp name in the same directory: the rename stays on one file system, and two
            # writers of the same key never share a temp file.
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with open(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp_name, path)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
            _fsync_dir(path.parent)

        try:
            await anyio.to_thread.run_sync(write)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write blob {key!r} under {self.root}: {exc}") from exc

    async def get(self, key: str) -> bytes:
        path = self.root / safe_key(key)
        try:
            return await anyio.Path(path).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFound(f"no blob {key!r}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"cannot read blob {key!r} under {self.root}: {exc}") from exc

    async def delete(self, key: str) -> None:
        path = self.root / safe_key(key)

        def unlink() -> None:
            # A directory, or a path under a file: either way there is no blob by that name.
            with contextlib.suppress(IsADirectoryError, NotADirectoryError):
                path.unlink(missing_ok=True)

        try:
            await anyio.to_thread.run_sync(unlink)
        except OSError as exc:
            raise StoreUnavailable(f"cannot delete blob {key!r} under {self.root}: {exc}") from exc

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        head, _, start = safe_prefix(prefix).rpartition("/")
        base = f"{head}/" if head else ""
        async for key in self._walk(base, start):
            yield key

    async def _walk(self, base: str, start: str) -> AsyncIterator[str]:
        """Keys under the directory ``base`` whose next segment starts with ``start``, sorted.

        Directories sort as ``name/``, which makes this depth-first walk yield keys in exactly the
        order a sort of the full keys would give (and the order S3 lists them in).
        """
        directory = self.root / base

        def scan() -> list[tuple[str, bool]]:
            try:
                with os.scandir(directory) as entries:
                    found = [
                        (entry.name, entry.is_dir(follow_symlinks=False))
                        for entry in entries
                        if entry.name.startswith(start) and not entry.name.startswith(".")
                    ]
            except (FileNotFoundError, NotADirectoryError):
                return []
            return sorted(found, key=lambda item: item[0] + "/" if item[1] else item[0])

        try:
            found = await anyio.to_thread.run_sync(scan)
        except OSError as exc:
            raise StoreUnavailable(f"cannot list blobs under {directory}: {exc}") from exc
        for name, is_dir in found:
            if is_dir:
                async for key in self._walk(f"{base}{name}/", ""):
                    yield key
            else:
                yield base + name

    async def ping(self) -> None:
        def check() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StoreUnavailable(f"blob directory {self.root} is not writable")

        try:
            await anyio.to_thread.run_sync(check)
        except OSError as exc:
            raise StoreUnavailable(f"blob directory {self.root} is unusable: {exc}") from exc

    async def aclose(self) -> None:
        return None


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable, not only the file's contents."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_blobstore(url: str, *, s3_endpoint_url: str | None = None) -> BlobStore:
    """``file:///path`` or ``s3://bucket/prefix`` (``s3_endpoint_url`` for MinIO, moto and the like)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileBlobStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        # Imported here: boto3 takes a tenth of a second to import, and most runs use file://.
        from memory.tiers.s3 import S3BlobStore

        if not parsed.netloc:
            raise ConfigError(f"blob store {url!r} names no bucket: use s3://bucket/prefix")
        return S3BlobStore(parsed.netloc, unquote(parsed.path), endpoint_url=s3_endpoint_url)
    raise ConfigError(f"blob store {url!r} is not supported: use a file:// or s3:// URL")

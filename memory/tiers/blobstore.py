"""Blob stores for the cold tier's archives: ``file://`` (default) and ``s3://``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

import anyio

from memory.errors import ConfigError, NotFound, StoreUnavailable


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def delete(self, key: str) -> None: ...
    async def ping(self) -> None: ...
    async def aclose(self) -> None: ...


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ConfigError(f"invalid blob key {key!r}")
    return key


class FileBlobStore:
    """Blobs as files under one directory; writes are atomic (write a temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, key: str, data: bytes) -> None:
        path = self.root / _safe_key(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(path)

        await anyio.to_thread.run_sync(write)

    async def get(self, key: str) -> bytes:
        path = self.root / _safe_key(key)
        try:
            return await anyio.Path(path).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"no blob {key!r}") from exc

    async def delete(self, key: str) -> None:
        path = self.root / _safe_key(key)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))

    async def ping(self) -> None:
        def check() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StoreUnavailable(f"blob directory {self.root} is not writable")

        await anyio.to_thread.run_sync(check)

    async def aclose(self) -> None:
        return None


def open_blobstore(url: str) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileBlobStore(Path(unquote(parsed.path)))
    raise ConfigError(f"blob store {url!r} is not supported yet: use a file:// URL")

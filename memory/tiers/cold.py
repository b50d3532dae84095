"""The cold tier's archive: the full context document, zstd-compressed (no dictionary, so every
archive is readable on its own), in the blob store under ``contexts/YYYY/MM/DD/<id>.json.zst``."""

from __future__ import annotations

from datetime import datetime

import zstandard

from memory.errors import CorruptEnvelope
from memory.tiers.blobstore import BlobStore

LEVEL = 12


def archive_key(tenant: str, context_id: str, updated_at: datetime) -> str:
    return f"contexts/{updated_at:%Y/%m/%d}/{context_id}.json.zst"  # ids are already tenant-unique


async def archive(blobs: BlobStore, key: str, document: bytes) -> int:
    """Write (or overwrite: it is idempotent) the archive; returns its size."""
    data = zstandard.ZstdCompressor(level=LEVEL).compress(document)
    await blobs.put(key, data)
    return len(data)


async def restore(blobs: BlobStore, key: str) -> bytes:
    data = await blobs.get(key)
    try:
        return zstandard.ZstdDecompressor().decompress(data)
    except zstandard.ZstdError as exc:
        raise CorruptEnvelope(f"archive {key} does not decompress: {exc}") from exc

"""Encryption at rest (archives, source secrets): AES-256-GCM, keys from ``HOOKLINE_ENCRYPTION_KEYS``.

``HOOKLINE_ENCRYPTION_KEYS="k2:<base64 32 bytes>,k1:<base64 32 bytes>"``: the first key seals new
blobs; every listed key opens old ones, so a key is rotated by putting the new one first and
dropping the old one once ``hookline tier rewrap`` (or simply time: archives are rewritten when a
context goes cold again) has moved everything. ``hookline key generate`` prints a fresh key.

A sealed blob is ``HLE1 | len(kid) | kid | nonce (12) | ciphertext + tag``; the additional data is
the blob's key, so an archive copied under another context's key (another tenant's, say) fails to
open instead of being served as that context. A blob without the ``HLE1`` mark predates
encryption and is read as it is; one with the mark but an unknown key id or a bad tag raises.

What is encrypted: the cold tier's archives, wherever the blob store keeps them (files, S3), and
webhook sources' secrets in PostgreSQL (``seal_text``: bound to the source's name; ``memory.sources``).
What is not: Redis (the hot tier is raw by design, and streams, warm blobs and samples share its
memory) and the rest of PostgreSQL (full-text and vector search need the text): run those on
encrypted volumes.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from memory.errors import ConfigError, HooklineError
from memory.tiers.blobstore import BlobStore

MAGIC = b"HLE1"
NONCE_BYTES = 12
KEY_BYTES = 32
# A value sealed as text (a source's secret, in a text column): this prefix + base64 of a sealed blob.
SEALED_TEXT = "hle1:"


class DecryptionError(HooklineError):
    """A sealed blob that no configured key opens (unknown key id, tampered, or moved)."""


def generate_key(kid: str) -> str:
    """A new key entry for ``HOOKLINE_ENCRYPTION_KEYS``: ``kid:base64``."""
    return f"{kid}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


@dataclass(frozen=True)
class Keyring:
    keys: tuple[tuple[str, AESGCM], ...]  # (kid, cipher); the first one seals

    @classmethod
    def parse(cls, spec: str) -> Keyring:
        """``kid:base64,kid:base64`` → a keyring. Raises ConfigError on anything malformed."""
        keys: list[tuple[str, AESGCM]] = []
        for entry in (part.strip() for part in spec.split(",")):
            kid, sep, encoded = entry.partition(":")
            if not sep or not kid or len(kid.encode()) > 255 or not kid.isprintable():
                raise ConfigError("HOOKLINE_ENCRYPTION_KEYS entries are kid:base64key")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ConfigError(f"encryption key {kid!r} is not valid base64") from exc
            if len(raw) != KEY_BYTES:
                raise ConfigError(f"encryption key {kid!r} must be {KEY_BYTES} bytes, got {len(raw)}")
            if any(kid == known for known, _ in keys):
                raise ConfigError(f"encryption key id {kid!r} is listed twice")
            keys.append((kid, AESGCM(raw)))
        return cls(tuple(keys))

    @classmethod
    def optional(cls, spec: str | None) -> Keyring | None:
        """The keyring of ``HOOKLINE_ENCRYPTION_KEYS``, or None when it is not set."""
        return cls.parse(spec) if spec else None

    @property
    def active(self) -> str:
        return self.keys[0][0]

    def seal(self, data: bytes, aad: bytes) -> bytes:
        kid, cipher = self.keys[0]
        nonce = os.urandom(NONCE_BYTES)
        kid_bytes = kid.encode()
        return MAGIC + bytes([len(kid_bytes)]) + kid_bytes + nonce + cipher.encrypt(nonce, data, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        if not blob.startswith(MAGIC):
            return blob  # written before encryption was turned on
        header = len(MAGIC)
        if len(blob) < header + 1:
            raise DecryptionError("sealed blob is truncated")
        kid_len = blob[header]
        kid = blob[header + 1 : header + 1 + kid_len].decode("utf-8", "replace")
        body = blob[header + 1 + kid_len :]
        cipher = dict(self.keys).get(kid)
        if cipher is None:
            raise DecryptionError(f"blob sealed with key {kid!r}, which is not configured")
        try:
            return cipher.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise DecryptionError(f"blob does not open with key {kid!r}: tampered or moved") from exc

    def sealed_with(self, blob: bytes) -> str | None:
        """The key id a blob was sealed with; None for a plaintext one."""
        return _key_id(blob)

    def seal_text(self, text: str, aad: bytes) -> str:
        """``text`` sealed with the active key, as text (``hle1:`` + base64)."""
        return SEALED_TEXT + base64.b64encode(self.seal(text.encode(), aad)).decode()

    def open_text(self, value: str, aad: bytes) -> str:
        """What ``seal_text`` sealed; a value without the prefix is plaintext and passes through."""
        if not value.startswith(SEALED_TEXT):
            return value
        try:
            return self.open(_sealed_blob(value), aad).decode()
        except UnicodeDecodeError as exc:
            raise DecryptionError("sealed text does not hold UTF-8 text") from exc


def text_sealed_with(value: str) -> str | None:
    """The key id a ``seal_text`` value was sealed with (no key needed); None for plaintext."""
    return _key_id(_sealed_blob(value)) if value.startswith(SEALED_TEXT) else None


def _sealed_blob(value: str) -> bytes:
    try:
        blob = base64.b64decode(value[len(SEALED_TEXT) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecryptionError("sealed text is not base64") from exc
    if not blob.startswith(MAGIC):
        raise DecryptionError("sealed text is not a sealed blob")
    return blob


def _key_id(blob: bytes) -> str | None:
    if not blob.startswith(MAGIC) or len(blob) <= len(MAGIC):
        return None
    kid_len = blob[len(MAGIC)]
    return blob[len(MAGIC) + 1 : len(MAGIC) + 1 + kid_len].decode("utf-8", "replace")


class SealedBlobStore:
    """A ``BlobStore`` that seals on put and opens on get; keys and listing pass through."""

    def __init__(self, inner: BlobStore, keyring: Keyring) -> None:
        self.inner = inner
        self.keyring = keyring

    async def put(self, key: str, data: bytes) -> None:
        await self.inner.put(key, self.keyring.seal(data, key.encode()))

    async def get(self, key: str) -> bytes:
        return self.keyring.open(await self.inner.get(key), key.encode())

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    def list(self, prefix: str = "") -> AsyncIterator[str]:
        return self.inner.list(prefix)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def rewrap(self, key: str) -> bool:
        """Re-seal one blob with the active key (rotation); True if it changed."""
        stored = await self.inner.get(key)
        if self.keyring.sealed_with(stored) == self.keyring.active:
            return False
        await self.put(key, self.keyring.open(stored, key.encode()))
        return True

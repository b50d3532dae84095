"""The ``s3://bucket/prefix`` blob store: boto3, one client per store, blocking calls in worker threads.

Credentials come from the standard AWS chain (environment, shared config, instance role) unless they
are passed in; the region defaults to us-east-1. Timeouts and retries are bounded so that an
unreachable endpoint surfaces as ``StoreUnavailable`` in seconds, never as a hang.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from memory.errors import ConfigError, NotFound, StoreUnavailable
from memory.tiers.blobstore import _safe_key, _safe_prefix

T = TypeVar("T")

_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_MISSING_BUCKET = {"NoSuchBucket"}


@dataclass(frozen=True, slots=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        credentials: S3Credentials | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        prefix = prefix.strip("/")
        if prefix:
            _safe_key(prefix)
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint_url = endpoint_url
        session = boto3.session.Session(
            aws_access_key_id=credentials.access_key_id if credentials else None,
            aws_secret_access_key=credentials.secret_access_key if credentials else None,
            aws_session_token=credentials.session_token if credentials else None,
            region_name=region,
        )
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": max_attempts},
        )
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._closed = False

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix}, endpoint={self.endpoint_url})"

    async def put(self, key: str, data: bytes) -> None:
        name = self.prefix + _safe_key(key)
        await self._call(f"put {key!r}", lambda: self._client.put_object(Bucket=self.bucket, Key=name, Body=data))

    async def get(self, key: str) -> bytes:
        name = self.prefix + _safe_key(key)

        def read() -> bytes:
            body = self._client.get_object(Bucket=self.bucket, Key=name)["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
            return data

        return await self._call(f"get {key!r}", read, missing=f"no blob {key!r}")

    async def delete(self, key: str) -> None:
        name = self.prefix + _safe_key(key)
        # S3 answers 204 for a missing key too, so this is idempotent without a check.
        await self._call(f"delete {key!r}", lambda: self._client.delete_object(Bucket=self.bucket, Key=name))

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        start = self.prefix + _safe_prefix(prefix)
        token: str | None = None
        while True:
            options: dict[str, str] = {"Bucket": self.bucket, "Prefix": start}
            if token is not None:
                options["ContinuationToken"] = token
            page = await self._call(f"list {prefix!r}", lambda o=options: self._client.list_objects_v2(**o))
            for item in page.get("Contents", ()):
                key = item["Key"].removeprefix(self.prefix)
                if _is_safe(key):  # skip what other tools left, e.g. "folder/" markers
                    yield key
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    async def ping(self) -> None:
        await self._call("reach the bucket", lambda: self._client.head_bucket(Bucket=self.bucket))

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await anyio.to_thread.run_sync(self._client.close)

    async def _call(self, action: str, call: Callable[[], T], *, missing: str | None = None) -> T:
        """Run one blocking boto3 call in a worker thread, mapping its failures to Hookline's errors."""
        where = f"s3://{self.bucket}/{self.prefix}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")
        try:
            return await anyio.to_thread.run_sync(call)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if missing is not None and code in _MISSING_KEY:
                raise NotFound(missing) from exc
            if code in _MISSING_BUCKET or (action == "reach the bucket" and code in _MISSING_KEY):
                raise StoreUnavailable(f"S3 bucket {self.bucket!r} does not exist ({where})") from exc
            raise StoreUnavailable(f"S3 could not {action} in {where}: {code} {exc}") from exc
        except NoCredentialsError as exc:
            raise StoreUnavailable(
                f"no AWS credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or AWS_PROFILE"
            ) from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"S3 could not {action} in {where}: {exc}") from exc


def _is_safe(key: str) -> bool:
    try:
        _safe_key(key)
    except ConfigError:
        return False
    return True

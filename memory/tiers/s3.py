"""The ``s3://bucket/prefix`` blob store: boto3, one client per store, blocking calls in worker threads.

Credentials come from the standard AWS chain (environment, shared config, instance role) unless they
are passed in; the region defaults to us-east-1. Timeouts and retries are bounded so that an
unreachable endpoint surfaces as ``StoreUnavailable`` within seconds, never as a hang.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from memory.errors import ConfigError, HooklineError, InvalidArgument, NotFound, StoreUnavailable
from memory.tiers.blobstore import safe_key, safe_prefix

T = TypeVar("T")

# get_object answers NoSuchKey; HEAD requests (head_bucket) have no body, so only the status is left.
_MISSING = {"NoSuchKey", "NotFound", "404"}


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
        if prefix and not _is_safe(prefix):
            raise ConfigError(f"invalid S3 key prefix {prefix!r} for bucket {bucket!r}")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.where = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint_url}" if endpoint_url else "")
        # Its own session: boto3's default session is module-global and not thread-safe; the client
        # made from it is, so every worker thread shares this one client and its connection pool.
        session = boto3.session.Session(
            aws_access_key_id=credentials.access_key_id if credentials else None,
            aws_secret_access_key=credentials.secret_access_key if credentials else None,
            aws_session_token=credentials.session_token if credentials else None,
            region_name=region,
        )
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # total_max_attempts counts the first try; boto's "max_attempts" counts only the retries.
            retries={"mode": "standard", "total_max_attempts": max_attempts},
        )
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._closed = False

    def __repr__(self) -> str:
        return f"S3BlobStore({self.where})"

    async def put(self, key: str, data: bytes) -> None:
        name = self.prefix + safe_key(key)
        await self._call(
            f"put {key!r}", partial(self._client.put_object, Bucket=self.bucket, Key=name, Body=data)
        )

    async def get(self, key: str) -> bytes:
        name = self.prefix + safe_key(key)

        def read() -> bytes:
            body = self._client.get_object(Bucket=self.bucket, Key=name)["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
            return data

        return await self._call(f"get {key!r}", read, missing=NotFound(f"no blob {key!r}"))

    async def delete(self, key: str) -> None:
        name = self.prefix + safe_key(key)
        # S3 answers 204 for a missing key too: idempotent without a check.
        await self._call(f"delete {key!r}", partial(self._client.delete_object, Bucket=self.bucket, Key=name))

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        options = {"Bucket": self.bucket, "Prefix": self.prefix + safe_prefix(prefix)}
        while True:
            page = await self._call(f"list {prefix!r}", partial(self._client.list_objects_v2, **options))
            for item in page.get("Contents", ()):
                key = item["Key"].removeprefix(self.prefix)
                if _is_safe(key):  # skip what other tools leave behind, such as "folder/" markers
                    yield key
            if not page.get("IsTruncated"):
                return
            options["ContinuationToken"] = page["NextContinuationToken"]

    async def ping(self) -> None:
        missing = StoreUnavailable(f"S3 bucket {self.bucket!r} does not exist ({self.where})")
        await self._call(
            "reach the bucket", partial(self._client.head_bucket, Bucket=self.bucket), missing=missing
        )

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await anyio.to_thread.run_sync(self._client.close)

    async def _call(self, action: str, call: Callable[[], T], *, missing: HooklineError | None = None) -> T:
        """Run one blocking boto3 call in a worker thread; map its failures to Hookline's errors."""
        try:
            return await anyio.to_thread.run_sync(call)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if missing is not None and code in _MISSING:
                raise missing from exc
            if code == "NoSuchBucket":
                raise StoreUnavailable(f"S3 bucket {self.bucket!r} does not exist ({self.where})") from exc
            raise StoreUnavailable(f"S3 could not {action} in {self.where}: {exc}") from exc
        except NoCredentialsError as exc:
            raise StoreUnavailable(
                f"no AWS credentials for {self.where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "or AWS_PROFILE"
            ) from exc
        except BotoCoreError as exc:  # connection refused, timeouts, broken responses
            raise StoreUnavailable(f"S3 could not {action} in {self.where}: {exc}") from exc


def _is_safe(key: str) -> bool:
    try:
        safe_key(key)
    except InvalidArgument:
        return False
    return True

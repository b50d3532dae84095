"""``POST /hooks/{source}``: limits → source → signature → parse → redaction hook → dedup + XADD.

The route only writes the stream; it never touches a tier. A 2xx is returned only after the XADD
succeeded; if Redis cannot take the event the answer is 503, so the provider retries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from ingest.accept import Acceptor
from ingest.metrics import INTAKE_SECONDS, WEBHOOKS
from ingest.policy import check_object
from ingest.providers import provider_for
from ingest.providers.base import Challenge, MalformedRequest, VerificationError
from ingest.ratelimit import RateLimiter, retry_after
from memory.errors import StoreUnavailable, UnknownSource
from memory.ids import is_name
from memory.models import Source
from memory.settings import Settings
from memory.sources import SourceMisconfigured, SourceStore

log = structlog.get_logger(__name__)


JSON_TYPES = ("application/json", "text/json")
# A misconfigured source is fixed by an operator, not by the next retry: ask providers to wait.
MISCONFIGURED_RETRY_S = "60"
FORM_TYPE = "application/x-www-form-urlencoded"


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return OrjsonResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


class BodyTooLarge(Exception):
    pass


@dataclass
class Intake:
    settings: Settings
    sources: SourceStore
    acceptor: Acceptor
    limiter: RateLimiter = field(default_factory=RateLimiter)

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["source"]
        response = await self._handle(request, name)
        INTAKE_SECONDS.observe(time.perf_counter() - started)
        return response

    async def _handle(self, request: Request, name: str) -> Response:
        if not is_name(name):  # never let a hostile name reach a query
            return self._count("_invalid", error(404, "unknown_source", "no webhook source by that name"))
        try:
            source = await self.sources.get(name)
        except UnknownSource:
            return self._count(name, error(404, "unknown_source", f"no webhook source named {name!r}"))
        except SourceMisconfigured as exc:  # a bad stored option, or secrets no configured key opens
            log.error("intake.source_misconfigured", source=name, error=str(exc))
            return self._count(
                name, error(503, "source_misconfigured", str(exc), {"Retry-After": MISCONFIGURED_RETRY_S})
            )
        except StoreUnavailable as exc:
            return self._count(name, error(503, "unavailable", str(exc), {"Retry-After": "5"}))
        try:
            body = await self._read_body(request)
        except BodyTooLarge:
            limit = self.settings.max_body_bytes
            return self._count(name, error(413, "too_large", f"body exceeds {limit} bytes"))
        except ClientDisconnect:
            return self._count(name, error(400, "disconnected", "client closed the connection"))

        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in (*JSON_TYPES, FORM_TYPE) and not content_type.endswith("+json"):
            return self._count(name, error(415, "unsupported_media_type", f"cannot accept {content_type!r}"))

        provider = provider_for(source.provider)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            provider.verify(headers, body, source, time.time())
        except VerificationError as exc:
            return self._count(name, error(401, "bad_signature", str(exc)))
        # Limited after verification, so forged floods cannot spend a source's budget.
        wait = self.limiter.acquire(name, _rate(source), priority=_priority(source))
        if wait > 0:
            headers_out = {"Retry-After": retry_after(wait)}
            return self._count(
                name, error(429, "rate_limited", "too many events from this source", headers_out)
            )

        try:
            payload, json_body = _parse(body, content_type)
            event_type = provider.event_type(headers, payload, source)
            delivery = provider.delivery_id(headers, payload, source)
        except MalformedRequest as exc:
            return self._count(name, error(400, "malformed", str(exc)))
        except Challenge as exc:  # a verified handshake (Slack url_verification): answer, store nothing
            return self._count(name, JSONResponse(exc.body, status_code=200))
        # Nothing signed dates this body: a replay of it under a fresh delivery id must be a duplicate.
        undated = None if provider.signs_timestamp(source) else body
        return await self._enqueue(source, headers, json_body, payload, event_type, delivery, undated)

    async def _enqueue(
        self,
        source: Source,
        headers: dict[str, str],
        body: bytes,
        payload: Any,
        event_type: str,
        delivery: str | None,
        undated_body: bytes | None,
    ) -> Response:
        try:
            dedup_key, duplicate = await self.acceptor.accept(
                source, event_type, delivery, payload, body, headers, undated_body=undated_body
            )
        except MalformedRequest as exc:  # the event policy (ingest.policy): nothing was queued
            return self._count(source.name, error(400, "malformed", str(exc)))
        except StoreUnavailable as exc:
            log.error("intake.unavailable", source=source.name, error=str(exc))
            return self._count(
                source.name, error(503, "unavailable", "event store unavailable; retry", {"Retry-After": "5"})
            )
        status = 200 if duplicate else 202
        return self._count(source.name, OrjsonResponse({"id": dedup_key, "duplicate": duplicate}, status))

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _count(source: str, response: Response) -> Response:
        # Unknown source names are attacker-controlled: never let them become label values.
        label = source if response.status_code != 404 else "_unknown"  # also "_invalid" names
        WEBHOOKS.labels(source=label, outcome=str(response.status_code)).inc()
        return response


def _parse(body: bytes, content_type: str) -> tuple[dict[str, Any], bytes]:
    """The payload (a JSON object), and its JSON bytes (the body itself unless it came form-encoded)."""
    if content_type == FORM_TYPE:
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=1000)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedRequest(f"form body is malformed: {exc}") from exc
        if "payload" in form:  # GitHub's and Slack's form-encoded deliveries
            body = form["payload"][0].encode()
        else:
            fields = {key: values[-1] for key, values in form.items()}
            return fields, orjson.dumps(fields)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not valid JSON (UTF-8): {exc}") from exc
    return check_object(payload), body


def _rate(source: Source) -> float | None:
    return source.options.rate_limit


def _priority(source: Source) -> float:
    return source.options.priority

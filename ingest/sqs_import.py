"""``hookline import``: move webhooks waiting in an SQS queue (a previous pipeline's buffer) into
Hookline, through the same acceptor as the HTTP route, so they are deduplicated the same way.

A message is deleted from SQS only after its event is in the stream (or known as a duplicate), so
an interrupted import loses nothing and a re-run skips what already came in. Messages are trusted
as the queue's producer verified them; signatures are not checked again. A message body is either
the webhook's JSON payload (event type and delivery id in the message attributes ``event_type`` and
``delivery_id``), or an object ``{"headers": {...}, "body": "<payload JSON>"}`` (as an API gateway
forwards a request), where the source's provider reads them from the headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import orjson

from ingest.accept import Acceptor
from ingest.providers import provider_for
from ingest.providers.base import MalformedRequest
from memory.models import Source


@dataclass
class ImportReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


def _attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name, {}).get("StringValue")
    return str(value) if value else None


def _parse(message: dict[str, Any], source: Source) -> tuple[str, str | None, Any, bytes]:
    """(event type, delivery id, payload, payload bytes) of one message; MalformedRequest if unusable."""
    try:
        data = orjson.loads(message["Body"])
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"message body is not JSON: {exc}") from exc
    provider = provider_for(source.provider)
    if isinstance(data, dict) and set(data) >= {"headers", "body"} and isinstance(data["headers"], dict):
        headers = {str(k).lower(): str(v) for k, v in data["headers"].items()}
        raw = data["body"].encode() if isinstance(data["body"], str) else orjson.dumps(data["body"])
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedRequest(f"forwarded body is not JSON: {exc}") from exc
        return (
            provider.event_type(headers, payload, source),
            provider.delivery_id(headers, payload, source),
            payload,
            raw,
        )
    event_type = _attribute(message, "event_type") or provider.event_type({}, data, source)
    return event_type, _attribute(message, "delivery_id"), data, orjson.dumps(data)


async def import_queue(
    sqs: Any, queue_url: str, source: Source, acceptor: Acceptor, limit: int | None = None
) -> ImportReport:
    """Drain up to ``limit`` messages (all, if None). ``sqs`` is a boto3 SQS client."""
    report = ImportReport()
    while limit is None or report.accepted + report.duplicates + report.rejected < limit:
        reply = await anyio.to_thread.run_sync(
            lambda: sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
            )
        )
        messages = reply.get("Messages", [])
        if not messages:
            break
        for message in messages:
            try:  # StoreUnavailable propagates: the message stays in SQS; a re-run picks it up
                event_type, delivery, payload, raw = _parse(message, source)
                _, duplicate = await acceptor.accept(source, event_type, delivery, payload, raw)
            except MalformedRequest as exc:  # also the event policy (ingest.policy)
                report.rejected += 1  # left in the queue (its redrive policy decides), never dropped
                report.errors.append(f"{message['MessageId']}: {exc}")
                continue
            if duplicate:
                report.duplicates += 1
            else:
                report.accepted += 1
            delete = partial(sqs.delete_message, QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            await anyio.to_thread.run_sync(delete)
    return report

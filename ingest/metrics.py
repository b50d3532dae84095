"""Prometheus metrics of the ingest path and the workers (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOKS = Counter("hookline_webhooks_total", "Webhook requests by source and outcome", ["source", "outcome"])
INTAKE_SECONDS = Histogram(
    "hookline_intake_seconds",
    "Time from request to response on /hooks",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
APPLIED = Counter("hookline_events_applied_total", "Events applied to contexts", ["group"])
DEAD_LETTERED = Counter(
    "hookline_events_dead_lettered_total", "Events sent to the dead-letter stream", ["group"]
)
BATCH_FAILURES = Counter(
    "hookline_worker_batch_failures_total", "Batches that failed and will be retried", ["group"]
)

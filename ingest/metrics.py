"""Prometheus metrics of the ingest path and the workers (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
REPLICATION_REFUSED = Counter(
    "hookline_replication_refused_batches_total",
    "Intake batches refused (503) because fewer than HOOKLINE_REDIS_MIN_REPLICAS replicas confirmed them",
)
DEDUP_HITS = Counter(
    "hookline_dedup_hits_total",
    "Dedup decisions by layer: window (exact), body (a replayed undated body), bloom_confirmed (ledger "
    "said seen), bloom_false_positive",
    ["layer"],
)
BLOOM_FILL = Gauge(
    "hookline_bloom_fill_ratio", "Fraction of bits set in the newest Bloom generation", ["partition"]
)
BLOOM_FPR = Gauge(
    "hookline_bloom_false_positive_rate_estimate",
    "Estimated Bloom false-positive rate (fill^k)",
    ["partition"],
)
BREAKER_OPEN = Gauge("hookline_breaker_open", "1 while a source's circuit breaker is open", ["source"])
RETRIES_SCHEDULED = Counter("hookline_retries_scheduled_total", "Events scheduled for a retry", ["group"])
GROUP_LAG = Gauge("hookline_group_lag", "Entries not yet delivered to a consumer group", ["group"])
GROUP_PENDING = Gauge("hookline_group_pending", "Entries delivered but not acknowledged", ["group"])
DLQ_SIZE = Gauge("hookline_dlq_size", "Entries in the dead-letter stream")
ALERTS = Counter("hookline_alerts_total", "Alert conditions raised", ["kind"])
STREAM_TRIMMED = Counter(
    "hookline_stream_trimmed_total", "Entries trimmed after every group acknowledged them"
)

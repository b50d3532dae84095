"""Prometheus metrics of the memory tiers."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TRANSITIONS = Counter("hookline_tier_transitions_total", "Contexts moved between tiers", ["source", "target"])
TIER_CONTEXTS = Gauge("hookline_tier_contexts", "Contexts per tier (as of the last lifecycle pass)", ["tier"])
WARM_RATIO = Gauge(
    "hookline_warm_compression_ratio", "Warm bytes / raw bytes of the contexts demoted last pass"
)
UNIT_FAILURES = Counter(
    "hookline_unit_failures_total",
    "Background units that failed on their own (a stream entry, a context in a lifecycle pass, a batch "
    "of vectors) and were retried, dead-lettered or skipped; by unit and exception type",
    ["unit", "error"],
)

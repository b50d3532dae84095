"""The dedup Bloom filter's false-positive rate measured at its design capacity.

One command: `.venv/bin/python bench/bloom.py [--capacity N] [--error-rate P] [--probes N]`. It fills
a filter of the production geometry (ingest.dedup.BloomConfig: same bit count, hash count and
double hashing) with `capacity` distinct events, then probes it with events it has never seen.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# bench/ingest.py would shadow the ingest package: resolve imports from the repository root.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from ingest.dedup import BloomConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    defaults = BloomConfig()
    parser.add_argument("--capacity", type=int, default=defaults.capacity)
    parser.add_argument("--error-rate", type=float, default=defaults.error_rate)
    parser.add_argument("--probes", type=int, default=300_000)
    args = parser.parse_args()
    bloom = BloomConfig(capacity=args.capacity, error_rate=args.error_rate)
    started = time.perf_counter()
    bits = bytearray(bloom.bits // 8 + 1)
    for i in range(bloom.capacity):
        for position in bloom.positions("tenant", "source", f"seen-{i}"):
            bits[position >> 3] |= 1 << (position & 7)
    false_positives = sum(
        all(bits[p >> 3] & (1 << (p & 7)) for p in bloom.positions("tenant", "source", f"new-{i}"))
        for i in range(args.probes)
    )
    fill = sum(bin(byte).count("1") for byte in bits) / bloom.bits
    print(
        f"design: {bloom.capacity:,} events per partition and generation, target false-positive rate "
        f"{bloom.error_rate}; {bloom.bits:,} bits ({bloom.bits / 8 / 1024:.0f} KiB), {bloom.hashes} hashes"
    )
    print(
        f"measured at capacity: {false_positives / args.probes:.5f} ({false_positives:,} of "
        f"{args.probes:,} unseen events), fill {fill:.3f}, "
        f"estimate fill^k {bloom.estimated_false_positive_rate(fill):.5f}"
    )
    print(
        "every Bloom hit is confirmed against the PostgreSQL ledger, so a false positive costs one "
        "query, never a dropped event"
    )
    print(f"({time.perf_counter() - started:.1f} s; reproduce: .venv/bin/python bench/bloom.py)")


if __name__ == "__main__":
    main()

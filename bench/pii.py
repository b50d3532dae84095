"""The cost of PII masking on the intake's path, per event, against a baseline measured in the same
run: parsing the same body with orjson (which the intake does for every event anyway).

Bodies: the real GitHub payloads under tests/fixtures/github (5-21 KB), as they are (nothing to
mask: one scan), with a secret and a card planted in them (masked in place), and with a ``\\u``
escape added (decoded and re-encoded first). Each configuration of kinds is timed in rounds that
rotate the order, so the machine's noise falls on all of them alike.

    .venv/bin/python bench/pii.py [--rounds 5] [--per-round 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.pii import Masker, parse_kinds
from tests.fixtures.github_examples import fixture_names, load_fixture

SECRET = "ghp_" + "a1B2c3D4e5" * 4


def bodies() -> dict[str, list[bytes]]:
    plain = [orjson.dumps(load_fixture(name)) for name in fixture_names()]
    planted = []
    for name in fixture_names():
        payload = load_fixture(name)
        payload["note"] = f"token {SECRET} card 4242 4242 4242 4242"
        planted.append(orjson.dumps(payload))
    escaped = [body[:-1] + b', "x": "caf\\u00e9"}' for body in plain]
    return {"plain": plain, "planted": planted, "escaped": escaped}


def per_event_us(work: Callable[[bytes], object], sample: list[bytes], n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        work(sample[i % len(sample)])
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=300)
    args = parser.parse_args()
    sets = bodies()
    maskers = {spec: Masker(parse_kinds(spec)) for spec in ("secrets,card", "all")}
    operations: dict[str, tuple[Callable[[bytes], object], str]] = {
        "baseline orjson.loads": (orjson.loads, "plain")
    }
    for spec, masker in maskers.items():
        for kind in sets:
            operations[f"mask {spec} / {kind}"] = (masker.mask, kind)
    timings: dict[str, list[float]] = {name: [] for name in operations}
    names = list(operations)
    for round_no in range(args.rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            work, kind = operations[name]
            timings[name].append(per_event_us(work, sets[kind], args.per_round))
    sizes = [len(b) for b in sets["plain"]]
    mean = statistics.mean(sizes)
    print(f"bodies: {len(sizes)} GitHub payloads, {min(sizes)}-{max(sizes)} bytes (mean {mean:.0f})")
    baseline = statistics.median(timings["baseline orjson.loads"])
    print(f"{'operation':42s} {'median µs/event':>16s} {'x baseline':>11s}")
    for name in names:
        median = statistics.median(timings[name])
        print(f"{name:42s} {median:16.1f} {median / baseline:11.2f}")


if __name__ == "__main__":
    main()

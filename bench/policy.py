"""The cost of the intake's input policy (``ingest.policy``: a JSON object, nesting at most
``HOOKLINE_MAX_JSON_DEPTH``, clean event type and delivery id) per event, against a baseline measured in
the same run: ``orjson.loads`` of the same body, which the intake does for every event anyway.

Bodies: GitHub's 329 real webhook examples (``bash bench/setup_examples.sh`` installs them), compact as
providers send them, and one 300-level body (the refused case). Rounds rotate the order so the
machine's noise falls on both alike; figures are per event, in microseconds of CPU (process time).

    .venv/bin/python bench/policy.py [--rounds 5] [--limit 128]
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

from ingest.policy import check_event
from ingest.providers.base import MalformedRequest
from tests.fixtures.github_examples import load_examples


def _per_event_us(
    work: Callable[[bytes, object], None], cases: list[tuple[bytes, object]], repeat: int
) -> float:
    started = time.process_time()
    for _ in range(repeat):
        for body, payload in cases:
            work(body, payload)
    return (time.process_time() - started) / (repeat * len(cases)) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20, help="passes over the bodies per round")
    parser.add_argument("--limit", type=int, default=128, help="the depth limit (HOOKLINE_MAX_JSON_DEPTH)")
    args = parser.parse_args()
    examples = load_examples()
    if not examples:
        print("no examples: run `bash bench/setup_examples.sh` first", file=sys.stderr)
        return 1
    bodies = [orjson.dumps(payload) for _, payload in examples]
    cases = [(body, orjson.loads(body)) for body in bodies]

    def parse(body: bytes, payload: object) -> None:
        orjson.loads(body)

    def policy(body: bytes, payload: object) -> None:
        check_event(payload, body, "pull_request", "72d3162e-cc78-11e3-81ab-4c9367dc0958", args.limit)

    deep_body = b"[" * 299 + b"{}" + b"]" * 299
    deep = [(b'{"a":' + deep_body + b"}", {"a": orjson.loads(deep_body)})]

    def refuse(body: bytes, payload: object) -> None:
        try:
            check_event(payload, body, "x", None, args.limit)
        except MalformedRequest:
            return
        raise AssertionError("a 300-level body passed the policy")

    figures: dict[str, list[float]] = {"orjson.loads (baseline)": [], "policy": [], "policy, 300 deep": []}
    runs = [
        ("orjson.loads (baseline)", parse, cases),
        ("policy", policy, cases),
        ("policy, 300 deep", refuse, deep),
    ]
    for round_ in range(args.rounds):
        for name, work, on in runs[round_ % 3 :] + runs[: round_ % 3]:
            figures[name].append(_per_event_us(work, on, args.repeat if on is cases else 200))
    sizes = sorted(len(body) for body in bodies)
    stop = sum(body.count(b"[") + body.count(b"{") <= args.limit for body in bodies)
    median_kb = sizes[len(sizes) // 2] / 1024
    print(f"{len(bodies)} GitHub examples, median {median_kb:.1f} KB; depth limit {args.limit}")
    print(f"{stop} of them ({stop / len(bodies):.0%}) are judged by two byte counts alone\n")
    print(f"{'per event (CPU µs, median of rounds)':<40}{'µs':>8}")
    for name, values in figures.items():
        print(f"{name:<40}{statistics.median(values):>8.1f}")
    base = statistics.median(figures["orjson.loads (baseline)"])
    print(f"\npolicy / orjson.loads = {statistics.median(figures['policy']) / base:.2f}x")
    print(f"reproduce: {' '.join([sys.executable, *sys.argv])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

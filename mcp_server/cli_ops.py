"""Operator commands of ``hookline``: status, dlq (list, show, retry, purge), replay and forget."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from ingest import dlq
from ingest.envelope import entry_event
from ingest.replay import Handler, ReplayReport, replay
from ingest.worker import audit_handler, context_handler, index_handler
from memory import keys
from memory.errors import InvalidArgument
from memory.forget import forget
from memory.ids import check_context_id, check_subject, check_tenant, context_id
from memory.ledger import Ledger
from memory.runtime import Runtime
from memory.service import MemoryService
from memory.status import pipeline_status

Command = Callable[[Runtime, argparse.Namespace], Awaitable[int]]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """90s, 15m, 2h, 7d (plain numbers are seconds)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"expected a duration like 90s, 15m, 2h or 7d, got {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def moment(text: str) -> datetime:
    """ISO 8601; a time without a zone is UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_parsers(commands: Any) -> None:  # argparse's _SubParsersAction is private
    status = commands.add_parser("status", help="streams, groups, consumers, dead letters, tiers")
    status.add_argument("--json", action="store_true")

    dead = commands.add_parser("dlq", help="inspect and retry dead letters").add_subparsers(
        dest="action", required=True
    )
    listing = dead.add_parser("list", help="the newest dead letters first")
    listing.add_argument("--group", help="only those this consumer group failed")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    show = dead.add_parser("show", help="one dead letter, with its payload")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    retry = dead.add_parser("retry", help="put dead letters back on their stream")
    retry.add_argument("ids", nargs="*", metavar="ID")
    retry.add_argument("--all", action="store_true", help="every dead letter (of --group, if given)")
    retry.add_argument("--group", help="only those this consumer group failed")
    purge = dead.add_parser("purge", help="delete dead letters for good")
    purge.add_argument("ids", nargs="*", metavar="ID")
    purge.add_argument("--all", action="store_true")
    purge.add_argument("--older-than", type=duration, metavar="DURATION", help="e.g. 7d")

    again = commands.add_parser("replay", help="apply the events of a time range again (idempotent)")
    again.add_argument("--source", help="only this source's events (default: every source)")
    again.add_argument("--since", type=moment, required=True, metavar="ISO")
    again.add_argument("--until", type=moment, metavar="ISO", help="default: now")
    again.add_argument(
        "--group", action="append", choices=keys.GROUPS, help=f"repeatable; default: {', '.join(keys.GROUPS)}"
    )
    again.add_argument("--json", action="store_true")

    erase = commands.add_parser(
        "forget", help="erase one context from every store for good (prints what was deleted, as JSON)"
    )
    erase.add_argument(
        "--tenant", required=True, type=_checked(check_tenant), help="the tenant it belongs to"
    )
    which = erase.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=_checked(check_context_id), help="the context id (ctx_...)")
    which.add_argument("--subject", type=_checked(check_subject), help="or its subject, e.g. github:o/r#pr/1")


def _checked(check: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse type from a ``memory.ids`` check: a bad identifier is a usage error (exit 2)."""

    def parse(text: str) -> str:
        try:
            return check(text)
        except InvalidArgument as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return parse


def handlers(rt: Runtime) -> dict[str, Handler]:
    """Each consumer group's handler, as the workers build them."""
    service = MemoryService(rt)
    return {
        keys.CONTEXT_GROUP: context_handler(service),
        keys.INDEX_GROUP: index_handler(service),
        keys.AUDIT_GROUP: audit_handler(Ledger(rt.db)),
    }


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


async def status(rt: Runtime, args: argparse.Namespace) -> int:
    report = await pipeline_status(rt)
    if args.json:
        _print_json(report)
        return 0
    console = Console()
    streams = Table("stream", "length", title="streams")
    for name, stream in report["streams"].items():
        streams.add_row(name, str(stream["length"]))
    groups = Table("group", "lag", "pending", title="consumer groups")
    for name, group in report["groups"].items():
        groups.add_row(name, str(group["lag"]), str(group["pending"]))
    consumers = Table("group", "consumer", "pending", "idle", "last heartbeat", title="consumers")
    for c in report["consumers"]:
        beat = "none (expired)" if c["heartbeat_age_s"] is None else f"{c['heartbeat_age_s']} s ago"
        consumers.add_row(c["group"], c["name"], str(c["pending"]), f"{c['idle_ms'] / 1000:.1f} s", beat)
    tiers = Table("tier", "contexts", "bytes", title="tiers")
    for name, tier in report["tiers"].items():
        tiers.add_row(name, str(tier["contexts"]), str(tier["bytes"]))
    for table in (streams, groups, consumers, tiers):
        console.print(table)
    events = report["events"]
    console.print(
        f"events accepted {events['accepted']}, applied {events['applied']}; dead letters {report['dlq']}"
    )
    return 0


async def dlq_list(rt: Runtime, args: argparse.Namespace) -> int:
    letters = await dlq.list_dead(rt.redis, count=args.limit, group=args.group)
    if args.json:
        _print_json([_as_dict(letter, payload=False) for letter in letters])
        return 0
    table = Table("id", "dead-lettered", "group", "attempts", "source", "event type", "error")
    for d in letters:
        table.add_row(
            d.id,
            d.at.isoformat(timespec="seconds"),
            d.group,
            str(d.attempts),
            d.source or "?",
            d.event_type or "?",
            d.error[:80],
        )
    Console().print(table)
    return 0


async def dlq_show(rt: Runtime, args: argparse.Namespace) -> int:
    letter = await dlq.show(rt.redis, args.id)
    if letter is None:
        print(f"hookline: no dead letter {args.id!r}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(_as_dict(letter, payload=True))
        return 0
    for name, value in _as_dict(letter, payload=False).items():
        print(f"{name}: {value}")
    print("payload:")
    print(orjson.dumps(letter.payload, option=orjson.OPT_INDENT_2).decode())
    return 0


async def dlq_retry(rt: Runtime, args: argparse.Namespace) -> int:
    count = await dlq.retry(rt.redis, args.ids, all=args.all, group=args.group)
    print(f"retried {count} dead letter(s)")
    return 0


async def dlq_purge(rt: Runtime, args: argparse.Namespace) -> int:
    count = await dlq.purge(rt.redis, args.ids, all=args.all, older_than=args.older_than)
    print(f"purged {count} dead letter(s)")
    return 0


def _as_dict(letter: dlq.DeadLetter, *, payload: bool) -> dict[str, Any]:
    data = dataclasses.asdict(letter)
    if not payload:
        del data["payload"]
    return data


async def replay_command(rt: Runtime, args: argparse.Namespace) -> int:
    until = args.until or datetime.now(UTC)
    report = await replay(rt, handlers(rt), args.source, args.since, until, args.group or keys.GROUPS)
    if args.json:
        _print_json(dataclasses.asdict(report))
    else:
        _print_replay(report, args.source)
    return 0


def _print_replay(report: ReplayReport, source: str | None) -> None:
    per_group = ", ".join(f"{group} {count}" for group, count in report.replayed.items())
    print(
        f"read {report.read} entries from {report.since.isoformat()} to {report.until.isoformat()}; "
        f"{report.matched} events of {source or 'every source'} replayed ({per_group}); "
        f"{report.undecodable} undecodable"
    )
    refused = {group: n for group, n in report.rejected.items() if n}
    if refused:
        print(f"refused as unmappable: {refused}")
    if report.may_be_incomplete:
        first = report.earliest_available
        held = f"hold entries from {first.isoformat()} on" if first else "are empty"
        print(
            f"note: some entries from {report.since.isoformat()} on may have been trimmed or deleted; "
            f"those cannot be replayed (the streams {held})",
            file=sys.stderr,
        )


async def forget_command(rt: Runtime, args: argparse.Namespace) -> int:
    """Erase one context, as the MCP ``forget`` tool does; exit 1 when nothing of it was found."""
    ctx_id = args.id or context_id(args.tenant, args.subject)
    report = await forget(rt, args.tenant, ctx_id, entry_event, args.subject)
    _print_json({"context_id": ctx_id, "found": report.found, "deleted": report.counts})
    if not report.found:
        print(
            f"hookline: no context {ctx_id!r} in tenant {args.tenant!r}; nothing was deleted", file=sys.stderr
        )
        return 1
    return 0


OPS_COMMANDS: dict[tuple[str, str | None], Command] = {
    ("status", None): status,
    ("dlq", "list"): dlq_list,
    ("dlq", "show"): dlq_show,
    ("dlq", "retry"): dlq_retry,
    ("dlq", "purge"): dlq_purge,
    ("replay", None): replay_command,
    ("forget", None): forget_command,
}

"""Fuzzing the intake with malformed input a provider could sign, over real HTTP, with workers running.

Bodies: deep nesting (up to 320 levels), ``null``, arrays, strings, numbers, huge numbers,
NaN/Infinity, lone surrogates, NUL and any Unicode in keys and values, invalid UTF-8, and
form-encoded variants. Headers: NUL, control characters and non-ASCII bytes in the event type and
the delivery id, and in a header no provider reads. Each request is signed correctly for its
provider (generic, GitHub and Standard Webhooks), so it gets past verification.

Every answer is a 4xx, or the event is applied or dead-lettered by each consumer group; what the
policy refuses is always a 4xx; nothing answers 5xx. Afterwards a lifecycle pass archives every
context (PostgreSQL takes whatever was accepted), the app still answers /healthz, and a normal event
is applied.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import socket
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx2
import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ingest.dlq import list_dead
from memory import keys
from memory.lifecycle import Lifecycle
from memory.runtime import Runtime
from memory.sources import SourceStore
from tests.conftest import make_settings
from tests.fixtures.github_examples import load_fixture
from tests.helpers import github_headers, serve_app, wait_until

SECRET = "fuzz-secret"
STANDARD_KEY = b"fuzz-standard-key-of-32-bytes!!!"
MAX_DEPTH = 128  # HOOKLINE_MAX_JSON_DEPTH's default
EXAMPLES_PER_PROVIDER = 300
JSON = b"application/json"
FORM = b"application/x-www-form-urlencoded"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Replaced by the case's number when it is sent: Hypothesis draws many equal values, and an undated
# provider's byte-identical bodies are duplicates (by design), so most cases carry a unique mark.
MARK = b"FUZZCASEMARK"  # alphanumeric: the same in JSON and in a form


@dataclass(frozen=True)
class Body:
    data: bytes
    content_type: bytes
    refused: bool  # the policy must answer 4xx (not an object, too deep, not JSON)


@dataclass(frozen=True)
class Case:
    source: str
    body: Body
    event: bytes | None  # the event type header's raw value (None: not sent)
    delivery: bytes
    extra: bytes | None  # a header no provider reads

    def numbered(self, number: int) -> Case:
        mark = f"case{number}".encode()
        body = replace(self.body, data=self.body.data.replace(MARK, mark))
        return replace(self, body=body, delivery=self.delivery.replace(MARK, mark))


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _nest(depth: int, leaf: Any, objects: bool) -> Any:
    for level in range(depth):
        leaf = {"k": leaf} if objects and level % 2 else [leaf]
    return leaf


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Branches drawn in proportion to their weights (``one_of`` picks by its own heuristics)."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(lambda s: s)


# Any code point but surrogates (which UTF-8 cannot carry): NUL, controls, non-ASCII, emoji.
text = st.text(alphabet=st.characters(codec="utf-8"), max_size=24)
numbers = weighted(
    (4, st.integers(min_value=-(2**80), max_value=2**80)),
    (4, st.floats(allow_nan=False, allow_infinity=False)),
    (1, st.sampled_from([math.nan, math.inf, -math.inf])),
)
leaf = st.none() | st.booleans() | numbers | text
json_value = st.recursive(
    leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=24
)
nests = st.builds(_nest, st.integers(MAX_DEPTH - 3, 320), leaf, st.booleans())
values = weighted(
    (6, st.dictionaries(text, json_value, max_size=6)),  # an object: the common case
    (1, json_value),  # anything at the top: null, arrays, strings, numbers
    (2, nests.map(lambda nest: {"deep": nest})),
    (1, nests),
)


@st.composite
def json_bodies(draw: st.DrawFn) -> Body:
    value = draw(values)
    if draw(st.booleans()) and isinstance(value, dict):  # give generic and standard an event type
        value = {**value, "type": draw(text | st.sampled_from(["invoice.paid", "user.created"]))}
    if draw(st.integers(0, 3)) and isinstance(value, dict):
        value = {"case": MARK.decode(), **value}
    encoded = json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=True)
    refused = not isinstance(value, dict) or _depth(value) > MAX_DEPTH or not _finite(value)
    if draw(st.integers(0, 9)) == 0:
        return Body(urlencode({"payload": encoded}).encode(), FORM, refused)
    return Body(encoded.encode(), JSON, refused)


FIXED_BODIES = [
    Body(b"null", JSON, True),
    Body(b"[]", JSON, True),
    Body(b'"a string"', JSON, True),
    Body(b"-0.0", JSON, True),
    Body(b"18446744073709551616", JSON, True),
    Body(b'{"n": 1e400}', JSON, True),
    Body(b'{"n": -Infinity}', JSON, True),
    Body(b'{"s": "\\ud800"}', JSON, True),
    Body(b'{"s": "\\udc00\\ud800"}', JSON, True),
    Body(b'{"s": "\xed\xa0\x80"}', JSON, True),  # a surrogate encoded in UTF-8: invalid UTF-8
    Body(b'{"s": "\xff"}', JSON, True),
    Body(b"", JSON, True),
    Body(b'{"a": 1} {"b": 2}', JSON, True),
    Body(b"[" * 1100 + b"]" * 1100, JSON, True),
    Body(b'{"s": "\\u0000", "\\u0000": 1, "type": "a\\u0000b"}', JSON, False),  # generic: NUL type
    Body(b'{"s": "\\u0000\\u0000", "n": 123456789012345678901234567890, "x": 1e308}', JSON, False),
    Body(b"payload=%5B1%5D", FORM, True),
    Body(b"payload=null", FORM, True),
    Body(b"payload=%7B%22a%22%3A%22%00%22%7D", FORM, False),
    Body(b"a=%00&b=%C3%A9%E2%82%AC&c=%FF", FORM, False),  # fields become an object
    Body(b"a&&b", FORM, True),
]
bodies = weighted((5, json_bodies()), (1, st.sampled_from(FIXED_BODIES)))

# uvicorn's parser answers 400 to a C0 control in any header, so most values avoid them, to reach
# the providers; C1 (0x80-0x9f) and TAB do reach them, and so does any UTF-8.
printable = st.text(alphabet=st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=30)
utf8 = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cc"]), max_size=30)
header_values = weighted(
    (4, printable.map(lambda value: value.encode("latin-1"))),
    (3, utf8.map(str.encode)),
    (1, st.sampled_from([b"\x00", b"a\x00b", b"\x1b[2J", b"a\tb", b"\x85", b"caf\xc3\xa9", b"x" * 201])),
    (1, st.binary(max_size=40).filter(lambda raw: b"\r" not in raw and b"\n" not in raw)),
)
events = weighted(
    (3, st.sampled_from([b"push", b"issues", b"pull_request", b"ping", b"release"])),
    (2, header_values),
    (1, st.none()),  # not sent
)
deliveries = weighted((3, st.just(MARK)), (2, header_values))
extras = weighted((2, st.none()), (1, header_values))


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _server_view(raw: bytes) -> str:
    """How a header value reaches a provider: latin-1 decoded, surrounding whitespace trimmed."""
    return raw.decode("latin-1").strip()


def _signed(case: Case) -> list[tuple[bytes, bytes]]:
    body = case.body.data
    headers = [(b"content-type", case.body.content_type)]
    headers += [] if case.extra is None else [(b"x-fuzz", case.extra)]
    if case.source == "gh":
        headers += [(b"x-hub-signature-256", b"sha256=" + _hmac(SECRET.encode(), body).hex().encode())]
        headers += [(b"x-github-delivery", case.delivery)]
        headers += [] if case.event is None else [(b"x-github-event", case.event)]
    elif case.source == "hooks":
        headers += [(b"x-signature", _hmac(SECRET.encode(), body).hex().encode())]
        headers += [(b"x-delivery-id", case.delivery)]
        headers += [] if case.event is None else [(b"x-event-type", case.event)]
    else:  # Standard Webhooks signs "<webhook-id>.<timestamp>.<body>" as the verifier sees the id
        stamp = str(int(time.time()))
        message = f"{_server_view(case.delivery)}.{stamp}.".encode() + body
        signature = base64.b64encode(_hmac(STANDARD_KEY, message))
        headers += [(b"webhook-id", case.delivery), (b"webhook-timestamp", stamp.encode())]
        headers += [(b"webhook-signature", b"v1," + signature)]
    return headers


def _must_refuse(case: Case) -> bool:
    used = [case.delivery] + ([] if case.event is None or case.source == "std" else [case.event])
    return case.body.refused or any(_CONTROL.search(_server_view(raw)) for raw in used)


def _post(port: int, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    """One request on its own connection, bytes as given (an HTTP client would refuse NUL in a header)."""
    head = [f"POST {path} HTTP/1.1".encode(), b"host: 127.0.0.1", b"connection: close"]
    head += [b"content-length: " + str(len(body)).encode()] + [
        name + b": " + value for name, value in headers
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@dataclass
class Outcomes:
    hot: set[str]  # event ids in a context's hot-tier hash
    indexed: set[str]  # rows of the events table (group "index")
    audited: set[str]  # rows of the ledger (group "audit")
    dead: dict[str, set[str]]  # group -> the dedup keys it dead-lettered


async def _outcomes(rt: Runtime, tenant: str) -> Outcomes:
    placeholder = "ctx_" + "0" * 20
    pattern = keys.context_events(tenant, placeholder).replace(placeholder, "*")
    hot: set[str] = set()
    async for key in rt.redis.scan_iter(match=pattern, count=1000):
        hot.update(
            field.decode() if isinstance(field, bytes) else field for field in await rt.redis.hkeys(key)
        )
    async with rt.db.connection() as conn:
        indexed = {r[0] for r in await (await conn.execute("SELECT id FROM events")).fetchall()}
        audited = {r[0] for r in await (await conn.execute("SELECT id FROM ledger")).fetchall()}
    dead: dict[str, set[str]] = {group: set() for group in keys.GROUPS}
    for letter in await list_dead(rt.redis, count=100_000):
        if letter.dedup_key is not None:
            dead[letter.group].add(letter.dedup_key)
    return Outcomes(hot, indexed, audited, dead)


async def _settled(rt: Runtime, tenant: str, accepted: set[str]) -> bool:
    """Each accepted event is applied by each consumer group, or dead-lettered by it."""
    seen = await _outcomes(rt, tenant)
    return (
        accepted <= seen.hot | seen.dead[keys.CONTEXT_GROUP]
        and accepted <= seen.indexed | seen.dead[keys.INDEX_GROUP]
        and accepted <= seen.audited | seen.dead[keys.AUDIT_GROUP]
    )


async def _applied(rt: Runtime, tenant: str, event_id: str) -> bool:
    seen = await _outcomes(rt, tenant)
    return event_id in seen.hot & seen.indexed & seen.audited


def _cases(source: str) -> list[Case]:
    """The examples, drawn before the server starts: its threads use ``random``, which Hypothesis
    would take for a strategy doing so while it draws."""
    cases: list[Case] = []

    @settings(
        max_examples=EXAMPLES_PER_PROVIDER,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies, event=events, delivery=deliveries, extra=extras)
    def collect(body: Body, event: bytes | None, delivery: bytes, extra: bytes | None) -> None:
        cases.append(Case(source, body, event, delivery, extra))

    collect()
    return cases


def _send(port: int, cases: list[Case], accepted: set[str], statuses: dict[int, int]) -> None:
    for number, drawn in enumerate(cases):
        case = drawn.numbered(number)
        status, reply = _post(port, f"/hooks/{case.source}", _signed(case), case.body.data)
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (status, reply, case)
        if _must_refuse(case):
            assert 400 <= status < 500, (status, reply, case)
        if status == 202:
            accepted.add(orjson.loads(reply)["id"])


async def test_signed_malformed_input_gets_4xx_or_is_applied_or_dead_lettered(
    tmp_root: Path, machine_rt: Runtime, tenant: str
) -> None:
    store = SourceStore(machine_rt.db)
    await store.add("gh", "github", [SECRET], tenant)
    await store.add("hooks", "generic", [SECRET], tenant)
    await store.add("std", "standard", ["whsec_" + base64.b64encode(STANDARD_KEY).decode()], tenant)
    settings_ = make_settings(tmp_root, machine_rt.redis_url, machine_rt.database_url)
    cases = [case for source in ("hooks", "gh", "std") for case in _cases(source)]
    accepted: set[str] = set()
    statuses: dict[int, int] = {}
    with serve_app(settings_) as url:
        port = int(url.rsplit(":", 1)[1])
        await anyio.to_thread.run_sync(_send, port, cases, accepted, statuses)
        await wait_until(lambda: _settled(machine_rt, tenant, accepted), within=60)

        # PostgreSQL takes whatever was accepted: every context goes to the cold tier.
        report = await Lifecycle(machine_rt).run_pass(datetime.now(UTC) + timedelta(days=3))
        assert report.failed == [], report.failed
        async with machine_rt.db.connection() as conn:
            rows = await (await conn.execute("SELECT tier, count(*) FROM contexts GROUP BY tier")).fetchall()
        tiers = {str(tier): int(count) for tier, count in rows}
        assert set(tiers) == {"cold"}, tiers

        async with httpx2.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).status_code == 200
            good = orjson.dumps(load_fixture("push"))
            headers = github_headers(good, SECRET, "push", "ok-1")
            assert (await client.post("/hooks/gh", content=good, headers=headers)).status_code == 202
        await wait_until(lambda: _applied(machine_rt, tenant, "gh:ok-1"))
    # The inputs were judged, not all refused: both outcomes happened many times.
    assert statuses.get(400, 0) > 200 and len(accepted) > 200, (statuses, len(accepted))

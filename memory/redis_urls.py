"""``HOOKLINE_REDIS_URL``, read into what ``memory.runtime.connect_redis`` needs to connect.

Schemes (the ``s`` ones speak TLS, to every node they reach):

- ``redis://``, ``rediss://``, ``unix://`` — one server (``[user:password@]host:port[/db]``);
- ``redis+sentinel://``, ``rediss+sentinel://`` — ``[user:password@]host:port[,host:port]/service``:
  the sentinels name the primary; the password is the data nodes' (``requirepass``), and
  ``?sentinel_password=`` is the sentinels' own when they have one;
- ``redis+cluster://``, ``rediss+cluster://`` — ``[user:password@]host:port`` of any node.

TLS options, as query parameters of any TLS scheme: ``ssl_ca_certs`` (PEM file of the CAs to
trust), ``ssl_certfile`` and ``ssl_keyfile`` (a client certificate, for servers that ask for one),
``ssl_cert_reqs`` (``none`` | ``optional`` | ``required``, the default) and ``ssl_check_hostname``
(``true``, the default, | ``false``). A mistake in any of them is a ``ConfigError`` at start, never
a failure at the first command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlparse

from memory.errors import ConfigError

Topology = Literal["single", "sentinel", "cluster"]

_SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_TLS_OPTIONS = (*_TLS_FILES, "ssl_cert_reqs", "ssl_check_hostname")
_CERT_REQS = ("none", "optional", "required")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_SENTINEL_OPTIONS = ("sentinel_password", "service", "db")
SENTINEL_PORT = 26379
DEFAULT_SERVICE = "mymaster"


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is and how to speak to it."""

    topology: Topology
    tls: bool
    # single and cluster: the URL for redis-py's ``from_url`` (redis://, rediss:// or unix://), with
    # the TLS options taken out (they are in ``ssl_options``, checked and typed)
    url: str = ""
    ssl_options: Mapping[str, Any] = field(default_factory=dict)
    # sentinel only
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def parse_redis_url(url: str) -> RedisTarget:
    parsed = urlparse(url)
    if parsed.scheme not in _SCHEMES:
        raise ConfigError(f"unsupported Redis URL scheme {parsed.scheme!r}: use one of {', '.join(_SCHEMES)}")
    topology, tls = _SCHEMES[parsed.scheme]
    query = _query(parsed.query)
    ssl_options = _ssl_options(query, tls)
    rest = {name: value for name, value in query.items() if name not in _TLS_OPTIONS}
    if topology == "sentinel":
        return _sentinel(parsed.netloc, parsed.path, rest, tls, ssl_options)
    scheme = ("rediss" if tls else "redis") if topology == "cluster" else parsed.scheme
    # Rebuilt by hand: urlunparse would turn unix:///path into unix:/path.
    _, slashes, base = url.split("?", 1)[0].partition("://")
    if not slashes:
        raise ConfigError(f"HOOKLINE_REDIS_URL is not a URL: {redact(url)!r}")
    plain = f"{scheme}://{base}" + (f"?{urlencode(rest)}" if rest else "")
    return RedisTarget(topology, tls, url=plain, ssl_options=ssl_options)


def _query(raw: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        if name in found:
            raise ConfigError(f"HOOKLINE_REDIS_URL gives {name!r} twice")
        found[name] = value
    return found


def _ssl_options(query: Mapping[str, str], tls: bool) -> dict[str, Any]:
    given = {name: query[name] for name in _TLS_OPTIONS if name in query}
    if given and not tls:
        raise ConfigError(
            f"HOOKLINE_REDIS_URL: {', '.join(given)} need a TLS scheme (rediss://, rediss+sentinel://, "
            "rediss+cluster://)"
        )
    for name in _TLS_FILES:
        if name in given and not Path(given[name]).is_file():
            raise ConfigError(f"HOOKLINE_REDIS_URL: {name} names no readable file: {given[name]!r}")
    if "ssl_keyfile" in given and "ssl_certfile" not in given:
        raise ConfigError("HOOKLINE_REDIS_URL: ssl_keyfile needs ssl_certfile (the client certificate)")
    options: dict[str, Any] = {name: given[name] for name in _TLS_FILES if name in given}
    if "ssl_cert_reqs" in given:
        if given["ssl_cert_reqs"] not in _CERT_REQS:
            raise ConfigError(
                f"HOOKLINE_REDIS_URL: ssl_cert_reqs is one of {'|'.join(_CERT_REQS)}, "
                f"got {given['ssl_cert_reqs']!r}"
            )
        options["ssl_cert_reqs"] = given["ssl_cert_reqs"]
    if "ssl_check_hostname" in given:
        flag = _BOOLEANS.get(given["ssl_check_hostname"].lower())
        if flag is None:
            got = given["ssl_check_hostname"]
            raise ConfigError(f"HOOKLINE_REDIS_URL: ssl_check_hostname is true or false, got {got!r}")
        options["ssl_check_hostname"] = flag
    return options


def _sentinel(
    netloc: str, path: str, query: Mapping[str, str], tls: bool, ssl_options: Mapping[str, Any]
) -> RedisTarget:
    unknown = sorted(set(query) - set(_SENTINEL_OPTIONS))
    if unknown:
        raise ConfigError(
            f"HOOKLINE_REDIS_URL: a Sentinel URL takes {', '.join((*_SENTINEL_OPTIONS, *_TLS_OPTIONS))}; "
            f"not {', '.join(unknown)}"
        )
    userinfo, _, hosts = netloc.rpartition("@")
    username, has_password, password = userinfo.partition(":")
    service = path.strip("/") or query.get("service", DEFAULT_SERVICE)
    if not service or "/" in service:
        raise ConfigError(f"HOOKLINE_REDIS_URL: {service!r} is not a Sentinel service name")
    try:
        db = int(query.get("db", "0"))
    except ValueError:
        raise ConfigError(f"HOOKLINE_REDIS_URL: db is a number, got {query['db']!r}") from None
    return RedisTarget(
        "sentinel",
        tls,
        ssl_options=ssl_options,
        sentinels=tuple(_host_port(part) for part in hosts.split(",")),
        service=service,
        db=db,
        username=unquote(username) or None,
        password=unquote(password) if has_password else None,
        sentinel_password=query.get("sentinel_password") or None,
    )


def _host_port(part: str) -> tuple[str, int]:
    """``host:port``, ``host`` (the sentinel port) or ``[v6 address]:port``."""
    host, port = part, str(SENTINEL_PORT)
    if part.startswith("["):
        host, _, tail = part[1:].partition("]")
        if tail:
            port = tail.removeprefix(":")
    elif ":" in part:
        host, port = part.rsplit(":", 1)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"HOOKLINE_REDIS_URL: {part!r} is not a sentinel's host:port")
    return host, int(port)


def redact(url: str) -> str:
    """The URL with every password in it (user info, ``*password`` query parameters) masked: fit
    for logs and error messages. The rest is left as written."""
    parsed = urlparse(url)
    shown = url
    if "@" in parsed.netloc:
        userinfo, _, hosts = parsed.netloc.rpartition("@")
        username, has_password, _ = userinfo.partition(":")
        shown = shown.replace(parsed.netloc, f"{username}{':***' if has_password else ''}@{hosts}", 1)
    if "password" in parsed.query.lower():
        pairs = parse_qsl(parsed.query, keep_blank_values=True)
        query = "&".join(f"{k}=***" if "password" in k.lower() else f"{k}={v}" for k, v in pairs)
        shown = shown.replace(f"?{parsed.query}", f"?{query}", 1)
    return shown

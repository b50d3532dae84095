"""The Host and Origin guard of the MCP edge (/mcp, /ws) and of any HTML route: DNS rebinding.

A web page can make a visitor's browser talk to a server on the visitor's machine (or network) by
pointing a domain of its own at that address: the browser then sends ``Host: evil.example`` and the
page's ``Origin``. With auth off nothing else stops it, so there both headers are always checked:

- **Auth off** (any bind address): Host must be the bind address or a loopback name (``localhost``,
  ``127.0.0.1``, ``[::1]``), with any port, or match ``HOOKLINE_ALLOWED_HOSTS``. An Origin, when
  sent, must be ``http(s)://`` one of those hosts, or match ``HOOKLINE_ALLOWED_ORIGINS``.
- **Auth on**: the same rule, from the two settings alone; an empty ``HOOKLINE_ALLOWED_HOSTS``
  checks no Host, and Origin is checked only when either setting is given.

A bad Host is answered 421, a bad Origin 403 (JSON ``{"error", "detail"}``; a WebSocket handshake
gets them as its denial response). Patterns: ``host`` (no port in the header), ``host:8443``,
``host:*`` (any port), ``*.example.com`` (any subdomain; ``*.example.com:*`` with any port); an
origin pattern is ``scheme://`` and one of those.

The SDK's own check (exact strings, loopback bind addresses only) is turned off where the session
manager is built (``mcp_server.sessions``): this is the one mechanism.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server.refusals import refuse
from memory.errors import ConfigError
from memory.settings import Settings

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WEB_SCHEMES = frozenset({"http", "https"})
_HOST = r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_-]+(?:\.[a-z0-9_-]+)*)"
_AUTHORITY = re.compile(_HOST + r"(?::(?P<port>[0-9]{1,5}))?")
_HOST_PATTERN = re.compile(
    r"(?P<host>(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\])(?::(?P<port>\*|[0-9]{1,5}))?"
)
_ORIGIN = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<authority>.+)")
ANY_PORT = "*"


@dataclass(frozen=True, slots=True)
class HostPattern:
    host: str  # a name, an IPv4 address, [an IPv6 address], or *.a suffix
    port: str | None  # None: the header carries no port; "*": any port

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        match = _HOST_PATTERN.fullmatch(text.strip().lower())
        if match is None:
            raise ConfigError(
                f"{text!r} is not a host pattern (host, host:8443, host:*, *.example.com, [::1]:*)"
            )
        return cls(match["host"], match["port"])

    def matches(self, host: str, port: str | None) -> bool:
        if self.host.startswith("*."):
            suffix = self.host[1:]
            found = host.endswith(suffix) and len(host) > len(suffix)
        else:
            found = host == self.host
        return found and (self.port == ANY_PORT or self.port == port)


@dataclass(frozen=True, slots=True)
class OriginPattern:
    schemes: frozenset[str]
    host: HostPattern

    @classmethod
    def parse(cls, text: str) -> OriginPattern:
        match = _ORIGIN.fullmatch(text.strip().lower())
        if match is None:
            raise ConfigError(
                f"{text!r} is not an origin pattern (https://console.example.com, http://host:*)"
            )
        return cls(frozenset({match["scheme"]}), HostPattern.parse(match["authority"]))

    def matches(self, scheme: str, host: str, port: str | None) -> bool:
        return scheme in self.schemes and self.host.matches(host, port)


def _split_authority(value: str) -> tuple[str, str | None] | None:
    match = _AUTHORITY.fullmatch(value.strip().lower())
    return None if match is None else (match["host"], match["port"])


def _shown(value: str) -> str:
    return repr(value if len(value) <= 100 else value[:97] + "...")


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Which Host and Origin values are served; ``None`` checks nothing."""

    hosts: tuple[HostPattern, ...] | None
    origins: tuple[OriginPattern, ...] | None

    def refusal(self, headers: Headers) -> tuple[int, str, str] | None:
        """(status, error, detail) for a request this policy refuses, else None."""
        host = headers.get("host")
        if self.hosts is not None and not self.allows_host(host):
            shown = "no Host header" if host is None else f"Host {_shown(host)}"
            return 421, "invalid_host", f"{shown} is not served here (see HOOKLINE_ALLOWED_HOSTS)"
        origin = headers.get("origin")
        if self.origins is not None and origin is not None and not self.allows_origin(origin):
            return (
                403,
                "invalid_origin",
                f"Origin {_shown(origin)} is not allowed (see HOOKLINE_ALLOWED_ORIGINS)",
            )
        return None

    def allows_host(self, value: str | None) -> bool:
        parts = None if value is None else _split_authority(value)
        if parts is None:
            return False
        return self.hosts is None or any(pattern.matches(*parts) for pattern in self.hosts)

    def allows_origin(self, value: str) -> bool:
        match = _ORIGIN.fullmatch(value.strip().lower())
        parts = None if match is None else _split_authority(match["authority"])
        if match is None or parts is None:
            return False  # "null" (a sandboxed page, a file://) included
        return self.origins is None or any(p.matches(match["scheme"], *parts) for p in self.origins)


def host_policy(settings: Settings) -> HostPolicy:
    """The policy of these settings; a malformed pattern in them is a ConfigError (at start)."""
    hosts = tuple(HostPattern.parse(text) for text in settings.allowed_hosts)
    origins = tuple(OriginPattern.parse(text) for text in settings.allowed_origins)
    if not settings.auth_enabled:
        bind = f"[{settings.host}]" if ":" in settings.host else settings.host
        local = tuple(HostPattern(name, ANY_PORT) for name in dict.fromkeys((bind.lower(), *LOOPBACK_NAMES)))
        hosts = local + hosts
    elif not hosts:
        return HostPolicy(None, origins or None)
    return HostPolicy(hosts, origins + tuple(OriginPattern(WEB_SCHEMES, host) for host in hosts))


class HostGuard:
    """ASGI middleware: answers 421 / 403 itself for a Host or Origin its policy refuses."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = self.policy.refusal(Headers(scope=scope))
            if refusal is not None:
                await refuse(scope, receive, send, *refusal)
                return
        await self.app(scope, receive, send)

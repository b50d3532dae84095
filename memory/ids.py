"""Stable identifiers, and the one rule each kind of identifier follows.

Tenant names, source names and context ids reach Redis keys, SQL rows and blob names. Each is
checked here, at the edge (the CLI, a token's tenant, an MCP argument, the webhook route), before
anything is built from it, and ``memory.keys`` refuses anything else, so a crafted id such as
``prod:ctx_…`` or one holding ``{``, ``}``, ``/`` or NUL can never address another tenant's data.
"""

from __future__ import annotations

import hashlib
import re
from typing import TypeGuard

from memory.errors import InvalidArgument

# Lower-case letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters.
NAME_RULE = "1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
CONTEXT_ID_PREFIX = "ctx_"
_CONTEXT_ID = re.compile(r"ctx_[0-9a-f]{20}")
MAX_SUBJECT_CHARS = 1000


class InvalidIdentifier(InvalidArgument):
    """A tenant, source or context id that does not follow its rule: nothing is built from it."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check_name(value: object, what: str) -> str:
    """``value`` if it follows the name rule (tenants, sources, agents, tools ...)."""
    if not is_name(value):
        raise InvalidIdentifier(f"{what} is {NAME_RULE}; got {_shown(value)}")
    return value


def check_tenant(value: object) -> str:
    """``value`` if it is a valid tenant name; InvalidIdentifier otherwise."""
    if not is_name(value):
        raise InvalidIdentifier(f"a tenant name is {NAME_RULE}; got {_shown(value)}")
    return value


def check_source(value: object) -> str:
    """``value`` if it is a valid source name; InvalidIdentifier otherwise."""
    if not is_name(value):
        raise InvalidIdentifier(f"a source name is {NAME_RULE}; got {_shown(value)}")
    return value


def is_context_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _CONTEXT_ID.fullmatch(value) is not None


def check_context_id(value: object) -> str:
    """``value`` if it has the form ``context_id`` makes (``ctx_`` + 20 hex digits)."""
    if not is_context_id(value):
        raise InvalidIdentifier(
            f"a context id is 'ctx_' followed by 20 lower-case hex digits; got {_shown(value)}"
        )
    return value


_PRINCIPAL = re.compile(r"tok_[0-9a-f]{16}|local")


def check_principal(value: object) -> str:
    """A principal is a token's public id (``tok_`` + 16 hex digits) or ``local``."""
    if not (isinstance(value, str) and _PRINCIPAL.fullmatch(value)):
        raise InvalidIdentifier(
            f"a principal is 'local' or 'tok_' followed by 16 hex digits; got {_shown(value)}"
        )
    return value


def check_subject(value: str) -> str:
    """A subject names a context (it is only ever hashed): bounded, and with no NUL."""
    if not value or len(value) > MAX_SUBJECT_CHARS or "\x00" in value:
        raise InvalidArgument(f"a subject is 1-{MAX_SUBJECT_CHARS} characters, without NUL")
    return value


def context_id(tenant: str, subject: str) -> str:
    """One context per (tenant, subject); the id reveals neither."""
    return "ctx_" + hashlib.blake2b(f"{tenant}\x00{subject}".encode(), digest_size=10).hexdigest()


def head_key(occurred_ms: int, event_id: str) -> str:
    """A total order over a context's events: the newest (time, id) decides the head fields.

    Lexicographic order of these strings equals (time, id) order, in Lua and in SQL alike, so that
    applying events in any order yields the same head.
    """
    return f"{occurred_ms:015d}|{event_id}"

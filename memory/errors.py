"""Hookline's error hierarchy: specific errors, caught where they are expected."""

from __future__ import annotations


class HooklineError(Exception):
    """Base of every error Hookline raises on purpose."""


class ConfigError(HooklineError):
    """A setting is missing or malformed."""


class StoreUnavailable(HooklineError):
    """Redis, PostgreSQL or the blob store cannot be reached right now; retry later."""


class NotFound(HooklineError):
    """The asked-for context, source or event does not exist for this tenant."""


class InvalidArgument(HooklineError):
    """A caller passed an argument the service cannot use."""


class UnknownSource(NotFound):
    """No webhook source of that name is configured."""


class AuthError(HooklineError):
    """A credential is missing, unknown or revoked."""


class CorruptEnvelope(HooklineError):
    """A stream entry cannot be decoded: it is dead-lettered, never retried."""

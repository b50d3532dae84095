"""The mapper contract and the registry that picks a mapper for a provider.

A mapper turns one provider event (its type and JSON payload) into a ``MappedEvent``: which
context it belongs to (the subject) and how to describe it. Mappers are pure and stateless.
"""

from __future__ import annotations

from typing import Any, Protocol

from memory.mappers.agent import AgentMapper
from memory.mappers.generic import GenericMapper
from memory.mappers.github import GitHubMapper
from memory.mappers.payload import MappingError
from memory.models import MappedEvent

__all__ = ["Mapper", "MappingError", "mapper_for"]


class Mapper(Protocol):
    def map(self, event_type: str, payload: dict[str, Any]) -> MappedEvent:
        """Map one event; raise ``MappingError`` only if the payload cannot be mapped at all."""
        ...


_GENERIC: Mapper = GenericMapper()
_MAPPERS: dict[str, Mapper] = {"github": GitHubMapper(), "agent": AgentMapper()}


def mapper_for(provider: str) -> Mapper:
    """The provider's own mapper, or the generic one for providers without one."""
    return _MAPPERS.get(provider.strip().lower(), _GENERIC)

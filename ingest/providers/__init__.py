"""One module per webhook provider; ``provider_for`` is the registry."""

from __future__ import annotations

from ingest.providers.base import Provider
from ingest.providers.generic import Generic
from ingest.providers.github import GitHub

PROVIDERS: dict[str, Provider] = {"github": GitHub(), "generic": Generic()}


def provider_for(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(sorted(PROVIDERS))}") from None

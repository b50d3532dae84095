"""One module per webhook provider; ``provider_for`` is the registry."""

from __future__ import annotations

from ingest.providers.base import Provider
from ingest.providers.generic import Generic
from ingest.providers.github import GitHub
from ingest.providers.jira import Jira
from ingest.providers.linear import Linear
from ingest.providers.shopify import Shopify
from ingest.providers.slack import Slack
from ingest.providers.standard import StandardWebhooks
from ingest.providers.stripe import Stripe

PROVIDERS: dict[str, Provider] = {
    provider.name: provider
    for provider in (
        GitHub(),
        Generic(),
        Stripe(),
        Slack(),
        StandardWebhooks(),
        Shopify(),
        Linear(),
        Jira(),
    )
}


def provider_for(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(sorted(PROVIDERS))}") from None

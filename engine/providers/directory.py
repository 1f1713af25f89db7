"""The adapters of the provider rows in use, kept while the row is unchanged: a carrier's
webhooks arrive by the dozen per call, and an adapter keeps its HTTP session open."""

from __future__ import annotations

import uuid
from datetime import datetime

from engine.domain.providers import ProviderType
from engine.providers.base import CarrierAdapter
from engine.providers.registry import build_adapter
from engine.store.records import ProviderSecrets, StoredProvider

__all__ = ["CarrierDirectory"]


class CarrierDirectory:
    """One adapter per provider row (rebuilt when the row's ``updated_at`` changes)."""

    def __init__(self) -> None:
        self._adapters: dict[uuid.UUID, tuple[datetime, CarrierAdapter]] = {}
        self._stale: list[CarrierAdapter] = []

    def cached(self, provider: StoredProvider) -> CarrierAdapter | None:
        """The provider's adapter if it was built from this version of its row."""
        kept = self._adapters.get(provider.id)
        return kept[1] if kept is not None and kept[0] == provider.updated_at else None

    def adapter(self, provider: StoredProvider, secrets: ProviderSecrets) -> CarrierAdapter:
        kept = self._adapters.get(provider.id)
        if kept is not None and kept[0] == provider.updated_at:
            return kept[1]
        adapter = build_adapter(
            ProviderType(provider.provider_type),
            provider.id,
            provider.config,
            secrets.credentials,
            secrets.webhook_secret,
        )
        if kept is not None:
            self._stale.append(kept[1])  # closed with the rest: a request may be in flight
        self._adapters[provider.id] = (provider.updated_at, adapter)
        return adapter

    async def close(self) -> None:
        adapters, self._adapters = self._adapters, {}
        stale, self._stale = self._stale, []
        for adapter in [a for _, a in adapters.values()] + stale:
            await adapter.close()

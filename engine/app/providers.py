"""The VoIP provider (carrier) use cases: add one, list them, read one.

Credentials and the webhook secret are sealed by the repository and never read back here:
a provider as returned says only whether it has them.
"""

from __future__ import annotations

import uuid

from engine.store.records import NewProvider, StoredProvider, Tenant
from engine.store.repositories import Store

__all__ = ["ProviderService"]


class ProviderService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(self, new: NewProvider) -> StoredProvider:
        """Add a provider (Conflict when the tenant has one of that name)."""
        return await self._store.providers.create(new)

    async def all(self, tenant: Tenant) -> list[StoredProvider]:
        return await self._store.providers.all(tenant.id)

    async def get(self, tenant: Tenant, provider_id: uuid.UUID) -> StoredProvider:
        return await self._store.providers.get(tenant.id, provider_id)

"""The VoIP provider (carrier) use cases: add one, list them, read one.

Credentials and the webhook secret are sealed by the repository and never read back here:
a provider as returned says only whether it has them.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

from engine.domain.providers import ProviderType
from engine.store.records import NewProvider, StoredProvider, Tenant
from engine.store.repositories import Store

__all__ = ["AddProvider", "ProviderService"]


@dataclasses.dataclass(frozen=True, slots=True)
class AddProvider:
    """A provider to add to a tenant; ``credentials`` and ``webhook_secret`` are stored
    sealed and never returned."""

    name: str
    provider_type: ProviderType
    is_active: bool = True
    is_default: bool = False  # the tenant's default provider from now on when True
    priority: int = 100
    max_concurrent_calls: int | None = None
    calls_per_second: float | None = None
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # non-secret
    credentials: Mapping[str, str] = dataclasses.field(default_factory=dict)
    webhook_secret: str | None = None


class ProviderService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(self, tenant: Tenant, request: AddProvider) -> StoredProvider:
        """Add a provider (Conflict when the tenant has one of that name)."""
        new = NewProvider(
            tenant_id=tenant.id,
            name=request.name,
            provider_type=request.provider_type,
            is_active=request.is_active,
            is_default=request.is_default,
            priority=request.priority,
            max_concurrent_calls=request.max_concurrent_calls,
            calls_per_second=request.calls_per_second,
            config=request.config,
            credentials=request.credentials,
            webhook_secret=request.webhook_secret,
        )
        return await self._store.providers.create(new)

    async def all(self, tenant: Tenant) -> list[StoredProvider]:
        return await self._store.providers.all(tenant.id)

    async def get(self, tenant: Tenant, provider_id: uuid.UUID) -> StoredProvider:
        return await self._store.providers.get(tenant.id, provider_id)

"""VoIP providers (carriers) configured per tenant. Credentials are stored, never read back
by the API: only whether they are set."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from engine.errors import Conflict, NotFound
from engine.store.database import Database

__all__ = ["PROVIDER_TYPES", "NewProvider", "ProviderRepository", "StoredProvider"]

PROVIDER_TYPES = ("asterisk", "sip_trunk", "twilio", "exotel", "vonage", "mcube")

_COLS = (
    "id, tenant_id, name, provider_type, is_active, is_default, priority, max_concurrent_calls, "
    "calls_per_second::float8 AS calls_per_second, config, "
    "credentials <> '{}'::jsonb AS has_credentials, "
    "webhook_secret IS NOT NULL AS has_webhook_secret, "
    "created_at, updated_at"
)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredProvider:
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    provider_type: str
    is_active: bool
    is_default: bool
    priority: int
    max_concurrent_calls: int | None
    calls_per_second: float | None
    config: dict[str, Any]
    has_credentials: bool
    has_webhook_secret: bool
    created_at: datetime
    updated_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class NewProvider:
    tenant_id: uuid.UUID
    name: str
    provider_type: str
    is_active: bool = True
    is_default: bool = False
    priority: int = 100
    max_concurrent_calls: int | None = None
    calls_per_second: float | None = None
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    credentials: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    webhook_secret: str | None = None


class ProviderRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, new: NewProvider) -> StoredProvider:
        try:
            async with self._db.transaction() as conn:
                if new.is_default:
                    # one default per tenant: the newest default wins
                    await conn.execute(
                        "UPDATE voip_provider SET is_default = false, updated_at = now() "
                        "WHERE tenant_id = $1 AND is_default",
                        new.tenant_id,
                    )
                row = await conn.fetchrow(
                    f"INSERT INTO voip_provider (tenant_id, name, provider_type, is_active, "
                    f"is_default, priority, max_concurrent_calls, calls_per_second, config, "
                    f"credentials, webhook_secret) "
                    f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {_COLS}",
                    new.tenant_id,
                    new.name,
                    new.provider_type,
                    new.is_active,
                    new.is_default,
                    new.priority,
                    new.max_concurrent_calls,
                    new.calls_per_second,
                    dict(new.config),
                    dict(new.credentials),
                    new.webhook_secret,
                )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"a provider named {new.name!r} already exists") from exc
        assert row is not None
        return StoredProvider(**dict(row))

    async def get(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> StoredProvider:
        row = await self._db.fetchrow(
            f"SELECT {_COLS} FROM voip_provider WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            provider_id,
        )
        if row is None:
            raise NotFound("provider", provider_id)
        return StoredProvider(**dict(row))

    async def default(self, tenant_id: uuid.UUID) -> StoredProvider | None:
        row = await self._db.fetchrow(
            f"SELECT {_COLS} FROM voip_provider WHERE tenant_id = $1 AND is_default AND is_active",
            tenant_id,
        )
        return None if row is None else StoredProvider(**dict(row))

    async def all(
        self, tenant_id: uuid.UUID, *, provider_type: str | None = None
    ) -> list[StoredProvider]:
        rows = await self._db.fetch(
            f"SELECT {_COLS} FROM voip_provider WHERE tenant_id = $1 "
            f"AND ($2::text IS NULL OR provider_type = $2) ORDER BY priority, name",
            tenant_id,
            provider_type,
        )
        return [StoredProvider(**dict(r)) for r in rows]

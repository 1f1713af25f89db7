"""VoIP providers (carriers) configured per tenant. Credentials are stored, never read back
by the API: only whether they are set.

Credentials (a JSON object) and the webhook secret are stored sealed by
:class:`~engine.secrets.Keyring`; without a configured key, storing them is refused
(:class:`~engine.errors.SecretsError`) rather than written in plaintext. :meth:`secrets`
is the one read path back to plaintext, for the code that talks to a carrier.

Every call placed without a ``provider_id`` reads its tenant's default provider, and every
carrier webhook reads its provider by id, so what is found is kept for a few seconds
(:mod:`engine.store.read_cache`): a provider made by this process is seen at once, one
made elsewhere within that time.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from engine.errors import Conflict, NotFound
from engine.secrets import Keyring
from engine.store.database import Database, returned
from engine.store.read_cache import ReadCache
from engine.store.records import NewProvider, ProviderChanges, ProviderSecrets, StoredProvider

__all__ = ["ProviderRepository"]

_COLS = (
    "id, tenant_id, name, provider_type, is_active, is_default, priority, max_concurrent_calls, "
    "calls_per_second::float8 AS calls_per_second, config, "
    "credentials IS NOT NULL AS has_credentials, "
    "webhook_secret IS NOT NULL AS has_webhook_secret, "
    "created_at, updated_at, weight"
)


class ProviderRepository:
    def __init__(self, db: Database, *, keyring: Keyring, cache_ttl: float = 5.0) -> None:
        self._db = db
        self._keyring = keyring
        # each tenant's default provider (None: it has none)
        self._defaults: ReadCache[uuid.UUID, StoredProvider | None] = ReadCache(cache_ttl)
        # providers by id, for their carriers' webhooks (a dozen per call)
        self._by_id: ReadCache[uuid.UUID, StoredProvider | None] = ReadCache(cache_ttl)

    def _sealed_credentials(self, credentials: Any) -> str | None:
        if not credentials:
            return None
        return self._keyring.seal(json.dumps(dict(credentials)), what="provider credentials")

    def _sealed_secret(self, secret: str | None) -> str | None:
        return (
            None if secret is None else self._keyring.seal(secret, what="a provider webhook_secret")
        )

    async def create(self, new: NewProvider) -> StoredProvider:
        credentials = self._sealed_credentials(new.credentials)
        webhook_secret = self._sealed_secret(new.webhook_secret)
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
                    f"credentials, webhook_secret, weight) "
                    f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
                    f"RETURNING {_COLS}",
                    new.tenant_id,
                    new.name,
                    new.provider_type,
                    new.is_active,
                    new.is_default,
                    new.priority,
                    new.max_concurrent_calls,
                    new.calls_per_second,
                    dict(new.config),
                    credentials,
                    webhook_secret,
                    new.weight,
                )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"a provider named {new.name!r} already exists") from exc
        self._defaults.clear()  # this process sees a new default at once
        self._by_id.clear()
        return StoredProvider(**dict(returned(row, "INSERT INTO voip_provider")))

    async def get(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> StoredProvider:
        row = await self._db.fetchrow(
            f"SELECT {_COLS} FROM voip_provider WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            provider_id,
        )
        if row is None:
            raise NotFound("provider", provider_id)
        return StoredProvider(**dict(row))

    async def by_id(self, provider_id: uuid.UUID) -> StoredProvider:
        """A provider of any tenant: a carrier's webhook names its provider, and the
        provider decides the tenant (NotFound when there is none)."""
        row = await self._db.fetchrow(
            f"SELECT {_COLS} FROM voip_provider WHERE id = $1", provider_id
        )
        if row is None:
            raise NotFound("provider", provider_id)
        return StoredProvider(**dict(row))

    async def secrets(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> ProviderSecrets:
        """The provider's credentials and webhook secret, decrypted."""
        row = await self._db.fetchrow(
            "SELECT credentials, webhook_secret FROM voip_provider "
            "WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            provider_id,
        )
        if row is None:
            raise NotFound("provider", provider_id)
        what = f"provider {provider_id}"
        credentials: dict[str, Any] = {}
        if row["credentials"] is not None:
            credentials = json.loads(
                self._keyring.unseal(row["credentials"], what=f"credentials of {what}")
            )
        webhook_secret = row["webhook_secret"]
        if webhook_secret is not None:
            webhook_secret = self._keyring.unseal(webhook_secret, what=f"webhook_secret of {what}")
        return ProviderSecrets(credentials, webhook_secret)

    async def default(self, tenant_id: uuid.UUID) -> StoredProvider | None:
        """The tenant's active default provider, if any (kept a few seconds: see the module)."""

        async def read() -> StoredProvider | None:
            row = await self._db.fetchrow(
                f"SELECT {_COLS} FROM voip_provider "
                f"WHERE tenant_id = $1 AND is_default AND is_active",
                tenant_id,
            )
            return None if row is None else StoredProvider(**dict(row))

        return await self._defaults.get(tenant_id, read)

    async def active_everywhere(self, provider_type: str) -> list[StoredProvider]:
        """Every tenant's active providers of ``provider_type`` (``ctc doctor`` checks what
        they need of the host)."""
        rows = await self._db.fetch(
            f"SELECT {_COLS} FROM voip_provider WHERE provider_type = $1 AND is_active "
            f"ORDER BY tenant_id, priority, name",
            provider_type,
        )
        return [StoredProvider(**dict(r)) for r in rows]

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

    async def update(
        self, tenant_id: uuid.UUID, provider_id: uuid.UUID, changes: ProviderChanges
    ) -> StoredProvider:
        """Change the fields of ``changes`` that are set (NotFound for another tenant's or
        no provider); a new default takes the place of the tenant's old one."""
        columns: dict[str, Any] = {
            name: getattr(changes, name)
            for name in ("priority", "weight", "is_default", "is_active", "max_concurrent_calls")
            if getattr(changes, name) is not None
        }
        if changes.config is not None:
            columns["config"] = dict(changes.config)
        if changes.credentials is not None:
            columns["credentials"] = self._sealed_credentials(changes.credentials)
        if changes.webhook_secret is not None:
            columns["webhook_secret"] = self._sealed_secret(changes.webhook_secret)
        args: list[Any] = [tenant_id, provider_id]
        sets = ["updated_at = now()"]
        for name, value in columns.items():
            args.append(value)
            sets.append(f"{name} = ${len(args)}")
        async with self._db.transaction() as conn:
            if changes.is_default:
                await conn.execute(
                    "UPDATE voip_provider SET is_default = false, updated_at = now() "
                    "WHERE tenant_id = $1 AND is_default AND id <> $2",
                    tenant_id,
                    provider_id,
                )
            row = await conn.fetchrow(
                f"UPDATE voip_provider SET {', '.join(sets)} "
                f"WHERE tenant_id = $1 AND id = $2 RETURNING {_COLS}",
                *args,
            )
        if row is None:
            raise NotFound("provider", provider_id)
        self._defaults.clear()
        self._by_id.clear()
        return StoredProvider(**dict(row))

    async def remove(self, tenant_id: uuid.UUID, provider_id: uuid.UUID) -> bool:
        """Delete the provider when no row names it (a session, a rate card, a caller-ID
        number: their foreign keys say so), else disable it (inactive, no longer the
        default); True when it was deleted. NotFound for another tenant's or none."""
        try:
            deleted = await self._db.fetchval(
                "DELETE FROM voip_provider WHERE tenant_id = $1 AND id = $2 RETURNING true",
                tenant_id,
                provider_id,
            )
        except asyncpg.ForeignKeyViolationError:
            deleted = None
            disabled = await self._db.fetchval(
                "UPDATE voip_provider SET is_active = false, is_default = false, "
                "updated_at = now() WHERE tenant_id = $1 AND id = $2 RETURNING true",
                tenant_id,
                provider_id,
            )
            if not disabled:
                raise NotFound("provider", provider_id) from None
        else:
            if not deleted:
                raise NotFound("provider", provider_id)
        self._defaults.clear()
        self._by_id.clear()
        return bool(deleted)

    async def live_calls(self, provider_id: uuid.UUID, *, besides: uuid.UUID) -> int:
        """The provider's sessions that have not ended, ``besides`` one (the call being
        placed): what its ``max_concurrent_calls`` is measured against, every engine's."""
        count = await self._db.fetchval(
            "SELECT count(*) FROM click_to_call_session WHERE provider_id = $1 AND id <> $2 "
            "AND status NOT IN ('completed', 'busy', 'no_answer', 'failed', 'canceled', "
            "'rejected')",
            provider_id,
            besides,
        )
        return int(count or 0)

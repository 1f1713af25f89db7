"""The VoIP provider (carrier) use cases: add one, list them, read one, change one, remove
one (deleted when nothing names it, else disabled), test its credentials against its carrier
(without placing a call, where the carrier allows it).

Credentials and the webhook secret are sealed by the repository and never read back here:
a provider as returned says only whether it has them. A credential is best a reference,
``env:NAME`` (the engine's environment) or ``file:/path`` (a secret file), resolved when the
carrier is reached; a reference that cannot be one is refused naming the field.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import uuid
from collections.abc import Mapping
from typing import Any

from engine.app.ports import Carriers
from engine.domain.providers import ProviderType
from engine.domain.sip_trunk import parse_sip_trunk_config
from engine.errors import (
    CarrierAuthFailed,
    CarrierError,
    CarrierUnsupported,
    ConfigError,
    FeatureUnavailable,
    InvalidInput,
    NotFound,
)
from engine.store.records import NewProvider, ProviderChanges, StoredProvider, Tenant
from engine.store.repositories import Store

__all__ = [
    "AddProvider",
    "CredentialsCheck",
    "CredentialsOutcome",
    "ProviderService",
    "check_credential_refs",
]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_credential_refs(credentials: Mapping[str, Any]) -> None:
    """InvalidInput naming ``credentials.<name>`` for a value that is not a non-empty
    string, or a malformed ``env:``/``file:`` reference (the value is never echoed)."""
    for name, value in credentials.items():
        field = f"credentials.{name}"
        if not isinstance(value, str) or not value:
            raise InvalidInput(field, "must be a non-empty string")
        if value.startswith("env:") and not _ENV_NAME.fullmatch(value[4:]):
            raise InvalidInput(field, "env: must name an environment variable (env:NAME)")
        if value.startswith("file:") and not value[5:].startswith("/"):
            raise InvalidInput(field, "file: must name an absolute path (file:/path)")


class CredentialsOutcome(enum.StrEnum):
    OK = "ok"  # the carrier accepted the credentials
    REFUSED = "refused"  # the carrier refused them (401/403)
    UNSUPPORTED = "unsupported"  # the carrier offers no check without placing a call
    UNREACHABLE = "unreachable"  # no usable answer (timeout, 5xx, another error)
    MISCONFIGURED = "misconfigured"  # the row lacks what the adapter needs


@dataclasses.dataclass(frozen=True, slots=True)
class CredentialsCheck:
    outcome: CredentialsOutcome
    detail: str


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
    weight: int = 1  # the share of calls among providers of equal priority


class ProviderService:
    def __init__(self, store: Store, carriers: Carriers | None = None) -> None:
        self._store = store
        self._carriers = carriers

    async def check_credentials(self, tenant: Tenant, provider_id: uuid.UUID) -> CredentialsCheck:
        """Ask the provider's carrier whether it accepts the credentials (no call is placed;
        an error message never carries a credential)."""
        if self._carriers is None:
            raise FeatureUnavailable("carrier adapters are not available in this process")
        provider = await self._store.providers.get(tenant.id, provider_id)
        if provider.provider_type in (ProviderType.ASTERISK, ProviderType.SIP_TRUNK):
            return CredentialsCheck(
                CredentialsOutcome.UNSUPPORTED, "carried by the local Asterisk: see ctc doctor"
            )
        secrets = await self._store.providers.secrets(tenant.id, provider_id)
        try:
            adapter = self._carriers.adapter(provider, secrets)
            await adapter.check_credentials()
        except (ConfigError, InvalidInput) as exc:
            return CredentialsCheck(CredentialsOutcome.MISCONFIGURED, str(exc))
        except CarrierAuthFailed as exc:
            return CredentialsCheck(CredentialsOutcome.REFUSED, str(exc))
        except CarrierUnsupported as exc:
            return CredentialsCheck(CredentialsOutcome.UNSUPPORTED, str(exc))
        except CarrierError as exc:
            return CredentialsCheck(CredentialsOutcome.UNREACHABLE, str(exc))
        return CredentialsCheck(CredentialsOutcome.OK, f"{provider.provider_type}: accepted")

    async def by_name(self, tenant: Tenant, name: str) -> StoredProvider:
        """The tenant's provider named ``name`` (NotFound otherwise)."""
        for provider in await self._store.providers.all(tenant.id):
            if provider.name == name:
                return provider
        raise NotFound("provider", name)

    async def create(self, tenant: Tenant, request: AddProvider) -> StoredProvider:
        """Add a provider (Conflict when the tenant has one of that name)."""
        check_credential_refs(request.credentials)
        if request.provider_type == ProviderType.SIP_TRUNK:
            parse_sip_trunk_config(request.config)  # InvalidInput naming the config field
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
            weight=request.weight,
        )
        return await self._store.providers.create(new)

    async def update(
        self, tenant: Tenant, provider_id: uuid.UUID, changes: ProviderChanges
    ) -> StoredProvider:
        """Change a provider (NotFound for another tenant's): only what ``changes`` sets."""
        if changes.credentials is not None:
            check_credential_refs(changes.credentials)
        return await self._store.providers.update(tenant.id, provider_id, changes)

    async def remove(self, tenant: Tenant, provider_id: uuid.UUID) -> bool:
        """Delete the provider if nothing names it, else disable it; True when deleted."""
        return await self._store.providers.remove(tenant.id, provider_id)

    async def all(self, tenant: Tenant) -> list[StoredProvider]:
        return await self._store.providers.all(tenant.id)

    async def get(self, tenant: Tenant, provider_id: uuid.UUID) -> StoredProvider:
        return await self._store.providers.get(tenant.id, provider_id)

"""The tenant use cases: who a request acts for (by token or by slug), and the tenant and
token administration the CLI and the API do.

A tenant's callback secret is the HMAC key of its callbacks. It is shown once, when it is
made (at creation and at each rotation), and never again: only who holds it can verify a
callback. A rotation keeps the previous secret signing beside the new one for a grace
period, so the ERP can change its verifier without refusing a callback.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Final

from engine.app.stats import check_timezone
from engine.errors import InvalidInput
from engine.store.records import ApiTokenInfo, IssuedToken, SecretRotation, Tenant
from engine.store.repositories import Store
from engine.store.tenants import new_callback_secret

__all__ = ["DEFAULT_SECRET_GRACE", "MAX_SECRET_GRACE", "CreatedTenant", "TenantService"]

DEFAULT_SECRET_GRACE: Final = 86_400.0
"""Seconds the previous callback secret keeps signing after a rotation (one day)."""
MAX_SECRET_GRACE: Final = 30 * 86_400.0


@dataclasses.dataclass(frozen=True, slots=True)
class CreatedTenant:
    tenant: Tenant
    callback_secret: str  # shown once, to give to the ERP


class TenantService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def by_token(self, token: str) -> Tenant | None:
        """The active tenant a valid, unrevoked token belongs to, else None."""
        return await self._store.tenants.by_token(token)

    async def by_slug(self, slug: str) -> Tenant:
        """The tenant (NotFound otherwise)."""
        return await self._store.tenants.by_slug(slug)

    async def create(
        self,
        slug: str,
        name: str,
        callback_url: str | None = None,
        *,
        allow_cidrs: tuple[str, ...] = (),
    ) -> CreatedTenant:
        """A new tenant and its callback secret; InvalidInput for a CIDR that is not one or
        a refused URL."""
        secret = new_callback_secret()
        tenant = await self._store.tenants.create(
            slug, name, callback_url, allow_cidrs=allow_cidrs, callback_secret=secret
        )
        return CreatedTenant(tenant, secret)

    async def rotate_callback_secret(
        self, slug: str, *, grace_seconds: float = DEFAULT_SECRET_GRACE
    ) -> SecretRotation:
        """A new callback secret for tenant ``slug``; the current one keeps signing beside
        it for ``grace_seconds`` (0 to 30 days; 0 drops it at once)."""
        if not 0 <= grace_seconds <= MAX_SECRET_GRACE:
            raise InvalidInput(
                "grace_seconds", f"must be between 0 and {MAX_SECRET_GRACE:.0f} (30 days)"
            )
        return await self._store.tenants.rotate_callback_secret(slug, grace_seconds=grace_seconds)

    async def tokens(self, tenant: Tenant) -> list[ApiTokenInfo]:
        """The tenant's API tokens, newest first (revoked ones too)."""
        return await self._store.tenants.tokens(tenant.id)

    async def revoke_token(self, tenant: Tenant, token_id: uuid.UUID) -> ApiTokenInfo:
        """Revoke one of the tenant's tokens (NotFound for another tenant's)."""
        return await self._store.tenants.revoke_token(tenant.id, token_id)

    async def update(
        self,
        slug: str,
        *,
        callback_url: str | None = None,
        allow_cidrs: tuple[str, ...] | None = None,
        timezone: str | None = None,
    ) -> Tenant:
        """Change what is given, in one step (the URL is checked against the resulting
        networks): ``callback_url`` None keeps it, ``""`` removes it; ``allow_cidrs`` None
        keeps the list, a tuple replaces it (``()`` empties it); ``timezone`` (an IANA
        zone: the stats' hours and days) None keeps it."""
        changes: dict[str, Any] = {}
        if timezone is not None:
            changes["timezone"] = check_timezone(timezone)
        if callback_url is not None:
            changes["callback_url"] = callback_url or None
        if allow_cidrs is not None:
            changes["allow_cidrs"] = allow_cidrs
        return await self._store.tenants.update(slug, **changes)

    async def issue_token(self, slug: str, name: str = "") -> IssuedToken:
        """A new bearer token for the tenant; only its hash is kept."""
        return await self._store.tenants.issue_token(slug, name)

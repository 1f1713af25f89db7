"""The tenant use cases: who a request acts for (by token or by slug), and the tenant and
token administration the CLI does."""

from __future__ import annotations

from typing import Any

from engine.app.stats import check_timezone
from engine.store.records import IssuedToken, Tenant
from engine.store.repositories import Store

__all__ = ["TenantService"]


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
    ) -> Tenant:
        """A new tenant; InvalidInput for a CIDR that is not one or a refused URL."""
        return await self._store.tenants.create(slug, name, callback_url, allow_cidrs=allow_cidrs)

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

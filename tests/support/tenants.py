"""A tenant of its own for each test, and the headers that act as it.

Tests share one database per run; a tenant with a random slug keeps each test's rows apart.
Over the Unix socket a request names its tenant (``X-CTC-Tenant``); over TCP it presents a
bearer token.
"""

from __future__ import annotations

import uuid

from engine.store.records import Tenant
from engine.store.repositories import Store

__all__ = ["bearer_headers", "new_tenant", "new_token", "tenant_headers"]


async def new_tenant(
    store: Store,
    *,
    prefix: str = "t",
    name: str | None = None,
    callback_url: str | None = None,
    allow_cidrs: tuple[str, ...] = (),
) -> Tenant:
    """A new tenant ``<prefix><random>`` (named as its slug upper-cased unless ``name``)."""
    slug = f"{prefix}{uuid.uuid4().hex[:10]}"
    return await store.tenants.create(
        slug, slug.upper() if name is None else name, callback_url, allow_cidrs=allow_cidrs
    )


async def new_token(store: Store, *, prefix: str = "t", name: str = "probe") -> str:
    """A bearer token of a new tenant."""
    tenant = await new_tenant(store, prefix=prefix)
    return (await store.tenants.issue_token(tenant.slug, name)).token


def tenant_headers(slug: str, **more: str) -> dict[str, str]:
    """Headers of a request over the Unix socket acting as tenant ``slug``."""
    return {"X-CTC-Tenant": slug, **more}


def bearer_headers(token: str) -> dict[str, str]:
    """Headers of a request over TCP presenting ``token``."""
    return {"Authorization": f"Bearer {token}"}

"""Calls driven over the API without Asterisk, as an ERP driving a carrier call would.

With ARI off nothing dials a call: the API stores it (``queued``) and ``PATCH …/status``
moves it on. Tests that need a call in some state get there with :func:`place_call`
(their own tenant) or :func:`session_in` (a new tenant).
"""

from __future__ import annotations

from typing import Any

from engine.store.repositories import Store
from tests.support.http import Api
from tests.support.tenants import new_tenant, tenant_headers

__all__ = ["C2C", "CONNECT", "initiate_body", "move_call", "place_call", "session_in"]

C2C = "/api/v1/click-to-call"

CONNECT = ("dialing_agent", "agent_answered", "dialing_customer", "connected")
"""The statuses that take a click-to-call from queued to connected."""


def initiate_body(**extra: Any) -> dict[str, Any]:
    """The body of ``POST …/initiate``: agent 1001 calls +14155550100, with ``extra``."""
    return {"agent_number": "1001", "customer_number": "+14155550100", **extra}


async def place_call(api: Api, slug: str, *statuses: str) -> str:
    """Initiate a call as tenant ``slug`` and move it through ``statuses``; its session id."""
    status, body, _ = await api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(), headers=tenant_headers(slug)
    )
    assert status == 202, body
    session_id: str = body["id"]
    await move_call(api, slug, session_id, *statuses)
    return session_id


async def move_call(api: Api, slug: str, session_id: str, *statuses: str) -> None:
    """Move tenant ``slug``'s call through ``statuses`` (``PATCH …/status``, each a 200)."""
    for target in statuses:
        status, body, _ = await api.call(
            "PATCH",
            f"{C2C}/sessions/{session_id}/status",
            json={"status": target},
            headers=tenant_headers(slug),
        )
        assert status == 200, body


async def session_in(store: Store, api: Api, *statuses: str) -> tuple[str, str]:
    """A new tenant with one call moved through ``statuses``; (tenant slug, session id)."""
    tenant = await new_tenant(store)
    return tenant.slug, await place_call(api, tenant.slug, *statuses)

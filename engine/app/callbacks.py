"""The callback outbox as the admin and the ERP see it: which callbacks failed, and sending
them again.

A callback that failed ``callbacks.max_attempts`` times (or whose destination the network
policy refuses) is ``dead``: the notifier no longer tries it, and it no longer holds the
session's later callbacks back. Once the ERP is reachable again, a replay makes such rows
``pending`` with a fresh attempt count; the body and ``X-CTC-Event-Id`` are the same as the
first time, so an ERP that did receive one after all de-duplicates it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Final

from engine.errors import InvalidInput
from engine.store.records import StoredCallback, Tenant
from engine.store.repositories import Store

__all__ = ["CALLBACK_STATES", "MAX_LISTED", "CallbackService"]

CALLBACK_STATES: Final = ("pending", "delivered", "dead")
MAX_LISTED: Final = 1000


class CallbackService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def listing(
        self,
        tenant: Tenant | None,
        *,
        states: Sequence[str] = (),
        session_id: uuid.UUID | None = None,
        limit: int = 50,
    ) -> list[StoredCallback]:
        """Callbacks newest first, of ``tenant`` (None: every tenant, the CLI's admin
        view), in ``states`` (empty: any)."""
        for state in states:
            if state not in CALLBACK_STATES:
                raise InvalidInput("state", f"{state!r} is not one of {', '.join(CALLBACK_STATES)}")
        if not 1 <= limit <= MAX_LISTED:
            raise InvalidInput("limit", f"must be between 1 and {MAX_LISTED}")
        return await self._store.outbox.listing(
            tenant_id=None if tenant is None else tenant.id,
            states=states,
            session_id=session_id,
            limit=limit,
        )

    async def replay(
        self, tenant: Tenant | None, ids: Sequence[int] = (), *, all_dead: bool = False
    ) -> list[StoredCallback]:
        """Send callbacks ``ids`` (dead or delivered) again, or every dead one with
        ``all_dead``; of ``tenant`` (None: any tenant). The rows made pending."""
        if not ids and not all_dead:
            raise InvalidInput("ids", "name at least one callback id, or all dead ones")
        return await self._store.outbox.replay(
            ids, tenant_id=None if tenant is None else tenant.id, all_dead=all_dead
        )

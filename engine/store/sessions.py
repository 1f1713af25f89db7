"""Call sessions: the one repository the rest of the engine reads and changes them through.

A session's current state and its changes go to the writer that owns it
(:class:`~engine.store.ownership.SessionOwnership`: the write-behind journal for the live
calls this process opened, write-through for the rest). Listings, event history and stats
span many sessions and read PostgreSQL (:class:`~engine.store.session_queries.SessionQueries`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.domain.call import CallStatus
from engine.domain.event_types import CallEventType
from engine.store.database import Database
from engine.store.ownership import SessionOwnership
from engine.store.records import CallEvent, NewSession, StoredSession, writable_changes
from engine.store.session_queries import SessionQueries

__all__ = ["SessionRepository"]


class SessionRepository(SessionQueries):
    """Sessions: one session's state and changes from its owner; listings, history and stats
    (inherited from :class:`SessionQueries`) from PostgreSQL."""

    def __init__(self, db: Database, ownership: SessionOwnership) -> None:
        super().__init__(db)
        self._ownership = ownership

    def open_live(
        self, new: NewSession, *, tenant_callback_url: str | None = None
    ) -> StoredSession:
        """A queued session owned by the journal from now on (no idempotency key)."""
        session, _ = self._ownership.journal.take(new, tenant_callback_url=tenant_callback_url)
        return session

    async def create(self, new: NewSession) -> tuple[StoredSession, bool]:
        """Store a queued session, written through; return it and whether this call created
        it (an idempotency key's repeat returns the first session, see
        :meth:`~engine.store.write_through.WriteThrough.create`)."""
        return await self._ownership.write_through.create(new)

    async def by_id(self, session_id: uuid.UUID) -> StoredSession | None:
        """A session of any tenant: for telephony events, which carry no tenant."""
        return await self._ownership.owner(session_id).by_id(session_id)

    async def get(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> StoredSession:
        return await self._ownership.owner(session_id).get(tenant_id, session_id)

    async def transition(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        target: CallStatus,
        *,
        event_type: CallEventType = CallEventType.STATUS_CHANGED,
        payload: Mapping[str, Any] | None = None,
        changes: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> tuple[StoredSession, CallEvent]:
        """Move a session to ``target`` if the state machine allows it (else
        IllegalTransition), with its event and, if a callback URL applies, its callback."""
        return await self._ownership.owner(session_id).transition(
            tenant_id,
            session_id,
            target,
            event_type=event_type,
            payload=payload,
            changes=writable_changes(changes),
            at=at,
        )

    async def append_event(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        event_type: CallEventType,
        *,
        payload: Mapping[str, Any] | None = None,
        changes: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> tuple[StoredSession, CallEvent]:
        """Record a telephony fact that is not a status change (DTMF, recording, ...)."""
        return await self._ownership.owner(session_id).append_event(
            tenant_id,
            session_id,
            event_type,
            payload=payload,
            changes=writable_changes(changes),
            at=at,
        )

"""Call sessions: the one repository the rest of the engine reads and changes them through.

A session's current state and its changes go to the writer that owns it
(:class:`~engine.store.ownership.SessionOwnership`: the write-behind journal for the live
calls this process opened or adopted, write-through for the rest). Listings, event history and stats
span many sessions and read PostgreSQL (:class:`~engine.store.session_queries.SessionQueries`).

Every session this process creates and every status change passes here, so this is where
``ctc_calls_total`` and ``ctc_calls_active`` are counted (:attr:`SessionRepository.calls`,
set by the daemon; none in tools and most tests), by the door the call came through.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from engine.domain.call import CallStatus, Direction
from engine.domain.event_types import CallEventType
from engine.errors import StoreError
from engine.metrics import CallMetrics, Door
from engine.store.database import Database
from engine.store.guards import CreateGuard
from engine.store.ownership import SessionOwnership
from engine.store.records import CallEvent, NewSession, StoredSession, writable_changes
from engine.store.session_queries import SessionQueries
from engine.store.write_through import SessionBatch

__all__ = ["SessionRepository", "door_of"]


def door_of(session: StoredSession) -> Door:
    """How the call came to the engine (the ``door`` label): an inbound IVR call's door is
    on its metadata (``ari``, ``agi``: engine/app/ivr_calls.py puts it there)."""
    match session.direction:
        case Direction.CLICK_TO_CALL:
            return "click_to_call"
        case Direction.OUTBOUND:
            return "outbound"
        case Direction.INBOUND:
            match session.metadata.get("door"):
                case "ari":
                    return "ari"
                case "agi":
                    return "agi"
    return "other"


class SessionRepository(SessionQueries):
    """Sessions: one session's state and changes from its owner; listings, history and stats
    (inherited from :class:`SessionQueries`) from PostgreSQL."""

    def __init__(self, db: Database, ownership: SessionOwnership) -> None:
        super().__init__(db)
        self._ownership = ownership
        self.calls: CallMetrics | None = None

    def _taken(self, session: StoredSession) -> None:
        if self.calls is not None:
            self.calls.taken(session.id, door_of(session))

    def open_live(
        self, new: NewSession, *, tenant_callback_url: str | None = None
    ) -> StoredSession:
        """A queued session owned by the journal from now on (no idempotency key)."""
        session, _ = self._ownership.journal.take(new, tenant_callback_url=tenant_callback_url)
        self._taken(session)
        return session

    async def create(
        self,
        new: NewSession,
        *,
        tenant_callback_url: str | None = None,
        guard: CreateGuard | None = None,
    ) -> tuple[StoredSession, bool]:
        """Store a new session, written through; return it and whether this call created
        it (an idempotency key's repeat returns the first session as its owner has it now;
        ``guard``: what its insert decides under a lock, stored ``rejected`` at once when
        refused; see :meth:`~engine.store.write_through.WriteThrough.create`)."""
        session, created = await self._ownership.write_through.create(
            new, tenant_callback_url=tenant_callback_url, guard=guard
        )
        if created:
            self._taken(session)
            if session.status.is_terminal and self.calls is not None:  # refused: stored ended
                self.calls.entered(session.id, door_of(session), session.status)
        if not created and self._ownership.written_behind(session.id):
            session = await self._ownership.journal.get(session.tenant_id, session.id)
        return session, created

    def adopt(self, session: StoredSession, *, tenant_callback_url: str | None = None) -> None:
        """Hand a live session PostgreSQL has to the journal (written behind from now on)
        until :meth:`release` after its end."""
        self._ownership.journal.adopt(session, tenant_callback_url=tenant_callback_url)

    async def take_over(self, session_id: uuid.UUID) -> StoredSession | None:
        """The session as its owner has it now. One PostgreSQL holds live and the journal
        does not own yet (a click-to-call of an engine that stopped, found by the resync)
        is read afresh and adopted, until :meth:`release`."""
        if self._ownership.written_behind(session_id):
            return await self._ownership.journal.by_id(session_id)
        found = await self._ownership.write_through.with_tenant_callback_url(session_id)
        if found is None:
            return None
        session, tenant_url = found
        if not session.status.is_terminal:
            self._ownership.journal.adopt(session, tenant_callback_url=tenant_url)
        return session

    def release(self, session_id: uuid.UUID) -> None:
        """An adopted session's facts are over once it has ended: the journal lets it go
        then (it is written through again after its last batch)."""
        self._ownership.journal.release(session_id)

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
        session, event = await self._ownership.owner(session_id).transition(
            tenant_id,
            session_id,
            target,
            event_type=event_type,
            payload=payload,
            changes=writable_changes(changes),
            at=at,
        )
        if self.calls is not None:
            self.calls.entered(session.id, door_of(session), session.status)
        return session, event

    @contextlib.asynccontextmanager
    async def batch(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID
    ) -> AsyncIterator[SessionBatch]:
        """The session locked in one transaction for several changes and the caller's own
        writes on ``batch.conn`` (all kept, or none). Only for a session written through:
        one the journal owns here raises StoreError (its changes are in memory)."""
        if self._ownership.written_behind(session_id):
            raise StoreError(f"session {session_id} is written behind: no batch of changes")
        async with self._ownership.write_through.batch(tenant_id, session_id) as batch:
            yield batch
        if self.calls is not None:
            self.calls.entered(batch.session.id, door_of(batch.session), batch.session.status)

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

"""Which writer owns a session: the journal (write-behind) or write-through.

A session has exactly one writer at a time, and every read of its current state and every
change goes to that writer:

- the :class:`~engine.store.journal.CallJournal` owns the live sessions this process opened
  with :meth:`~engine.store.sessions.SessionRepository.open_live` (inbound IVR calls) or
  adopted with :meth:`~engine.store.sessions.SessionRepository.adopt` (click-to-calls, once
  created): their state is in memory and written behind in batches;
- :class:`~engine.store.write_through.WriteThrough` owns every other session (click-to-calls
  of an engine without ARI, and any session the journal has let go once its last batch is
  committed): each change is one PostgreSQL transaction.

:class:`SessionOwnership` is that choice, made in one place; both writers offer the
:class:`SessionOwner` methods, so callers never branch on who owns a session.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from engine.domain.call import CallStatus
from engine.domain.event_types import CallEventType
from engine.store.journal import CallJournal
from engine.store.records import CallEvent, StoredSession
from engine.store.write_through import WriteThrough

__all__ = ["SessionOwner", "SessionOwnership"]


class SessionOwner(Protocol):
    """What the writer that owns a session answers: its state, and changes to it.

    ``changes`` are already checked (:func:`~engine.store.records.writable_changes`).
    """

    async def by_id(self, session_id: uuid.UUID) -> StoredSession | None: ...

    async def get(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> StoredSession: ...

    async def transition(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        target: CallStatus,
        *,
        event_type: CallEventType,
        payload: Mapping[str, Any] | None,
        changes: Mapping[str, Any],
        at: datetime | None,
    ) -> tuple[StoredSession, CallEvent]: ...

    async def append_event(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        event_type: CallEventType,
        *,
        payload: Mapping[str, Any] | None,
        changes: Mapping[str, Any],
        at: datetime | None,
    ) -> tuple[StoredSession, CallEvent]: ...


class SessionOwnership:
    """The writer of each session: the journal for the live sessions it holds, else
    write-through."""

    def __init__(self, journal: CallJournal, write_through: WriteThrough) -> None:
        self.journal = journal
        self.write_through = write_through

    def written_behind(self, session_id: uuid.UUID) -> bool:
        """Whether the journal owns the session (its rows, DTMF included, go in batches)."""
        return self.journal.owns(session_id)

    def owner(self, session_id: uuid.UUID) -> SessionOwner:
        if self.written_behind(session_id):
            return self.journal
        return self.write_through

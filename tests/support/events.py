"""Call events built in memory, for the tests of what carries them (bus, SSE) without a store.

Two tenants and two sessions, their ids fixed for the run, so a test can filter by them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from engine.store.records import CallEvent

__all__ = ["SESSION_1", "SESSION_2", "TENANT_1", "TENANT_2", "call_event"]

TENANT_1, TENANT_2 = uuid.uuid4(), uuid.uuid4()
SESSION_1, SESSION_2 = uuid.uuid4(), uuid.uuid4()


def call_event(
    event_id: int, *, tenant: uuid.UUID = TENANT_1, session: uuid.UUID = SESSION_1, seq: int = 1
) -> CallEvent:
    """A ``status.changed`` event (queued -> canceled) whose payload holds a newline."""
    return CallEvent(
        id=event_id,
        tenant_id=tenant,
        session_id=session,
        seq=seq,
        event_type="status.changed",
        status_from="queued",
        status_to="canceled",
        payload={"note": "two\nlines"},
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )

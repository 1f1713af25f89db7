"""Ending a session in the store alone: what the API's end does when no telephony carries
the call (the ERP drives it), and after a carrier has hung up its call."""

from __future__ import annotations

from engine.domain.call import CallStatus
from engine.domain.event_types import CallEventType
from engine.store.records import StoredSession
from engine.store.repositories import Store

__all__ = ["end_in_store"]


async def end_in_store(
    store: Store, session: StoredSession, reason: str, *, source: str = "api"
) -> StoredSession:
    """End ``session``: ``completed`` once connected, ``canceled`` before (IllegalTransition
    when it has ended already)."""
    target = CallStatus.COMPLETED if session.status is CallStatus.CONNECTED else CallStatus.CANCELED
    ended, _ = await store.sessions.transition(
        session.tenant_id,
        session.id,
        target,
        event_type=CallEventType.SESSION_ENDED,
        payload={"source": source, "reason": reason},
        changes={"end_reason": reason},
    )
    return ended

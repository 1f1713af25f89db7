"""What outbound calls do to their agent's state: the ``agent_activity_log`` rows of
click-to-calls and agent-dialled calls, like those an IVR offer writes.

Why from the event bus: a click-to-call's agent is reserved (``ringing``) by the call's own
insert (:meth:`engine.app.calls.CallService.initiate`, under the agent's lock), but its
answer and end are facts of the call flow, written behind by the journal. Listening to the
committed events keeps those flows as they are and writes the rows only once the session's
row exists (the log refers to it): ``agent_answered`` → ``on_call``; the call's end →
``wrap_up`` for the tenant's wrap-up time when the agent talked, else ``available``. So the
log alone tells each agent's whole day and occupancy computed from it counts these calls.

Inbound IVR calls are not this module's: their offers and answers are logged where the
IVR decides them (:mod:`engine.app.ivr_calls`). A refused call reserved nobody. An event
says its session's direction and agent when the engine that wrote it knew them (the
journal's and write-through's do), so an IVR call's end costs no read of its session here;
an event without them is checked against the session.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final, TypeAlias

from engine.app.agent_states import AgentStateService
from engine.app.event_worker import EventWorker
from engine.domain.call import CallStatus, Direction
from engine.events import EventBus
from engine.store.records import CallEvent, NewActivity
from engine.store.repositories import Store

__all__ = ["AgentCallRecorder"]

_OUTBOUND: Final = frozenset({Direction.CLICK_TO_CALL, Direction.OUTBOUND})
_BATCH_WINDOW: Final = 0.1
"""How long the recorder gathers facts before it logs them together (one statement per
batch instead of one per row; a row is written that much later, stamped with its fact's
time, so a state the ERP reported meanwhile stays the newest)."""
_MAX_ANSWERED: Final = 100_000

_Fact: TypeAlias = tuple[uuid.UUID, uuid.UUID, CallStatus, datetime]
"""tenant, session, the status the call reached, when."""


class AgentCallRecorder(EventWorker[_Fact]):
    """Logs each outbound call's agent ``on_call`` at its answer and ``wrap_up`` (or
    ``available``) at its end (:class:`~engine.app.event_worker.EventWorker`: queued by a
    listener, written in order by one task, the facts within ``batch_window`` of each
    other in one statement). A row that cannot be written is logged
    (``agent_calls.failed``); the state then comes from the session, as the board reads
    both."""

    def __init__(
        self,
        store: Store,
        events: EventBus,
        *,
        max_queue: int = 10_000,
        close_grace: float = 5.0,
        batch_window: float = _BATCH_WINDOW,
    ) -> None:
        super().__init__(
            events,
            name="agent_calls",
            max_queue=max_queue,
            close_grace=close_grace,
            batch_window=batch_window,
        )
        self._store = store
        self._agents = AgentStateService(store)
        # the agent of each outbound call whose answer was logged, until its end: the end's
        # row needs no read of the session (by then mostly PostgreSQL's, the journal let it go)
        self._answered: dict[uuid.UUID, str] = {}

    def _wanted(self, event: CallEvent) -> _Fact | None:
        if event.status_to is None:
            return None
        status = CallStatus(event.status_to)
        if status is not CallStatus.AGENT_ANSWERED and not status.is_terminal:
            return None
        if status is CallStatus.REJECTED:
            return None  # never dialled: nobody was reserved
        if event.direction is not None and (event.direction not in _OUTBOUND or not event.agent):
            return None  # the event says so: no agent of an outbound call (no read to know)
        return event.tenant_id, event.session_id, status, event.occurred_at

    async def _handle(self, item: _Fact) -> None:
        await self._agents.log(await self._rows(*item))

    async def _handle_many(self, items: list[_Fact]) -> None:
        rows: list[NewActivity] = []
        for item in items:
            rows.extend(await self._rows(*item))
        await self._agents.log(rows)

    async def _rows(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, status: CallStatus, at: datetime
    ) -> list[NewActivity]:
        if status is not CallStatus.AGENT_ANSWERED:
            answered = self._answered.pop(session_id, None)
            if answered is not None:
                return [await self._agents.ended_row(tenant_id, answered, session_id, at)]
        session = await self._store.sessions.get(tenant_id, session_id)
        agent = session.agent_id or session.agent_number
        if session.direction not in _OUTBOUND or not agent:
            return []
        # the ringing row is the insert's, on PostgreSQL's clock: the end never goes before it
        at = max(at, session.created_at)
        if status is CallStatus.AGENT_ANSWERED:
            if len(self._answered) >= _MAX_ANSWERED:
                self._answered.clear()  # bounded: an end never heard here (failover) is read
            self._answered[session_id] = agent
            answered_at = session.agent_answered_at or at
            return [self._agents.on_call_row(tenant_id, agent, session_id, answered_at)]
        if session.agent_answered_at is not None:
            return [await self._agents.ended_row(tenant_id, agent, session_id, at)]
        return [self._agents.available_row(tenant_id, agent, session_id, at)]

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
IVR decides them (:mod:`engine.app.ivr_calls`). A refused call reserved nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Final

import structlog

from engine.app.agent_states import AgentStateService
from engine.domain.call import CallStatus, Direction
from engine.errors import CtcError
from engine.events import EventBus
from engine.lifecycle import Lifecycle
from engine.store.records import CallEvent
from engine.store.repositories import Store

__all__ = ["AgentCallRecorder"]

log = structlog.get_logger(__name__)

_OUTBOUND: Final = frozenset({Direction.CLICK_TO_CALL, Direction.OUTBOUND})


class AgentCallRecorder(Lifecycle):
    """Logs each outbound call's agent ``on_call`` at its answer and ``wrap_up`` (or
    ``available``) at its end: a listener on the event bus queues the facts, one task
    writes them in order. A row that cannot be written is logged (``agents.log_failed``);
    the state then comes from the session, as the board reads both."""

    def __init__(
        self, store: Store, events: EventBus, *, max_queue: int = 10_000, close_grace: float = 5.0
    ) -> None:
        self._store = store
        self._agents = AgentStateService(store)
        self._events = events
        self._queue: asyncio.Queue[tuple[uuid.UUID, uuid.UUID, CallStatus]] = asyncio.Queue(
            max_queue
        )
        self._close_grace = close_grace
        self._task: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self.written = 0  # rows logged
        self.failed = 0  # facts that could not be logged (logged as errors)

    async def _open(self) -> None:
        self._unlisten = self._events.add_listener(self._on_event)
        self._task = asyncio.get_running_loop().create_task(self._work(), name="agent-calls")

    def _on_event(self, event: CallEvent) -> None:
        if event.status_to is None:
            return
        status = CallStatus(event.status_to)
        if status is not CallStatus.AGENT_ANSWERED and not status.is_terminal:
            return
        if status is CallStatus.REJECTED:
            return  # never dialled: nobody was reserved
        try:
            self._queue.put_nowait((event.tenant_id, event.session_id, status))
        except asyncio.QueueFull:
            self.failed += 1
            log.error("agents.log_failed", call_id=str(event.session_id), error="queue full")

    async def idle(self) -> None:
        """Return once every fact queued so far is logged (tests, shutdown)."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            tenant_id, session_id, status = await self._queue.get()
            try:
                await self._log(tenant_id, session_id, status)
            except CtcError as exc:
                self.failed += 1
                log.error("agents.log_failed", call_id=str(session_id), error=str(exc))
            except Exception:  # a bug: logged with its traceback, the recorder goes on
                self.failed += 1
                log.exception("agents.log_failed", call_id=str(session_id))
            finally:
                self._queue.task_done()

    async def _log(self, tenant_id: uuid.UUID, session_id: uuid.UUID, status: CallStatus) -> None:
        session = await self._store.sessions.get(tenant_id, session_id)
        agent = session.agent_id or session.agent_number
        if session.direction not in _OUTBOUND or not agent:
            return
        if status is CallStatus.AGENT_ANSWERED:
            at = session.agent_answered_at
            await self._agents.answered(tenant_id, agent, session_id, at)
        elif session.agent_answered_at is not None:
            await self._agents.call_ended(tenant_id, agent, session_id)
        else:
            await self._agents.not_answered(tenant_id, [agent], session_id)
        self.written += 1

    async def _close(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), self._close_grace)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self._queue.empty():
            log.error("agents.closed_with_queue", facts=self._queue.qsize())

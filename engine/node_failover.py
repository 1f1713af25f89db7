"""Owner failover: the live calls of an engine that stopped heartbeating are finished by a
surviving one, never left non-terminal.

Why a grace period: when only a node's engine dies, its Asterisk keeps the calls and the
engine's restart re-adopts them (the resync); only a node silent for longer than
``node.failover_after`` (longer than a restart) is given up. Then its live sessions are
taken by exactly one surviving engine
(:meth:`~engine.store.claims.ClaimRepository.take_lost`, ``SKIP LOCKED``), each ended
``failed`` with end_reason ``node_lost`` and a ``session.owner_lost`` event saying which
node stopped when and who ended it, its callback sent like any other end. Its queued
click-to-calls that were claimed and never handed to a dialer go back to the queue when
``node.claim_queue`` is on (another engine dials them); a queued call that may have been
dialled (handed over, or dialled at once by its own initiate) is ended the same way, never
dialled a second time. A session taken and not yet
ended when this engine dies is its own: its restart's resync finds no channel and ends it.

Runs every ``interval`` seconds on every engine, the first an interval after start; nothing
to do costs one query. A failed run (PostgreSQL away) is logged and the next one retries.
"""

from __future__ import annotations

from typing import Final

import structlog

from engine.config.settings import NodeSettings
from engine.domain.call import CallStatus, Direction
from engine.domain.event_types import CallEventType
from engine.errors import CtcError, describe
from engine.periodic import Periodic
from engine.store.claims import LostCall
from engine.store.repositories import Store

__all__ = ["END_REASON", "NodeFailover"]

log = structlog.get_logger(__name__)

END_REASON: Final = "node_lost"
_BATCH: Final = 100


class NodeFailover(Periodic):
    def __init__(self, store: Store, settings: NodeSettings, *, interval: float = 5.0) -> None:
        super().__init__("node_failover", interval=interval, log_fields={"node": settings.name})
        self._store = store
        self._settings = settings
        self.ended = 0  # sessions of dead nodes this engine ended, for tests
        self.requeued = 0  # queued calls of dead nodes it handed back to the queue

    @property
    def node(self) -> str:
        return self._settings.name

    async def run_once(self) -> int:
        """Take and finish the live sessions of dead nodes; how many were taken."""
        total = 0
        while True:
            lost = await self._store.claims.take_lost(
                self.node, self._settings.failover_after, _BATCH
            )
            for call in lost:
                await self._finish(call)
            total += len(lost)
            if len(lost) < _BATCH:
                return total

    async def _finish(self, call: LostCall) -> None:
        session = call.session
        queued_call = (
            session.status is CallStatus.QUEUED and session.direction is Direction.CLICK_TO_CALL
        )
        requeue = queued_call and self._settings.claim_queue
        if requeue and await self._store.claims.requeue_lost(session.id):
            self.requeued += 1
            log.warning("node.call_requeued", call_id=str(session.id), lost=call.lost_node)
            return
        beat = call.heartbeat_at.isoformat(timespec="seconds")
        reason = (
            f"node {call.lost_node} stopped heartbeating at {beat}; its calls were ended by "
            f"node {self.node}"
        )
        try:
            await self._store.sessions.transition(
                session.tenant_id,
                session.id,
                CallStatus.FAILED,
                event_type=CallEventType.SESSION_OWNER_LOST,
                payload={
                    "node": call.lost_node,
                    "heartbeat_at": call.heartbeat_at.isoformat(),
                    "ended_by": self.node,
                    "reason": reason,
                },
                changes={"end_reason": END_REASON},
            )
        except CtcError as exc:  # ended meanwhile (a late write of its own): nothing to do
            log.warning("node.owner_lost_failed", call_id=str(session.id), error=describe(exc))
            return
        self.ended += 1
        log.warning("node.owner_lost", call_id=str(session.id), lost=call.lost_node)

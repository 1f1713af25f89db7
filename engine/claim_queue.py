"""This engine's claimer: it takes queued calls any engine stored and dials them here
(``node.claim_queue``).

Why: several engines share one database and the ERP talks to one address; a call stored
by any engine's ``initiate`` is dialled by whichever engine has room. The claim
(:meth:`~engine.store.claims.ClaimRepository.claim`, ``FOR UPDATE SKIP LOCKED``) commits
before the call is handed to the :class:`~engine.app.ports.Dialer`, so one engine dials it,
once. The claimer sits in front of ``Dialer.start_call``: the click-to-call flow does not
know whether a call came from its own API or another engine's.

A call this engine's own ``initiate`` receives while it has room and every other engine it
knows is busier (:meth:`ClaimQueue.take_here`; a lone engine always) is not queued: it is
stored as this engine's and dialled at once, with no round through the table.

When it claims: at once when woken by ``NOTIFY ctc_call_queue`` (any engine's insert of an
unclaimed call, its own included: every claimer hears it at the same moment, so an idle
engine elsewhere has the same chance) and every ``tick`` seconds anyway (a lost
notification only delays). Room is ``node.max_calls`` minus this engine's live calls, and
nothing while its Asterisk link is down. A call an HTTP carrier places (Twilio, Exotel…)
loads no node's Asterisk: it is not a live call here, and what bounds it is its provider's
concurrency limit. Spreading: a busier engine waits
``node.claim_yield`` seconds per less-loaded engine (the peers' loads as of the last tick,
load = live calls / max_calls, 1,000 for an engine without a limit) so idle engines claim
first; a lone engine never waits.

Every tick it also hands back to the queue the calls a silent node (no beat for
``node.stale_after``) claimed and had not dialled, and refreshes the peers' loads. A claimed
call older than ``calls.queued_start_deadline`` is failed (``session.start_expired``)
rather than dialled, as a resync does. A failed round (PostgreSQL away) is logged and the
next wake-up or tick retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Final

import structlog

from engine.app.ports import Dialer
from engine.config.settings import NodeSettings
from engine.domain.call import CallStatus
from engine.domain.click_to_call import Start, restart_queued
from engine.domain.event_types import CallEventType
from engine.periodic import Periodic
from engine.store.claims import CHANNEL, ClaimedCall
from engine.store.listener import Listener
from engine.store.records import StoredNode
from engine.store.repositories import Store

__all__ = ["ClaimQueue", "NoLocalClaims", "node_load"]

log = structlog.get_logger(__name__)

_UNLIMITED: Final = 1000  # the room an engine without node.max_calls counts with


def node_load(live_calls: int, max_calls: int | None) -> float:
    """How full a node is, to compare engines: live calls over its limit."""
    return live_calls / (max_calls or _UNLIMITED)


class NoLocalClaims:
    """The queue of an engine that cannot dial (ARI disabled): calls it stores unclaimed
    are the other engines' to claim."""

    def take_here(self) -> bool:
        return False

    def taken(self) -> None:
        """Nothing held: ``take_here`` never says yes."""


class ClaimQueue(Periodic):
    def __init__(
        self,
        store: Store,
        dialer: Dialer,
        settings: NodeSettings,
        *,
        start_deadline: float,
        live_calls: Callable[[], int],
        tick: float = 1.0,
    ) -> None:
        super().__init__("claim_queue", interval=tick, log_fields={"node": settings.name})
        self._store = store
        self._dialer = dialer
        self._settings = settings
        self._deadline = timedelta(seconds=start_deadline)
        self._live_calls = live_calls
        self._peers: list[StoredNode] = []
        self._listener = Listener(store.db.url, {CHANNEL: self._notified}, name="claim-queue")
        self._kept = 0.0  # the loop's time of the last housekeeping (set at start)
        self.claimed = 0  # calls this engine claimed, for tests and metrics
        self.requeued = 0  # calls of silent nodes it handed back to the queue
        self._taking = 0  # calls take_here() said yes to that are not live calls yet

    @property
    def node(self) -> str:
        return self._settings.name

    def take_here(self) -> bool:
        """Whether this engine has room and is strictly the least loaded of the engines
        it knows (a lone engine always is): its own ``initiate`` then dials the call at
        once, as the queue would have given it to this engine anyway."""
        if self.room() <= 0:
            return False
        mine = node_load(self._live_calls() + self._taking, self._settings.max_calls)
        if all(node_load(n.live_calls, n.max_calls) > mine for n in self._peers):
            self._taking += 1  # held until taken(): initiate has awaits before it dials
            return True
        return False

    def taken(self) -> None:
        """The call :meth:`take_here` said yes to is live here now, or was never stored."""
        if self._taking <= 0:
            raise RuntimeError("claim queue: taken() without a take_here() that said yes")
        self._taking -= 1

    def _notified(self, payload: str) -> None:
        self.wake()

    async def _open(self) -> None:
        self._kept = asyncio.get_running_loop().time()
        await self._listener.ensure()
        await super()._open()

    async def _close(self) -> None:
        await super()._close()
        await self._listener.close()

    async def run_once(self) -> int:
        """One round: listen again if the connection is down, housekeeping once a tick
        (however often woken), then :meth:`claim_now`; how many calls it claimed."""
        await self._listener.ensure()
        now = asyncio.get_running_loop().time()
        if now - self._kept >= self._interval:
            self._kept = now
            await self.housekeeping()
        return await self.claim_now()

    async def housekeeping(self) -> None:
        """Hand silent nodes' undialled calls back to the queue; refresh the peers."""
        moved = await self._store.claims.requeue_stale(self.node, self._settings.stale_after)
        if moved:
            self.requeued += moved
            log.warning("claim_queue.requeued", node=self.node, calls=moved)
        self._peers = [
            n
            for n in await self._store.nodes.list()
            if n.name != self.node
            and n.stopped_at is None
            and n.heartbeat_age < self._settings.stale_after
            and n.asterisk == "up"
        ]

    def room(self) -> int:
        """How many more calls this engine takes now (0 while its Asterisk link is down)."""
        if not self._dialer.ready:
            return 0
        limit = self._settings.max_calls
        if limit is None:
            return self._settings.claim_batch
        return max(0, limit - self._live_calls() - self._taking)

    def yield_delay(self) -> float:
        """Seconds to wait before claiming: ``claim_yield`` per less-loaded peer."""
        mine = node_load(self._live_calls(), self._settings.max_calls)
        ahead = sum(1 for n in self._peers if node_load(n.live_calls, n.max_calls) < mine)
        return ahead * self._settings.claim_yield

    async def claim_now(self) -> int:
        """Claim and start queued calls while there is room; how many."""
        if self.room() <= 0:
            return 0
        delay = self.yield_delay()
        if delay > 0:
            await asyncio.sleep(delay)
        total = 0
        while (room := min(self.room(), self._settings.claim_batch)) > 0:
            calls = await self._store.claims.claim(self.node, room)
            for call in calls:
                await self._start(call)
            total += len(calls)
            if len(calls) < room:
                break
        return total

    async def _start(self, call: ClaimedCall) -> None:
        self.claimed += 1
        # committed before the call is handed to the dialer (written through, not behind): a
        # claim without this event was never dialled, so it alone may go back to the queue
        session, _ = await self._store.sessions.append_event(
            call.session.tenant_id,
            call.session.id,
            CallEventType.SESSION_CLAIMED,
            payload={"node": self.node, "queued_ms": call.queued_ms},
        )
        if self._dialer.writes_behind(call.provider_type):  # Asterisk's; a carrier's are not
            self._store.sessions.adopt(session, tenant_callback_url=call.tenant_callback_url)
        fact = restart_queued(timedelta(milliseconds=call.queued_ms), self._deadline)
        if isinstance(fact, Start):
            self._dialer.start_call(session)
            log.info("call.claimed", call_id=str(session.id), queued_ms=call.queued_ms)
            return
        await self._store.sessions.transition(
            session.tenant_id,
            session.id,
            CallStatus.FAILED,
            event_type=CallEventType.SESSION_START_EXPIRED,
            payload={"reason": fact.reason},
            changes={"end_reason": fact.reason[:500]},
        )
        self._store.sessions.release(session.id)
        log.warning("call.claim_expired", call_id=str(session.id), queued_ms=call.queued_ms)

"""The resync: after the ARI event socket (re)connects, make the sessions match Asterisk.

Asterisk neither queues nor replays the events an app missed while its socket was down (the
engine restarting, a network cut, Asterisk restarting). So after every (re)connect the
Stasis app runs :meth:`Resync.run`: it lists Asterisk's channels and bridges, compares them
with the live sessions in PostgreSQL, adopts the calls that still live (carrying on with
what they did unseen: an answer, a transfer target answering), ends those whose channels are
gone (at the time and with the cause Asterisk's hangup handler recorded,
:mod:`engine.asterisk.flows.hangup_records`, else estimated), starts queued calls whose
start was lost, and hangs up or destroys what is ours but belongs to no live session. The
ids it matches are :mod:`engine.asterisk.naming`'s.

Click-to-calls are written behind (:mod:`engine.store.journal`), so PostgreSQL may be one
batch behind what happened: the resync first flushes the journal, then lists the live
sessions there, and hands each click-to-call the journal does not own yet (one of an
engine that stopped) to it before applying what was missed. What an engine that stopped
had not written yet is caught up from Asterisk: a leg whose channel is up answered, a
customer's channel that exists was dialed (originate's 409 for an existing channel id
counts as dialed); a call an agent dialled whose start was lost is started if the agent
still waits. Ended calls the journal still keeps for their recording's end are
released: an event missed while the link was down never comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from engine.asterisk.flows.click_to_call import ChannelFact, ClickToCall, RawFact, channel_role
from engine.asterisk.flows.hangup_records import ChannelEnd, HangupRecords
from engine.asterisk.links.ari import AriClient
from engine.asterisk.naming import current_leg_channel, session_of_bridge, session_of_channel
from engine.config.settings import CallSettings
from engine.domain.call import CallStatus, Direction
from engine.domain.click_to_call import Leg, Resume, Start, restart_queued
from engine.domain.event_types import CallEventType
from engine.domain.transfer import ChannelRole, resync_transfer
from engine.errors import AriError, CtcError, IllegalTransition
from engine.store.records import StoredSession, StoredTransfer
from engine.store.repositories import Store

__all__ = ["Resync", "resync_facts"]

log = structlog.get_logger(__name__)

# How far back the resync looks for ended calls whose recording's end was never stored.
RECORDING_LOOKBACK = timedelta(days=1)


class Resync:
    """Reconciles the live sessions with what Asterisk has; ``count`` resyncs have run and
    ``completed`` is set after each (tests clear it and wait)."""

    def __init__(
        self,
        ari: AriClient,
        store: Store,
        settings: CallSettings,
        click_to_call: ClickToCall,
        hangup_records: HangupRecords,
    ) -> None:
        self._ari = ari
        self._store = store
        self._settings = settings
        self._click_to_call = click_to_call
        self._records = hangup_records
        self.count = 0
        self.completed = asyncio.Event()

    async def run(self) -> None:
        """Compare Asterisk's channels with live sessions; adopt the living, end the dead."""
        try:
            await self._resync()
        except CtcError as exc:
            log.error("stasis.resync_failed", error=str(exc))
        finally:
            self.count += 1
            self.completed.set()

    async def _resync(self) -> None:
        # PostgreSQL has every fact this process knew before the listing below; flushed
        # first, so the listing is as new as the sessions it is compared with (a call that
        # moved on while a slow flush ran must not be judged by an older listing)
        await self._store.journal.flush()
        channels = {str(ch.get("id", "")): ch for ch in await self._ari.channels()}
        live = {s.id: s for s in await self._store.sessions.live()}
        adopted = ended = started = 0
        all_ids = set(channels)
        for session in live.values():
            if session.direction is Direction.INBOUND:
                ended += await self._resync_inbound(session, all_ids)
            elif session.status is CallStatus.QUEUED and (
                session.direction is Direction.CLICK_TO_CALL
            ):  # a queued agent-dialled call has its agent's channel: resynced below
                match await self._resync_queued(session.id, channels):
                    case True:
                        started += 1
                    case False:
                        ended += 1
            elif await self._resync_session(session.id, channels):
                ended += 1
            else:
                adopted += 1
        # channels of ours (legs, transfer targets) whose session is over or unknown:
        # nobody manages them, hang up
        orphans = [raw for raw in channels if (sid := session_of_channel(raw)) and sid not in live]
        for raw in orphans:
            with contextlib.suppress(AriError):
                await self._ari.hangup(raw)
        bridges = await self._destroy_orphan_bridges()
        # recordings whose end may have been told while the link was down (or to an
        # earlier engine that stopped): ARI is asked about them
        unsettled = await self._store.sessions.recordings_unsettled(RECORDING_LOOKBACK)
        recordings = self._click_to_call.recheck_recordings(unsettled)
        log.info(
            "stasis.resynced",
            live=len(live),
            adopted=adopted,
            ended=ended,
            recordings_rechecked=recordings,
            queued_started=started,
            orphans_hung_up=len(orphans),
            orphan_bridges_destroyed=len(bridges),
            bridges=bridges[:20],
        )

    async def _end_undocumented_dial(
        self, session: StoredSession, channels: Mapping[str, object]
    ) -> None:
        """A queued click-to-call with channels of its own, as its owner has it: it was
        dialled, and the engine that did stopped before its journal wrote so. Never dialled
        again: its channels are hung up and it fails."""
        present = sorted(raw for raw in channels if session_of_channel(raw) == session.id)
        for raw in present:
            with contextlib.suppress(AriError):
                await self._ari.hangup(raw)
        reason = "dialled before the engine stopped, its start unrecorded: not dialled again"
        await self._store.sessions.transition(
            session.tenant_id,
            session.id,
            CallStatus.FAILED,
            event_type=CallEventType.SESSION_RESYNC,
            payload={"reason": reason, "channels_present": present},
            changes={"end_reason": reason},
        )

    async def _resync_queued(
        self, session_id: uuid.UUID, channels: Mapping[str, object]
    ) -> bool | None:
        """Start a queued call whose start may have been lost, or fail it when it is too
        old to dial now, or when Asterisk has its legs (dialled, the start unrecorded);
        True when it was started, None when it was no longer queued (as its owner has it:
        this process's journal may be ahead of PostgreSQL)."""
        # this engine's own, or claimed now: another engine's claimer may be taking it
        if not await self._store.claims.claim_one(session_id):
            return None
        async with self._click_to_call.lock(session_id):
            session = await self._store.sessions.take_over(session_id)
        if session is None or session.status is not CallStatus.QUEUED:
            return None
        if _has_channel(session.id, channels):
            await self._end_undocumented_dial(session, channels)
            return False
        age = datetime.now(UTC) - session.created_at
        fact = restart_queued(age, timedelta(seconds=self._settings.queued_start_deadline))
        if isinstance(fact, Start):
            self._click_to_call.submit(session.id, fact)
            return True
        await self._click_to_call.handle(session.id, fact)
        return False

    async def _destroy_orphan_bridges(self) -> list[str]:
        """Destroy our bridges whose session is over or unknown (left by an engine that
        died, or by a version that never destroyed them). The bridges are listed before the
        live sessions are read, so a call that is bridging right now is live in that read."""
        ours = {
            str(b.get("id", "")): sid
            for b in await self._ari.bridges()
            if (sid := session_of_bridge(str(b.get("id", "")))) is not None
        }
        if not ours:
            return []
        live = await self._live_ids()
        return [
            bridge
            for bridge, sid in sorted(ours.items())
            if sid not in live and await self._click_to_call.destroy_bridge(bridge)
        ]

    async def _live_ids(self) -> set[uuid.UUID]:
        return {s.id for s in await self._store.sessions.live()}

    async def _resync_session(
        self, session_id: uuid.UUID, channels: Mapping[str, Mapping[str, Any]]
    ) -> bool:
        """Reconcile one click-to-call (and its transfer in flight) with Asterisk's
        channels; True when facts were missed (and applied)."""
        async with self._click_to_call.lock(session_id):
            # read afresh under the lock: the listing may be older than the call's end
            session = await self._store.sessions.take_over(session_id)
            if session is None or session.status.is_terminal:
                return False
            # an agent's own channel is not named from its session: follow it by id
            self._click_to_call.follow_legs(session)
            # what Asterisk recorded of the legs that ended unseen (read only if any did)
            gone = any(raw not in channels for _, raw in _dialed_legs(session, channels))
            ends = await self._records.read(session.id) if gone else {}
            facts = resync_facts(session, channels, ends)
            if facts:
                await self._store.sessions.append_event(
                    session.tenant_id,
                    session.id,
                    CallEventType.SESSION_RESYNC,
                    payload={
                        "reason": "state differed from Asterisk after the ARI link (re)connected",
                        "channels_present": sorted(
                            raw for raw in channels if session_of_channel(raw) == session.id
                        ),
                    },
                )
                for fact in facts:
                    await self._click_to_call.handle_locked(session.id, fact)
            # the transfer in flight: adopt it when its target lives, end it when it is gone
            session = await self._store.sessions.by_id(session_id)
            if session is None or session.status.is_terminal:
                return bool(facts)  # the missed facts ended the call (and the transfer)
            missed = False
            transfer = await self._click_to_call.transfers.live_transfer(session)
            if transfer is not None:
                missed = await self._resync_transfer(session, transfer, channels)
            # channels of this call that play no role any more (legs a transfer replaced,
            # earlier targets) are hung up
            transfer = await self._click_to_call.transfers.live_transfer(session)
            session = await self._store.sessions.get(session.tenant_id, session_id)
            for raw in channels:
                if session_of_channel(raw) == session.id and (
                    channel_role(session, transfer, raw) is ChannelRole.STALE
                ):
                    with contextlib.suppress(AriError):
                        await self._ari.hangup(raw)
            return bool(facts) or missed

    async def _resync_transfer(
        self,
        session: StoredSession,
        transfer: StoredTransfer,
        channels: Mapping[str, Mapping[str, Any]],
    ) -> bool:
        """Adopt a transfer in flight whose target lives (carrying on if it answered
        unseen), or end it and give the call back to its parties; True if it had missed
        something."""
        target = channels.get(transfer.target_channel_id or "")
        missed = resync_transfer(
            transfer.state,
            target_present=target is not None,
            target_up=target is not None and target.get("state") == "Up",
        )
        await self._store.sessions.append_event(
            session.tenant_id,
            session.id,
            CallEventType.TRANSFER_RESYNC,
            payload={
                "transfer_id": str(transfer.id),
                "state": transfer.state.value,
                "target_present": target is not None,
                "missed": type(missed).__name__ if missed is not None else None,
            },
        )
        if missed is None:
            return False
        await self._click_to_call.transfers.on_fact(session, missed)
        return True

    async def _resync_inbound(self, session: StoredSession, channel_ids: set[str]) -> int:
        """End an inbound session whose caller's channel is gone; 1 if it was ended."""
        channel = str(session.metadata.get("channel_id", ""))
        if channel in channel_ids:
            return 0
        # as IvrCallRecord.end: an answered call completed, one never answered was canceled
        target = (
            CallStatus.COMPLETED if session.status is CallStatus.CONNECTED else CallStatus.CANCELED
        )
        reason = "caller's channel gone while ARI was disconnected"
        with contextlib.suppress(IllegalTransition):
            await self._store.sessions.transition(
                session.tenant_id,
                session.id,
                target,
                event_type=CallEventType.SESSION_RESYNC,
                payload={"reason": reason, "channel_id": channel},
                changes={"end_reason": reason},
            )
        return 1


_GONE = "channel gone while ARI was disconnected"
_RECORDED = "hung up while ARI was disconnected (time and cause recorded by Asterisk)"


def _has_channel(session_id: uuid.UUID, channels: Mapping[str, object]) -> bool:
    """Whether Asterisk has a channel the engine named for the session (a leg it dialled)."""
    return any(session_of_channel(raw) == session_id for raw in channels)


def _dialed_legs(
    session: StoredSession, channels: Mapping[str, Mapping[str, Any]]
) -> list[tuple[Leg, str]]:
    """The legs dialed so far with their channels, agent first: the customer once the
    session says so, or once Asterisk has its channel (dialed by an engine that stopped
    before the session said so)."""
    legs = [(Leg.AGENT, current_leg_channel(session, Leg.AGENT))]
    customer = current_leg_channel(session, Leg.CUSTOMER)
    if session.status in (CallStatus.DIALING_CUSTOMER, CallStatus.CONNECTED) or (
        customer in channels
    ):
        legs.append((Leg.CUSTOMER, customer))
    return legs


def resync_facts(
    session: StoredSession,
    channels: Mapping[str, Mapping[str, Any]],
    ends: Mapping[str, ChannelEnd],
) -> list[RawFact]:
    """Leg facts we missed while disconnected (or that an engine that stopped had not
    written yet), inferred from what Asterisk has now.

    A leg that ended unseen ends at the time and with the cause Asterisk recorded
    (``ends``); without a record its end is estimated (now, no cause). Answers come in the
    order the call takes them (the agent's; the customer dialed, if the session stopped at
    ``agent_answered``; the customer's), each applied to the state the previous one left.
    Ends come after answers, in the order they happened, so the party who hung up first
    ends the call.
    """
    up: set[Leg] = set()
    endings: list[ChannelFact] = []
    for leg, raw in _dialed_legs(session, channels):
        channel = channels.get(raw)
        if channel is not None:
            if channel.get("state") == "Up":
                up.add(leg)
        elif (end := ends.get(raw)) is not None:
            endings.append(
                ChannelFact(raw, up=False, cause=end.cause, cause_text=_RECORDED, at=end.at)
            )
        else:
            endings.append(ChannelFact(raw, up=False, cause_text=_GONE, estimated=True))
    answers: list[RawFact] = []
    status = session.status
    if Leg.AGENT in up and status is CallStatus.DIALING_AGENT:
        answers.append(ChannelFact(current_leg_channel(session, Leg.AGENT), up=True))
    elif status is CallStatus.AGENT_ANSWERED and not endings:
        answers.append(Resume())  # the customer's dialing was not written (or not done)
    elif status is CallStatus.QUEUED and not endings:
        # an agent-dialled call (the only kind the resync leaves queued here) whose
        # agent still waits: its start was lost with the engine that took it
        answers.append(Start())
    if Leg.CUSTOMER in up and status in _BEFORE_CONNECTED:
        answers.append(ChannelFact(current_leg_channel(session, Leg.CUSTOMER), up=True))
    # recorded ends by time, estimated ones (noticed now) last
    endings.sort(key=lambda f: (f.at is None, f.at or datetime.min.replace(tzinfo=UTC)))
    return [*answers, *endings]


# the statuses in which the customer's answer is still to come (after the agent's)
_BEFORE_CONNECTED = frozenset(
    (CallStatus.DIALING_AGENT, CallStatus.AGENT_ANSWERED, CallStatus.DIALING_CUSTOMER)
)

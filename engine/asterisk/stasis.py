"""The ``ctc`` Stasis application: runs click-to-calls on Asterisk over ARI.

ARI events arrive on the link's reader and are only queued there. One dispatcher turns
each event into a domain fact for the session it belongs to and hands it to that session's
worker; a per-session lock keeps each call's facts in order while different calls proceed
in parallel. The domain (:func:`engine.domain.click_to_call.decide`) says what to do; this
module carries it out (ARI calls, store writes).

Channel, bridge and recording ids are derived from the session id (``c2c-<uuid>-agent``,
``c2c-<uuid>-customer``, bridge ``c2c-<uuid>``), so after a reconnect the resync can match
what Asterisk still has to the live sessions in PostgreSQL without any other state.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

import structlog

from engine.asterisk.ari import AriClient, AriEventLink, AriNotFound
from engine.asterisk.dialing import dial_string
from engine.asterisk.inbound import MenuLoader
from engine.asterisk.ivr_app import IvrApp
from engine.asterisk.transfers import TransferRunner, target_channel_id
from engine.config import CallSettings
from engine.domain.call import CallStatus, Direction
from engine.domain.click_to_call import (
    Answered,
    BridgeLegs,
    Decision,
    EndRequested,
    Fact,
    Hangup,
    Leg,
    LegEnded,
    Note,
    Originate,
    PlayRingback,
    RecordingFinished,
    SetStatus,
    Start,
    StartRecording,
    decide,
)
from engine.domain.transfer import (
    CancelRequested,
    ChannelRole,
    CompleteRequested,
    TargetAnswered,
    TargetEnded,
    TransferFact,
    TransferType,
    route_channel,
)
from engine.errors import AriError, CtcError, IllegalTransition
from engine.health import HealthReport
from engine.store import Store
from engine.store.recording import RecordingPolicy
from engine.store.sessions import StoredSession
from engine.store.transfers import StoredTransfer

__all__ = ["StasisApp", "bridge_id", "channel_id", "parse_channel_id"]

log = structlog.get_logger(__name__)

_PREFIX = "c2c-"
# Ringback played to the agent while the customer rings.
RINGBACK_MEDIA = "tone:ring"


def channel_id(session_id: uuid.UUID, leg: Leg) -> str:
    return f"{_PREFIX}{session_id}-{leg.value}"


def bridge_id(session_id: uuid.UUID) -> str:
    return f"{_PREFIX}{session_id}"


def parse_channel_id(value: str) -> tuple[uuid.UUID, Leg] | None:
    """``c2c-<uuid>-<leg>`` back to its parts; None for channels that are not ours."""
    if not value.startswith(_PREFIX):
        return None
    rest, _, leg = value[len(_PREFIX) :].rpartition("-")
    try:
        return uuid.UUID(rest), Leg(leg)
    except ValueError:
        return None


def _parse_target_channel_id(value: str) -> uuid.UUID | None:
    """``c2c-<uuid>-target`` (a transfer target) back to its session id."""
    if not (value.startswith(_PREFIX) and value.endswith("-target")):
        return None
    try:
        return uuid.UUID(value[len(_PREFIX) : -len("-target")])
    except ValueError:
        return None


def _parse_bridge_or_recording(value: str) -> uuid.UUID | None:
    if not value.startswith(_PREFIX):
        return None
    try:
        return uuid.UUID(value[len(_PREFIX) :].split("/")[-1])
    except ValueError:
        return None


# Which handle a status stores on the session row when it is entered.
def _handles(session_id: uuid.UUID, status: CallStatus) -> dict[str, Any]:
    match status:
        case CallStatus.DIALING_AGENT:
            return {"agent_channel_id": channel_id(session_id, Leg.AGENT)}
        case CallStatus.DIALING_CUSTOMER:
            return {"customer_channel_id": channel_id(session_id, Leg.CUSTOMER)}
        case CallStatus.CONNECTED:
            return {"bridge_id": bridge_id(session_id)}
    return {}


class StasisApp:
    """Click-to-call over ARI: start, follow and end calls; resync after reconnects."""

    def __init__(
        self,
        ari: AriClient,
        store: Store,
        calls: CallSettings,
        *,
        health: HealthReport | None = None,
        recording_dir: str = "/var/spool/asterisk/recording",
        menus: MenuLoader | None = None,
    ) -> None:
        self._ari = ari
        self._store = store
        self._calls = calls
        self._recording_dir = recording_dir.rstrip("/")
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self.link = AriEventLink(
            ari, on_event=self._queue.put_nowait, on_connected=self.resync, health=health
        )
        self.resyncs = 0
        self.resynced = asyncio.Event()
        # inbound callers in Stasis(ctc,ivr,MENU): only when menus can be loaded
        self.ivr = IvrApp(ari, store, menus, calls) if menus is not None else None
        self.transfers = TransferRunner(ari, store, calls)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="stasis-dispatch")
            self.link.start()

    async def close(self) -> None:
        await self.link.close()
        if self.ivr is not None:
            await self.ivr.close()
        tasks = [t for t in (self._dispatcher, *self._tasks) if t is not None]
        self._dispatcher = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    # -- what the API asks for ----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether calls can be placed now (the ARI event link is up)."""
        return self.link.connected.is_set()

    def start_call(self, session: StoredSession) -> None:
        """Begin dialing a queued session, in the background."""
        self._submit(session.id, Start())

    async def end_call(self, session: StoredSession, reason: str) -> StoredSession:
        await self._handle(session.id, EndRequested(reason))
        return await self._store.sessions.get(session.tenant_id, session.id)

    async def transfer(
        self, session: StoredSession, kind: str, target: str, leg: str = "agent"
    ) -> StoredTransfer:
        """Start a blind or attended transfer of a connected call's agent leg."""
        async with self._lock(session.id):
            current = await self._store.sessions.get(session.tenant_id, session.id)
            return await self.transfers.start(current, TransferType(kind), target, leg)

    async def complete_transfer(self, session: StoredSession) -> StoredTransfer:
        async with self._lock(session.id):
            current = await self._store.sessions.get(session.tenant_id, session.id)
            return await self.transfers.request_fact(current, CompleteRequested(), "complete")

    async def cancel_transfer(self, session: StoredSession) -> StoredTransfer:
        async with self._lock(session.id):
            current = await self._store.sessions.get(session.tenant_id, session.id)
            return await self.transfers.request_fact(current, CancelRequested(), "cancel")

    def _lock(self, session_id: uuid.UUID) -> asyncio.Lock:
        return self._locks.setdefault(session_id, asyncio.Lock())

    # -- events -------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            event = await self._queue.get()
            if self.ivr is not None and self._route_ivr(self.ivr, event):
                continue
            routed = self._fact(event)
            if routed is None:
                continue
            self._submit(*routed)

    def _submit(self, session_id: uuid.UUID, fact: Fact | TransferFact) -> None:
        # tasks for one session queue on its lock in creation order (asyncio.Lock is FIFO)
        task = asyncio.create_task(self._handle_logged(session_id, fact))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_logged(self, session_id: uuid.UUID, fact: Fact | TransferFact) -> None:
        try:
            await self._handle(session_id, fact)
        except CtcError as exc:
            # e.g. the database is away: the fact is lost for this call, the engine goes on
            log.error(
                "stasis.fact_failed", call_id=str(session_id), fact=repr(fact), error=str(exc)
            )
        except Exception:
            log.exception("stasis.fact_crashed", call_id=str(session_id), fact=repr(fact))

    def _route_ivr(self, ivr: IvrApp, event: Mapping[str, Any]) -> bool:
        """Hand IVR calls' events to them; True when the event was theirs."""
        args = event.get("args") or []
        if event.get("type") == "StasisStart" and args and args[0] == "ivr":
            ivr.start(event)
            return True
        channel = str(event.get("channel", {}).get("id", ""))
        if not channel:
            for key in ("playback", "recording"):
                target = str(event.get(key, {}).get("target_uri", ""))
                if target.startswith("channel:"):
                    channel = target[len("channel:") :]
        if channel and ivr.owns(channel):
            ivr.route(channel, event)
            return True
        return False

    def _fact(self, event: Mapping[str, Any]) -> tuple[uuid.UUID, Fact | TransferFact] | None:
        kind = event.get("type")
        if kind in ("StasisStart", "ChannelDestroyed"):
            raw = str(event.get("channel", {}).get("id", ""))
            parsed = parse_channel_id(raw)
            if parsed is None:
                target_of = _parse_target_channel_id(raw)
                if target_of is None:
                    return None
                if kind == "StasisStart":
                    return target_of, TargetAnswered()
                cause = event.get("cause")
                return target_of, TargetEnded(
                    int(cause) if cause is not None else None, event.get("cause_txt")
                )
            session_id, leg = parsed
            if kind == "StasisStart":
                return session_id, Answered(leg)
            cause = event.get("cause")
            return session_id, LegEnded(
                leg, int(cause) if cause is not None else None, event.get("cause_txt")
            )
        if kind in ("RecordingFinished", "RecordingFailed"):
            recording = event.get("recording", {})
            session_id_or_none = _parse_bridge_or_recording(str(recording.get("name", "")))
            if session_id_or_none is None:
                return None
            duration = recording.get("duration")
            ms = int(duration) * 1000 if duration is not None else None
            return session_id_or_none, RecordingFinished(ms)
        return None

    async def _handle(self, session_id: uuid.UUID, raw_fact: Fact | TransferFact) -> None:
        async with self._lock(session_id):
            session = await self._store.sessions.by_id(session_id)
            if session is None:
                log.warning("stasis.unknown_session", call_id=str(session_id))
                return
            bound = log.bind(call_id=str(session_id), tenant_id=str(session.tenant_id))
            fact = _route(session, raw_fact)
            if fact is None:
                bound.debug("stasis.stale_leg_fact", fact=repr(raw_fact))
                return
            if isinstance(fact, TargetAnswered | TargetEnded | CompleteRequested | CancelRequested):
                if await self.transfers.on_fact(session, fact) is None:
                    bound.debug("stasis.transfer_fact_ignored", fact=repr(fact))
                    if isinstance(fact, TargetAnswered):
                        # a target answering after its transfer ended: nobody wants it
                        with contextlib.suppress(AriError):
                            await self._ari.hangup(target_channel_id(session_id))
                return
            # the recording policy is read once, when it matters: the customer answered
            policy = None
            if isinstance(fact, Answered) and fact.leg is Leg.CUSTOMER:
                policy = await self._store.recording.for_call(
                    session.tenant_id, session.provider_id, session.direction.value
                )
            record = policy is not None and policy.is_enabled
            decision = decide(session.status, fact, record=record)
            if not decision.steps:
                bound.debug(
                    "stasis.fact_ignored", fact=type(fact).__name__, status=session.status.value
                )
            session = await self._carry_out(session, decision, bound, policy)
            if session.status.is_terminal:
                await self.transfers.abort(session, f"call ended ({session.status.value})")
            if session.status.is_terminal and not self._waiting_for_recording(session):
                self._locks.pop(session_id, None)

    def _waiting_for_recording(self, session: StoredSession) -> bool:
        return session.recording_path is not None and session.recording_duration_ms is None

    async def _carry_out(
        self,
        session: StoredSession,
        decision: Decision,
        bound: Any,
        policy: RecordingPolicy | None = None,
    ) -> StoredSession:
        for step in decision.steps:
            try:
                session = await self._step(session, step, bound, policy)
            except AriError as exc:
                bound.warning("stasis.step_failed", step=type(step).__name__, error=str(exc))
                return await self._fail(session, f"{type(step).__name__} failed: {exc}", bound)
            except IllegalTransition as exc:
                # an event raced another (e.g. API end vs. hangup): the first one won
                bound.info("stasis.transition_skipped", reason=str(exc))
                return session
        return session

    async def _step(
        self, session: StoredSession, step: Any, bound: Any, policy: RecordingPolicy | None
    ) -> StoredSession:
        sid = session.id
        match step:
            case SetStatus():
                changes = {**_handles(sid, step.status), **step.changes}
                session, _ = await self._store.sessions.transition(
                    session.tenant_id,
                    sid,
                    step.status,
                    event_type=step.event_type,
                    payload=step.payload,
                    changes=changes,
                )
                bound.info("call.status", status=step.status.value, event_type=step.event_type)
            case Originate():
                await self._originate(session, step.leg)
            case PlayRingback():
                with contextlib.suppress(AriNotFound):
                    await self._ari.play(
                        channel_id(sid, step.leg),
                        RINGBACK_MEDIA,
                        playback_id=f"{channel_id(sid, step.leg)}-ringback",
                    )
            case BridgeLegs():
                with contextlib.suppress(AriNotFound):
                    await self._ari.stop_playback(f"{channel_id(sid, Leg.AGENT)}-ringback")
                await self._ari.create_bridge(bridge_id(sid))
                await self._ari.add_to_bridge(
                    bridge_id(sid), channel_id(sid, Leg.AGENT), channel_id(sid, Leg.CUSTOMER)
                )
            case StartRecording():
                # decided only when the customer answered under an enabled policy
                assert policy is not None
                session = await self._start_recording(session, policy)
            case Hangup():
                channel = channel_id(sid, step.leg)
                if step.leg is Leg.AGENT and session.agent_channel_id:
                    channel = session.agent_channel_id  # a transfer target, once completed
                with contextlib.suppress(AriNotFound):
                    await self._ari.hangup(channel)
            case Note():
                session, _ = await self._store.sessions.append_event(
                    session.tenant_id,
                    sid,
                    step.event_type,
                    payload=step.payload,
                    changes=step.changes,
                )
        return session

    async def _originate(self, session: StoredSession, leg: Leg) -> None:
        caller_id: str | None
        if session.agent_number is None or session.customer_number is None:
            raise AriError(f"session {session.id} has no number to dial for the {leg.value}")
        if leg is Leg.AGENT:
            # an agent given as an E.164 number is an outside line: dial it like a customer
            endpoint = dial_string(self._calls, session.agent_number)
            # the agent sees who they are about to talk to
            caller_id = session.customer_number
            ring = self._calls.agent_ring_timeout
        else:
            endpoint = dial_string(self._calls, session.customer_number, outside_line=True)
            caller_id = session.caller_id or self._calls.default_caller_id
            ring = self._calls.customer_ring_timeout
        await self._ari.originate(
            endpoint,
            channel_id=channel_id(session.id, leg),
            app_args=f"c2c,{session.id},{leg.value}",
            caller_id=caller_id,
            ring_timeout=ring,
            variables={"CTC_SESSION_ID": str(session.id), "CTC_LEG": leg.value},
        )

    async def _start_recording(
        self, session: StoredSession, policy: RecordingPolicy
    ) -> StoredSession:
        fmt = policy.format
        name = f"{_PREFIX}{session.id}"
        await self._ari.record_bridge(
            bridge_id(session.id),
            name,
            fmt=fmt,
            max_duration=policy.max_duration_s or 0,
            beep=policy.beep,
        )
        path = f"{self._recording_dir}/{name}.{fmt}"
        session, _ = await self._store.sessions.append_event(
            session.tenant_id,
            session.id,
            "recording.started",
            payload={"name": name, "format": fmt, "path": path},
            changes={"recording_path": path},
        )
        return session

    async def _fail(self, session: StoredSession, reason: str, bound: Any) -> StoredSession:
        channels = [channel_id(session.id, leg) for leg in Leg]
        for channel in (*channels, target_channel_id(session.id)):
            with contextlib.suppress(AriError):
                await self._ari.hangup(channel)
        if session.status.is_terminal:
            return session
        with contextlib.suppress(IllegalTransition):
            session, _ = await self._store.sessions.transition(
                session.tenant_id,
                session.id,
                CallStatus.FAILED,
                event_type="call.failed",
                payload={"reason": reason},
                changes={"end_reason": reason[:500]},
            )
        bound.warning("call.failed", reason=reason)
        return session

    # -- resync -------------------------------------------------------------------------------

    async def resync(self) -> None:
        """Compare Asterisk's channels with live sessions; adopt the living, end the dead."""
        try:
            await self._resync()
        except CtcError as exc:
            log.error("stasis.resync_failed", error=str(exc))
        finally:
            self.resyncs += 1
            self.resynced.set()

    async def _resync(self) -> None:
        channels = await self._ari.channels()
        present: dict[tuple[uuid.UUID, Leg], dict[str, Any]] = {}
        for ch in channels:
            parsed = parse_channel_id(str(ch.get("id", "")))
            if parsed is not None:
                present[parsed] = ch
        live = {s.id: s for s in await self._store.sessions.live()}
        adopted = ended = 0
        all_ids = {str(ch.get("id", "")) for ch in channels}
        for session in live.values():
            if session.direction is Direction.INBOUND:
                ended += await self._resync_inbound(session, all_ids)
                continue
            if session.status is CallStatus.QUEUED:
                continue  # not dialed yet: its start is in flight or still to come
            facts = self._resync_facts(session, present, all_ids)
            if not facts:
                adopted += 1
                continue
            ended += 1
            await self._store.sessions.append_event(
                session.tenant_id,
                session.id,
                "session.resync",
                payload={
                    "reason": "state differed from Asterisk after the ARI link (re)connected",
                    "channels_present": sorted(
                        leg.value for (sid, leg) in present if sid == session.id
                    ),
                },
            )
            for fact in facts:
                await self._handle(session.id, fact)
        # channels of ours whose session is over or unknown: nobody manages them, hang up
        orphans = [(sid, leg) for (sid, leg) in present if sid not in live]
        for raw in all_ids:
            target_of = _parse_target_channel_id(raw)
            if target_of is not None and target_of not in live:
                with contextlib.suppress(AriError):
                    await self._ari.hangup(raw)
        for sid, leg in orphans:
            with contextlib.suppress(AriError):
                await self._ari.hangup(channel_id(sid, leg))
        log.info(
            "stasis.resynced",
            live=len(live),
            adopted=adopted,
            ended=ended,
            orphans_hung_up=len(orphans),
        )

    async def _resync_inbound(self, session: StoredSession, channel_ids: set[str]) -> int:
        """End an inbound session whose caller's channel is gone; 1 if it was ended."""
        channel = str(session.metadata.get("channel_id", ""))
        if channel in channel_ids:
            return 0
        target = (
            CallStatus.COMPLETED
            if session.status is CallStatus.CONNECTED
            else (CallStatus.CANCELED)
        )
        reason = "caller's channel gone while ARI was disconnected"
        with contextlib.suppress(IllegalTransition):
            await self._store.sessions.transition(
                session.tenant_id,
                session.id,
                target,
                event_type="session.resync",
                payload={"reason": reason, "channel_id": channel},
                changes={"end_reason": reason},
            )
        return 1

    def _resync_facts(
        self,
        session: StoredSession,
        present: Mapping[tuple[uuid.UUID, Leg], Mapping[str, Any]],
        channel_ids: set[str],
    ) -> list[Fact | TransferFact]:
        """Facts we missed while disconnected, inferred from what Asterisk has now."""
        facts: list[Fact | TransferFact] = []
        for leg in (Leg.AGENT, Leg.CUSTOMER):
            if leg is Leg.AGENT and session.agent_channel_id == target_channel_id(session.id):
                # a completed transfer's target is the agent leg now
                if session.agent_channel_id not in channel_ids:
                    facts.append(TargetEnded(None, "channel gone while ARI was disconnected"))
                continue
            dialed = (leg is Leg.AGENT) or session.status in (
                CallStatus.DIALING_CUSTOMER,
                CallStatus.CONNECTED,
            )
            if not dialed:
                continue
            channel = present.get((session.id, leg))
            if channel is None:
                facts.append(LegEnded(leg, None, "channel gone while ARI was disconnected"))
            elif channel.get("state") == "Up" and _awaits_answer(session.status, leg):
                facts.append(Answered(leg))
        return facts


def _route(session: StoredSession, fact: Fact | TransferFact) -> Fact | TransferFact | None:
    """The fact as it concerns the session now: after a completed transfer the target is
    the agent leg and the replaced agent channel is stale (None: ignore it)."""
    adopted = session.agent_channel_id == target_channel_id(session.id)
    if isinstance(fact, Answered | LegEnded):
        suffix = fact.leg.value
    elif isinstance(fact, TargetAnswered | TargetEnded):
        suffix = "target"
    else:
        return fact
    role = route_channel(suffix, target_is_agent=adopted)
    if role is ChannelRole.STALE:
        return None
    if role is ChannelRole.AGENT and isinstance(fact, TargetEnded):
        return LegEnded(Leg.AGENT, fact.cause, fact.cause_text)
    if role is ChannelRole.AGENT and isinstance(fact, TargetAnswered):
        return None
    return fact


def _awaits_answer(status: CallStatus, leg: Leg) -> bool:
    return (leg is Leg.AGENT and status is CallStatus.DIALING_AGENT) or (
        leg is Leg.CUSTOMER and status is CallStatus.DIALING_CUSTOMER
    )

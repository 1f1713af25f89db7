"""The ``ctc`` Stasis application: runs click-to-calls on Asterisk over ARI.

ARI events arrive on the link's reader and are only queued there. One dispatcher turns
each event into a domain fact for the session it belongs to and hands it to that session's
worker; a per-session lock keeps each call's facts in order while different calls proceed
in parallel. The domain (:func:`engine.domain.click_to_call.decide`) says what to do; this
module carries it out (ARI calls, store writes).

Channel, bridge and recording ids are derived from the session id (``c2c-<uuid>-agent``,
``c2c-<uuid>-customer``, bridge ``c2c-<uuid>``; a transfer's target
``c2c-<uuid>-target-<transfer>``), so after a reconnect the resync can match what Asterisk
still has to the live sessions (and their transfers in flight) in PostgreSQL. Which role a
channel plays is decided per event against the session's current legs and its transfer in
flight (:func:`engine.domain.transfer.route_channel`): completed transfers replace legs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from engine.app.inbound import MenuLoader
from engine.asterisk.flows.dialing import dial_string
from engine.asterisk.flows.hangup_records import ChannelEnd, HangupRecords
from engine.asterisk.flows.ivr_ari import IvrApp
from engine.asterisk.flows.transfers import TransferRunner, leg_channel, parse_target_channel_id
from engine.asterisk.links.ari import AriClient, AriConflict, AriEventLink, AriNotFound
from engine.config import CallSettings
from engine.domain.call import CallStatus, Direction
from engine.domain.click_to_call import (
    Answered,
    BridgeLegs,
    Decision,
    DestroyBridge,
    EndRequested,
    Fact,
    Hangup,
    Leg,
    Note,
    Originate,
    PlayRingback,
    RecordingFinished,
    Resume,
    SetStatus,
    Start,
    StartRecording,
    decide,
    restart_queued,
)
from engine.domain.event_types import CallEventType
from engine.domain.transfer import (
    CancelRequested,
    ChannelRole,
    CompleteRequested,
    TransferFact,
    TransferState,
    TransferType,
    channel_fact,
    resync_transfer,
    route_channel,
)
from engine.errors import AriError, CtcError, IllegalTransition
from engine.health import HealthReport
from engine.store.recording import RecordingPolicy
from engine.store.records import StoredSession
from engine.store.repositories import Store
from engine.store.transfers import StoredTransfer

__all__ = [
    "ChannelFact",
    "StasisApp",
    "bridge_id",
    "channel_id",
    "parse_channel_id",
    "session_of_channel",
]

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


def session_of_channel(value: str) -> uuid.UUID | None:
    """The session a channel of ours (a leg or a transfer target) belongs to; None for
    channels that are not ours."""
    parsed = parse_channel_id(value)
    if parsed is not None:
        return parsed[0]
    target = parse_target_channel_id(value)
    return None if target is None else target[0]


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelFact:
    """A channel of a session entered Stasis (``up``: it answered) or ended; what it means
    depends on the role the channel plays when the fact is handled (:func:`_route`)."""

    channel: str
    up: bool
    cause: int | None = None
    cause_text: str | None = None
    # an end found by the resync: when Asterisk recorded it, or estimated (now)
    at: datetime | None = None
    estimated: bool = False


RawFact = Fact | TransferFact | ChannelFact


_CONSULT = "-consult-"


def session_of_bridge(value: str) -> uuid.UUID | None:
    """The session a bridge of ours belongs to: the call's ``c2c-<uuid>`` (also the name of
    its recording) or a transfer's ``c2c-<uuid>-consult-<transfer>``; None for bridges and
    recordings that are not ours."""
    if not value.startswith(_PREFIX):
        return None
    rest = value[len(_PREFIX) :]
    session, suffix = rest[:36], rest[36:]
    if suffix and not suffix.startswith(_CONSULT):
        return None
    try:
        return uuid.UUID(session)
    except ValueError:
        return None


# How often the records Asterisk's hangup handler keeps for ended calls are deleted.
_RECORD_SWEEP_INTERVAL = 300.0


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
        hangup_records: HangupRecords | None = None,
    ) -> None:
        self._ari = ari
        self._store = store
        self._calls = calls
        self._records = hangup_records or HangupRecords(None)
        self._sweeper: asyncio.Task[None] | None = None
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
        self.transfers = TransferRunner(
            ari, store, calls, leg_variables=self._records.leg_variables
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="stasis-dispatch")
            self._sweeper = asyncio.create_task(self._sweep_records(), name="stasis-sweep")
            self.link.start()

    async def close(self) -> None:
        await self.link.close()
        if self.ivr is not None:
            await self.ivr.close()
        tasks = [t for t in (self._dispatcher, self._sweeper, *self._tasks) if t is not None]
        self._dispatcher = self._sweeper = None
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
        """Start a blind or attended transfer replacing a connected call's ``leg``."""
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

    def _submit(self, session_id: uuid.UUID, fact: RawFact) -> None:
        # tasks for one session queue on its lock in creation order (asyncio.Lock is FIFO)
        task = asyncio.create_task(self._handle_logged(session_id, fact))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_logged(self, session_id: uuid.UUID, fact: RawFact) -> None:
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

    def _fact(self, event: Mapping[str, Any]) -> tuple[uuid.UUID, RawFact] | None:
        kind = event.get("type")
        if kind in ("StasisStart", "ChannelDestroyed"):
            raw = str(event.get("channel", {}).get("id", ""))
            session_id = session_of_channel(raw)
            if session_id is None:
                return None
            if kind == "StasisStart":
                return session_id, ChannelFact(raw, up=True)
            cause = event.get("cause")
            return session_id, ChannelFact(
                raw,
                up=False,
                cause=int(cause) if cause is not None else None,
                cause_text=event.get("cause_txt"),
            )
        if kind in ("RecordingFinished", "RecordingFailed"):
            recording = event.get("recording", {})
            session_id_or_none = session_of_bridge(str(recording.get("name", "")))
            if session_id_or_none is None:
                return None
            duration = recording.get("duration")
            ms = int(duration) * 1000 if duration is not None else None
            return session_id_or_none, RecordingFinished(ms)
        return None

    async def _handle(self, session_id: uuid.UUID, raw_fact: RawFact) -> None:
        async with self._lock(session_id):
            await self._handle_locked(session_id, raw_fact)

    async def _handle_locked(self, session_id: uuid.UUID, raw_fact: RawFact) -> None:
        session = await self._store.sessions.by_id(session_id)
        if session is None:
            log.warning("stasis.unknown_session", call_id=str(session_id))
            return
        bound = log.bind(call_id=str(session_id), tenant_id=str(session.tenant_id))
        fact: Fact | TransferFact | None
        if isinstance(raw_fact, ChannelFact):
            # a leg's own channel needs no look-up of the transfer in flight
            transfer = None
            if _role(session, None, raw_fact.channel) is ChannelRole.STALE:
                transfer = await self.transfers.live_transfer(session)
            fact = _route(session, transfer, raw_fact)
            if fact is None:
                bound.debug("stasis.stale_channel_fact", fact=repr(raw_fact))
                if raw_fact.up and _role(session, transfer, raw_fact.channel) is ChannelRole.STALE:
                    # e.g. a target answering after its transfer ended: nobody wants it
                    with contextlib.suppress(AriError):
                        await self._ari.hangup(raw_fact.channel)
                return
        else:
            fact = raw_fact
        if isinstance(fact, TransferFact):
            if await self.transfers.on_fact(session, fact) is None:
                bound.debug("stasis.transfer_fact_ignored", fact=repr(fact))
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
                    at=step.at,
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
                try:
                    await self._ari.create_bridge(bridge_id(sid))
                except AriConflict:
                    # made by an engine that died before it could say so: adopt it
                    bound.info("stasis.bridge_adopted", bridge=bridge_id(sid))
                # adding a channel that is in the bridge already is a no-op in Asterisk
                await self._ari.add_to_bridge(
                    bridge_id(sid), channel_id(sid, Leg.AGENT), channel_id(sid, Leg.CUSTOMER)
                )
            case DestroyBridge():
                await self._destroy_bridge(bridge_id(sid), bound)
            case StartRecording():
                # decided only when the customer answered under an enabled policy
                assert policy is not None
                session = await self._start_recording(session, policy)
            case Hangup():
                # the leg's channel now: a completed transfer's target has replaced it
                with contextlib.suppress(AriNotFound):
                    await self._ari.hangup(leg_channel(session, step.leg))
            case Note():
                session, _ = await self._store.sessions.append_event(
                    session.tenant_id,
                    sid,
                    step.event_type,
                    payload=step.payload,
                    changes=step.changes,
                )
        return session

    async def _destroy_bridge(self, bridge: str, bound: Any = log) -> bool:
        """Destroy ``bridge``; whether it was there. A bridge left behind is a leak in
        Asterisk, not a failure of the call: an error is logged, never raised."""
        try:
            await self._ari.destroy_bridge(bridge)
        except AriNotFound:
            return False
        except AriError as exc:
            bound.warning("stasis.bridge_not_destroyed", bridge=bridge, error=str(exc))
            return False
        return True

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
            variables={
                "CTC_SESSION_ID": str(session.id),
                "CTC_LEG": leg.value,
                **self._records.leg_variables,
            },
        )

    async def _start_recording(
        self, session: StoredSession, policy: RecordingPolicy
    ) -> StoredSession:
        fmt = policy.format
        name = f"{_PREFIX}{session.id}"
        try:
            await self._ari.record_bridge(
                bridge_id(session.id),
                name,
                fmt=fmt,
                max_duration=policy.max_duration_s or 0,
                beep=policy.beep,
            )
        except AriConflict:
            # in progress already (started by an engine that died before saying so):
            # adopt it if it records this bridge, else the conflict stands
            live = await self._ari.live_recording(name)
            if live.get("target_uri") != f"bridge:{bridge_id(session.id)}":
                raise
            log.info("stasis.recording_adopted", call_id=str(session.id), recording=name)
        path = f"{self._recording_dir}/{name}.{fmt}"
        session, _ = await self._store.sessions.append_event(
            session.tenant_id,
            session.id,
            CallEventType.RECORDING_STARTED,
            payload={"name": name, "format": fmt, "path": path},
            changes={"recording_path": path},
        )
        return session

    async def _fail(self, session: StoredSession, reason: str, bound: Any) -> StoredSession:
        # the legs as dialed and as they are now; a transfer in flight is aborted by the
        # caller once the session is terminal
        channels = {channel_id(session.id, leg) for leg in Leg}
        channels |= {leg_channel(session, leg) for leg in Leg}
        for channel in sorted(channels):
            with contextlib.suppress(AriError):
                await self._ari.hangup(channel)
        await self._destroy_bridge(bridge_id(session.id), bound)
        if session.status.is_terminal:
            return session
        with contextlib.suppress(IllegalTransition):
            session, _ = await self._store.sessions.transition(
                session.tenant_id,
                session.id,
                CallStatus.FAILED,
                event_type=CallEventType.CALL_FAILED,
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
        channels = {str(ch.get("id", "")): ch for ch in await self._ari.channels()}
        live = {s.id: s for s in await self._store.sessions.live()}
        adopted = ended = started = 0
        all_ids = set(channels)
        for session in live.values():
            if session.direction is Direction.INBOUND:
                ended += await self._resync_inbound(session, all_ids)
            elif session.status is CallStatus.QUEUED:
                if await self._resync_queued(session):
                    started += 1
                else:
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
        log.info(
            "stasis.resynced",
            live=len(live),
            adopted=adopted,
            ended=ended,
            queued_started=started,
            orphans_hung_up=len(orphans),
            orphan_bridges_destroyed=len(bridges),
            bridges=bridges[:20],
        )

    async def _resync_queued(self, session: StoredSession) -> bool:
        """Start a queued call whose start may have been lost, or fail it when it is too
        old to dial now; True when it was started."""
        age = datetime.now(UTC) - session.created_at
        fact = restart_queued(age, timedelta(seconds=self._calls.queued_start_deadline))
        if isinstance(fact, Start):
            self._submit(session.id, fact)
            return True
        await self._handle(session.id, fact)
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
            if sid not in live and await self._destroy_bridge(bridge)
        ]

    async def _sweep_records(self) -> None:
        """Delete, now and then, what the hangup handler recorded for calls that are over."""
        while True:
            await asyncio.sleep(_RECORD_SWEEP_INTERVAL)
            try:
                swept = await self._records.sweep(self._live_ids)
            except CtcError as exc:  # e.g. the database is away: next time
                log.warning("stasis.record_sweep_failed", error=str(exc))
                continue
            except Exception:  # a bug: logged, and the sweeper goes on
                log.exception("stasis.record_sweep_crashed")
                continue
            if swept:
                log.info("stasis.records_swept", sessions=swept)

    async def _live_ids(self) -> set[uuid.UUID]:
        return {s.id for s in await self._store.sessions.live()}

    async def _resync_session(
        self, session_id: uuid.UUID, channels: Mapping[str, Mapping[str, Any]]
    ) -> bool:
        """Reconcile one click-to-call (and its transfer in flight) with Asterisk's
        channels; True when facts were missed (and applied)."""
        async with self._lock(session_id):
            session = await self._store.sessions.by_id(session_id)
            if session is None or session.status.is_terminal:
                return False
            # what Asterisk recorded of the legs that ended unseen (read only if any did)
            gone = any(raw not in channels for _, raw in _dialed_legs(session))
            ends = await self._records.read(session.id) if gone else {}
            facts = _resync_facts(session, channels, ends)
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
                    await self._handle_locked(session.id, fact)
            # the transfer in flight: adopt it when its target lives, end it when it is gone
            session = await self._store.sessions.by_id(session_id)
            if session is None or session.status.is_terminal:
                return bool(facts)  # the missed facts ended the call (and the transfer)
            missed = False
            transfer = await self.transfers.live_transfer(session)
            if transfer is not None:
                missed = await self._resync_transfer(session, transfer, channels)
            # channels of this call that play no role any more (legs a transfer replaced,
            # earlier targets) are hung up
            transfer = await self.transfers.live_transfer(session)
            session = await self._store.sessions.get(session.tenant_id, session_id)
            for raw in channels:
                if session_of_channel(raw) == session.id and (
                    _role(session, transfer, raw) is ChannelRole.STALE
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
            TransferState(transfer.state),
            target_present=target is not None,
            target_up=target is not None and target.get("state") == "Up",
        )
        await self._store.sessions.append_event(
            session.tenant_id,
            session.id,
            CallEventType.TRANSFER_RESYNC,
            payload={
                "transfer_id": str(transfer.id),
                "state": transfer.state,
                "target_present": target is not None,
                "missed": type(missed).__name__ if missed is not None else None,
            },
        )
        if missed is None:
            return False
        await self.transfers.on_fact(session, missed)
        return True

    async def _resync_inbound(self, session: StoredSession, channel_ids: set[str]) -> int:
        """End an inbound session whose caller's channel is gone; 1 if it was ended."""
        channel = str(session.metadata.get("channel_id", ""))
        if channel in channel_ids:
            return 0
        # as InboundCall.end: an answered call completed, one never answered was canceled
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


def _dialed_legs(session: StoredSession) -> list[tuple[Leg, str]]:
    """The legs dialed so far with their channels, agent first."""
    legs = [Leg.AGENT]
    if session.status in (CallStatus.DIALING_CUSTOMER, CallStatus.CONNECTED):
        legs.append(Leg.CUSTOMER)
    return [(leg, leg_channel(session, leg)) for leg in legs]


def _resync_facts(
    session: StoredSession,
    channels: Mapping[str, Mapping[str, Any]],
    ends: Mapping[str, ChannelEnd],
) -> list[RawFact]:
    """Leg facts we missed while disconnected, inferred from what Asterisk has now.

    A leg that ended unseen ends at the time and with the cause Asterisk recorded
    (``ends``); without a record its end is estimated (now, no cause). Ends come after
    answers, in the order they happened, so the party who hung up first ends the call.
    """
    answers: list[RawFact] = []
    endings: list[ChannelFact] = []
    for leg, raw in _dialed_legs(session):
        channel = channels.get(raw)
        if channel is not None:
            if channel.get("state") == "Up" and _awaits_answer(session.status, leg):
                answers.append(ChannelFact(raw, up=True))
        elif (end := ends.get(raw)) is not None:
            endings.append(
                ChannelFact(raw, up=False, cause=end.cause, cause_text=_RECORDED, at=end.at)
            )
        else:
            endings.append(ChannelFact(raw, up=False, cause_text=_GONE, estimated=True))
    if session.status is CallStatus.AGENT_ANSWERED and not endings:
        answers.append(Resume())  # the engine died before dialing the customer
    # recorded ends by time, estimated ones (noticed now) last
    endings.sort(key=lambda f: (f.at is None, f.at or datetime.min.replace(tzinfo=UTC)))
    return [*answers, *endings]


def _role(session: StoredSession, transfer: StoredTransfer | None, channel: str) -> ChannelRole:
    return route_channel(
        channel,
        agent=leg_channel(session, Leg.AGENT),
        customer=leg_channel(session, Leg.CUSTOMER),
        target=transfer.target_channel_id if transfer is not None else None,
    )


def _route(
    session: StoredSession, transfer: StoredTransfer | None, fact: ChannelFact
) -> Fact | TransferFact | None:
    """The channel fact as it concerns the session now: a leg's answer or hangup, or the
    transfer target's; None for a channel a completed transfer replaced (or any other
    channel that plays no role any more: ignore it)."""
    role = _role(session, transfer, fact.channel)
    parsed = parse_channel_id(fact.channel)
    # a former target that became a leg answered long ago: its StasisStart is not news
    adopted = parsed is None or parsed[1].value != role.value
    return channel_fact(
        role,
        up=fact.up,
        cause=fact.cause,
        cause_text=fact.cause_text,
        adopted=adopted,
        at=fact.at,
        estimated=fact.estimated,
    )


def _awaits_answer(status: CallStatus, leg: Leg) -> bool:
    return (leg is Leg.AGENT and status is CallStatus.DIALING_AGENT) or (
        leg is Leg.CUSTOMER and status is CallStatus.DIALING_CUSTOMER
    )

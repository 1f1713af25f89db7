"""Click-to-call over ARI: the facts of each call, decided by the domain, carried out.

The Stasis app (:mod:`engine.asterisk.flows.stasis`) routes each ARI event of a click-to-call
here as a fact for the session it belongs to; a per-session lock keeps each call's facts in
order while different calls proceed in parallel. The domain
(:func:`engine.domain.click_to_call.decide`) says what to do; this module carries it out
(ARI calls, store writes).

Channel, bridge and recording ids are derived from the session id
(:mod:`engine.asterisk.naming`), so after a reconnect the resync
(:mod:`engine.asterisk.flows.resync`) can match what Asterisk still has to the live sessions
(and their transfers in flight) in PostgreSQL. Which role a channel plays is decided per
event against the session's current legs and its transfer in flight
(:func:`engine.domain.transfer.route_channel`): completed transfers replace legs.

A call an agent dialled from the desk phone (:mod:`engine.asterisk.flows.agent_door`) is
the same flow with the agent's leg already there: its channel is Asterisk's, not named
from the session, so it is followed by id (:meth:`ClickToCall.follow_channel`) from the
call's start (or its adoption by a resync) until the call is released.

A call placed through the API is owned by the journal (:mod:`engine.store.journal`, written
behind) from its creation until this flow releases it: ended, and not waiting for its
recording's end (the facts after the end are read and written in memory too).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import structlog

from engine.app.provider_breakers import ProviderBreakers
from engine.asterisk.flows.dialing import dial_string
from engine.asterisk.flows.transfers import TransferRunner
from engine.asterisk.flows.trunks import TrunkAttempt, TrunkRoutes
from engine.asterisk.links.ari import AriClient, AriConflict, AriNotFound
from engine.asterisk.links.ari_router import AriEvent, AriEventRouter
from engine.asterisk.naming import (
    call_bridge_id,
    consent_playback_id,
    current_leg_channel,
    leg_channel_id,
    leg_channel_variables,
    leg_stasis_args,
    parse_leg_channel_id,
    recording_name,
    ringback_playback_id,
    session_of_channel,
    session_of_consent_playback,
    session_of_recording,
)
from engine.config.settings import CallSettings
from engine.domain.call import CallStatus, Direction
from engine.domain.click_to_call import (
    Answered,
    AnswerLeg,
    BridgeLegs,
    ConsentPlayed,
    Decision,
    DestroyBridge,
    EndRequested,
    Fact,
    Hangup,
    Leg,
    Note,
    Originate,
    PlayConsent,
    PlayRingback,
    RecordingFinished,
    SetStatus,
    Start,
    StartRecording,
    StopRecording,
    decide,
)
from engine.domain.compliance import RecordingConsent, recording_consent
from engine.domain.event_types import CallEventType
from engine.domain.failover import AttemptOutcome, trunk_outcome
from engine.domain.providers import ProviderType
from engine.domain.transfer import (
    CancelRequested,
    ChannelRole,
    CompleteRequested,
    TransferFact,
    TransferType,
    channel_fact,
    route_channel,
)
from engine.errors import AriError, CarrierError, CarrierRefused, CtcError, IllegalTransition
from engine.lifecycle import Lifecycle, cancel_tasks
from engine.metrics import Metrics
from engine.store.records import RecordingPolicy, StoredSession, StoredTransfer
from engine.store.repositories import Store

__all__ = [
    "ChannelFact",
    "ClickToCall",
    "RawFact",
    "RecordingOverdue",
    "channel_role",
    "route_fact",
]

log = structlog.get_logger(__name__)

# Ringback played to the agent while the customer rings.
RINGBACK_MEDIA = "tone:ring"

# The longest wait between two questions to ARI about a recording whose end is not known.
RECORDING_RECHECK_MAX = 600.0


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelFact:
    """A channel of a session entered Stasis (``up``: it answered) or ended; what it means
    depends on the role the channel plays when the fact is handled (:func:`route_fact`)."""

    channel: str
    up: bool
    cause: int | None = None
    cause_text: str | None = None
    # the technology's own cause (ARI ``tech_cause``: a PJSIP leg's final SIP answer)
    tech_cause: int | None = None
    # an end found by the resync: when Asterisk recorded it, or estimated (now)
    at: datetime | None = None
    estimated: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingOverdue:
    """An ended call's recording has not said it ended within
    ``calls.recording_end_timeout``, or the event link was down when it might have: ARI is
    asked what became of it. (Asterisk 22 sometimes sends no ``RecordingFinished`` for the
    recording of a bridge it destroys: 1 to 40 calls in 500 in five runs of
    ``bench/originate.py``'s bare program, the file stored every time.)"""


RawFact = Fact | TransferFact | ChannelFact | RecordingOverdue


# Which handle a status stores on the session row when it is entered.
def _handles(session_id: uuid.UUID, status: CallStatus) -> dict[str, Any]:
    match status:
        case CallStatus.DIALING_AGENT:
            return {"agent_channel_id": leg_channel_id(session_id, Leg.AGENT)}
        case CallStatus.DIALING_CUSTOMER:
            return {"customer_channel_id": leg_channel_id(session_id, Leg.CUSTOMER)}
        case CallStatus.CONNECTED:
            return {"bridge_id": call_bridge_id(session_id)}
    return {}


class ClickToCall(Lifecycle):
    """Click-to-call over ARI: start, follow and end calls (the API's Dialer).

    ``connected`` is the ARI event link's: calls are placed only while it is up. Closing
    cancels the facts still being handled. With ``metrics``, the time from
    :meth:`start_call` (the API accepted the call) to Asterisk accepting the agent leg's
    originate is ``ctc_originate_latency_seconds``.
    """

    def __init__(
        self,
        ari: AriClient,
        store: Store,
        settings: CallSettings,
        *,
        connected: asyncio.Event,
        recording_dir: str = "/var/spool/asterisk/recording",
        leg_variables: Mapping[str, str] | None = None,
        metrics: Metrics | None = None,
        breakers: ProviderBreakers | None = None,
    ) -> None:
        self._ari = ari
        self._metrics = metrics
        # sessions started here whose agent leg is not originated yet: when they started
        self._accepted: dict[uuid.UUID, float] = {}
        self._store = store
        self._settings = settings
        self._connected = connected
        # set on every leg dialed (the hangup handler: engine/asterisk/flows/hangup_records.py)
        self._leg_variables = dict(leg_variables or {})
        self._recording_dir = recording_dir.rstrip("/")
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # ended calls waiting for their recording's end: the timer that asks ARI, and how
        # many times it has asked
        self._recording_watch: dict[uuid.UUID, asyncio.TimerHandle] = {}
        self._recording_asked: dict[uuid.UUID, int] = {}
        # legs whose channel ids are not derived from their session (an agent who dialled
        # out): channel id -> session, and each session's such channels
        self._followed: dict[str, uuid.UUID] = {}
        self._followed_by_session: dict[uuid.UUID, set[str]] = {}
        self._hangup_causes: dict[str, int] = {}  # followed channels asked to hang up
        self.transfers = TransferRunner(ari, store, settings, leg_variables=self._leg_variables)
        self.trunks = TrunkRoutes(store, breakers=breakers)

    async def _close(self) -> None:
        for timer in self._recording_watch.values():
            timer.cancel()
        self._recording_watch.clear()
        await cancel_tasks(*self._tasks)

    def subscribe(self, router: AriEventRouter) -> None:
        """Take, from ``router``, the events of click-to-calls: a leg or a transfer target
        entering Stasis (it answered) or ending, and the end of a call's recording."""
        router.on("StasisStart", self._on_channel_up)
        router.on("ChannelDestroyed", self._on_channel_destroyed)
        router.on("RecordingFinished", self._on_recording_ended)
        router.on("RecordingFailed", self._on_recording_ended)
        router.on("PlaybackFinished", self._on_consent_played)
        # a followed channel (an agent's own) entered Stasis from the dialplan: Asterisk
        # ends the app's subscription to it at StasisEnd, so its ChannelDestroyed never
        # comes; its hangup request carries the cause, its StasisEnd is its end
        router.on("ChannelHangupRequest", self._on_hangup_request)
        router.on("StasisEnd", self._on_stasis_end)

    # -- what the API asks for ----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether calls can be placed now (the ARI event link is up)."""
        return self._connected.is_set()

    def start_call(self, session: StoredSession) -> None:
        """Begin dialing a queued session, in the background."""
        self.follow_legs(session)
        self.transfers.new_call(session.id)
        if self._metrics is not None:
            self._accepted[session.id] = time.monotonic()
        self.submit(session.id, Start())

    def writes_behind(self, provider_type: str | None) -> bool:
        """A call's ARI facts are written behind (the journal owns the session)."""
        return True

    async def end_call(self, session: StoredSession, reason: str) -> StoredSession:
        await self.handle(session.id, EndRequested(reason))
        return await self._store.sessions.get(session.tenant_id, session.id)

    async def transfer(
        self, session: StoredSession, kind: TransferType, target: str, leg: Leg
    ) -> StoredTransfer:
        """Start a blind or attended transfer replacing a connected call's ``leg``."""
        async with self.lock(session.id):
            current = await self._store.sessions.get(session.tenant_id, session.id)
            return await self.transfers.begin(current, kind, target, leg)

    async def complete_transfer(self, session: StoredSession) -> StoredTransfer:
        async with self.lock(session.id):
            current = await self._store.sessions.get(session.tenant_id, session.id)
            return await self.transfers.request_fact(current, CompleteRequested(), "complete")

    async def cancel_transfer(self, session: StoredSession) -> StoredTransfer:
        async with self.lock(session.id):
            current = await self._store.sessions.get(session.tenant_id, session.id)
            return await self.transfers.request_fact(current, CancelRequested(), "cancel")

    def follow_legs(self, session: StoredSession) -> None:
        """Route the events of the session's legs whose channel ids are not ours (an
        agent's own channel) to it, until it is released."""
        for leg in Leg:
            channel = current_leg_channel(session, leg)
            if session_of_channel(channel) is None:
                self.follow_channel(channel, session.id)

    def follow_channel(self, channel: str, session_id: uuid.UUID) -> None:
        """Route ``channel``'s events (its end) to ``session_id`` until it is released."""
        self._followed[channel] = session_id
        self._followed_by_session.setdefault(session_id, set()).add(channel)

    def _session_of(self, channel: str) -> uuid.UUID | None:
        return session_of_channel(channel) or self._followed.get(channel)

    def lock(self, session_id: uuid.UUID) -> asyncio.Lock:
        """The session's lock: whoever holds it is the only one changing the call."""
        return self._locks.setdefault(session_id, asyncio.Lock())

    # -- events (on the Stasis app's dispatcher: only submit) ---------------------------------

    def _on_channel_up(self, event: AriEvent) -> bool:
        channel = str(event.get("channel", {}).get("id", ""))
        session_id = self._session_of(channel)
        if session_id is None:
            return False
        self.submit(session_id, ChannelFact(channel, up=True))
        return True

    def _on_channel_destroyed(self, event: AriEvent) -> bool:
        channel = str(event.get("channel", {}).get("id", ""))
        session_id = self._session_of(channel)
        if session_id is None:
            return False
        cause = event.get("cause")
        tech_cause = event.get("tech_cause")
        fact = ChannelFact(
            channel,
            up=False,
            cause=int(cause) if cause is not None else None,
            cause_text=event.get("cause_txt"),
            tech_cause=int(tech_cause) if tech_cause is not None else None,
        )
        self.submit(session_id, fact)
        return True

    def _on_hangup_request(self, event: AriEvent) -> bool:
        channel = str(event.get("channel", {}).get("id", ""))
        if channel not in self._followed:
            return False
        cause = event.get("cause")
        if cause is not None:
            self._hangup_causes[channel] = int(cause)
        return True

    def _on_stasis_end(self, event: AriEvent) -> bool:
        channel = str(event.get("channel", {}).get("id", ""))
        session_id = self._followed.get(channel)
        if session_id is None:
            return False
        cause = self._hangup_causes.pop(channel, None)
        self.submit(session_id, ChannelFact(channel, up=False, cause=cause))
        return True

    def _on_recording_ended(self, event: AriEvent) -> bool:
        recording = event.get("recording", {})
        session_id = session_of_recording(str(recording.get("name", "")))
        if session_id is None:
            return False
        duration = recording.get("duration")
        ms = int(duration) * 1000 if duration is not None else None
        failure = None
        if event.get("type") == "RecordingFailed":
            failure = str(recording.get("cause") or "failed")
        self.submit(session_id, RecordingFinished(ms, failure=failure))
        return True

    def _on_consent_played(self, event: AriEvent) -> bool:
        playback = event.get("playback", {})
        session_id = session_of_consent_playback(str(playback.get("id", "")))
        if session_id is None:
            return False
        media = str(playback.get("media_uri") or "") or None
        failed = playback.get("state") == "failed"  # Asterisk could not play the sound
        self.submit(session_id, ConsentPlayed(media, failed=failed))
        return True

    # -- facts --------------------------------------------------------------------------------

    def submit(self, session_id: uuid.UUID, fact: RawFact) -> None:
        """Handle ``fact`` in the background, after the session's earlier facts."""
        # tasks for one session queue on its lock in creation order (asyncio.Lock is FIFO)
        task = asyncio.create_task(self._handle_logged(session_id, fact))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_logged(self, session_id: uuid.UUID, fact: RawFact) -> None:
        try:
            await self.handle(session_id, fact)
        except CtcError as exc:
            # e.g. the database is away: the fact is lost for this call, the engine goes on
            log.error(
                "stasis.fact_failed", call_id=str(session_id), fact=repr(fact), error=str(exc)
            )
        except Exception:
            log.exception("stasis.fact_crashed", call_id=str(session_id), fact=repr(fact))

    async def handle(self, session_id: uuid.UUID, raw_fact: RawFact) -> None:
        """Apply ``raw_fact`` to the session, holding its lock."""
        async with self.lock(session_id):
            await self.handle_locked(session_id, raw_fact)

    async def handle_locked(self, session_id: uuid.UUID, raw_fact: RawFact) -> None:
        """Apply ``raw_fact`` to the session; the caller holds :meth:`lock`."""
        session = await self._store.sessions.by_id(session_id)
        if session is None:
            log.warning("stasis.unknown_session", call_id=str(session_id))
            return
        bound = log.bind(call_id=str(session_id), tenant_id=str(session.tenant_id))
        ended_before = session.status.is_terminal
        if isinstance(raw_fact, RecordingOverdue):
            found = await self._recording_overdue(session, bound)
            if found is not None:
                session = await self._apply(session, found, bound)
        else:
            applied = await self._route_and_apply(session, raw_fact, bound)
            if applied is None:
                # a fact of a call over and released (e.g. a former transfer target's end)
                # may have looked its transfer up again: forget it again
                if ended_before and not self._waiting_for_recording(session):
                    self._release(session_id)
                return
            session = applied
        # a transfer in flight ends with the call; a late fact of a call released (its
        # transfer ended then) looks nothing up
        if session.status.is_terminal and (not ended_before or self.transfers.follows(session_id)):
            await self.transfers.abort(session, f"call ended ({session.status.value})")
        if not session.status.is_terminal:
            return
        self._accepted.pop(session_id, None)  # ended before its agent leg was dialed
        if self._waiting_for_recording(session):
            self._watch_recording(session_id)
        else:
            self._release(session_id)

    async def _route_and_apply(
        self, session: StoredSession, raw_fact: Fact | TransferFact | ChannelFact, bound: Any
    ) -> StoredSession | None:
        """Apply a fact from Asterisk or the API; None when it concerned a transfer or a
        channel that plays no role any more (nothing more to do for the call)."""
        fact: Fact | TransferFact | None
        if isinstance(raw_fact, ChannelFact) and self._on_customer_trunk(session, raw_fact):
            session, failed_over = await self._trunk_attempt_over(session, raw_fact, bound)
            if failed_over:
                return session
        if isinstance(raw_fact, ChannelFact):
            # a leg's own channel needs no look-up of the transfer in flight
            transfer = None
            if channel_role(session, None, raw_fact.channel) is ChannelRole.STALE:
                transfer = await self.transfers.live_transfer(session)
            fact = route_fact(session, transfer, raw_fact)
            if fact is None:
                bound.debug("stasis.stale_channel_fact", fact=repr(raw_fact))
                if (
                    raw_fact.up
                    and channel_role(session, transfer, raw_fact.channel) is ChannelRole.STALE
                ):
                    # e.g. a target answering after its transfer ended: nobody wants it
                    with contextlib.suppress(AriError):
                        await self._ari.hangup(raw_fact.channel)
                return None
        else:
            fact = raw_fact
        if isinstance(fact, TransferFact):
            if await self.transfers.on_fact(session, fact) is None:
                bound.debug("stasis.transfer_fact_ignored", fact=repr(fact))
            return None
        return await self._apply(session, fact, bound)

    async def _apply(self, session: StoredSession, fact: Fact, bound: Any) -> StoredSession:
        """Let the domain decide on ``fact`` and carry its decision out."""
        # the recording policy is read when it matters: the customer answered, or the
        # consent announcement before the recording finished
        policy = None
        answered = isinstance(fact, Answered) and fact.leg is Leg.CUSTOMER
        if answered or isinstance(fact, ConsentPlayed):
            policy = await self._store.recording.for_call(
                session.tenant_id, session.provider_id, session.direction.value
            )
        record = policy is not None and policy.is_enabled
        consent = RecordingConsent()
        if answered and record:
            consent = await self._recording_consent(session)
        decision = decide(
            session.status,
            fact,
            record=record,
            recording_open=self._waiting_for_recording(session),
            announce=consent.announcement,
            recording_refused=consent.refused.as_payload() if consent.refused else None,
            agent_dialled=session.direction is Direction.OUTBOUND,
        )
        if not decision.steps:
            bound.debug(
                "stasis.fact_ignored", fact=type(fact).__name__, status=session.status.value
            )
        return await self._carry_out(session, decision, bound, policy)

    async def _recording_consent(self, session: StoredSession) -> RecordingConsent:
        """What the tenant's consent rules ask of recording this call."""
        if session.customer_number is None:
            return RecordingConsent()
        rules = await self._store.compliance_rules.rules(session.tenant_id)
        return recording_consent(session.customer_number, rules, session.metadata)

    def _waiting_for_recording(self, session: StoredSession) -> bool:
        return session.recording_path is not None and session.recording_duration_ms is None

    # -- a recording whose end was not told ---------------------------------------------------

    def _watch_recording(self, session_id: uuid.UUID) -> None:
        """Ask ARI about the ended call's recording if its end is not told in time; each
        time ARI could not say, wait twice as long (up to :data:`RECORDING_RECHECK_MAX`)."""
        if session_id in self._recording_watch:
            return
        asked = self._recording_asked.get(session_id, 0)
        delay = min(self._settings.recording_end_timeout * 2**asked, RECORDING_RECHECK_MAX)
        self._recording_watch[session_id] = asyncio.get_running_loop().call_later(
            delay, self._recording_due, session_id
        )

    def _recording_due(self, session_id: uuid.UUID) -> None:
        self._recording_watch.pop(session_id, None)
        self._recording_asked[session_id] = self._recording_asked.get(session_id, 0) + 1
        self.submit(session_id, RecordingOverdue())

    @property
    def recordings_awaited(self) -> int:
        """How many ended calls wait for their recording's end now."""
        return len(self._recording_watch)

    def recheck_recordings(self, also: Iterable[uuid.UUID] = ()) -> int:
        """Ask ARI now about every ended call waiting for its recording's end, and about
        ``also`` (calls ended by an earlier engine whose recordings' ends PostgreSQL lacks):
        after the event link reconnects, an end missed while it was down never comes. How
        many calls were asked about."""
        due = set(also) | set(self._recording_watch)
        for session_id in due:
            self._unwatch_recording(session_id)
            self.submit(session_id, RecordingOverdue())
        return len(due)

    def _unwatch_recording(self, session_id: uuid.UUID) -> None:
        timer = self._recording_watch.pop(session_id, None)
        if timer is not None:
            timer.cancel()

    async def _recording_overdue(
        self, session: StoredSession, bound: Any
    ) -> RecordingFinished | None:
        """What became of an ended call's recording whose end Asterisk did not tell: a
        stored file ends it (estimated duration), no file at all ends it as failed. Still
        live (the call's bridge outlived it), it is stopped, and its end awaited again;
        ARI failing, it is asked again later. None: nothing to apply now."""
        if not (session.status.is_terminal and self._waiting_for_recording(session)):
            return None  # its end was told meanwhile (or the call is still on)
        name = recording_name(session.id)
        try:
            if await self._recording_is_live(name):
                bound.warning("stasis.recording_outlived_call", recording=name)
                # it may end between the look-up and the stop: either way, ask again later
                with contextlib.suppress(AriNotFound):
                    await self._ari.stop_recording(name)
                return None
            await self._ari.stored_recording(name)
        except AriNotFound:
            bound.warning("stasis.recording_missing", recording=name)
            return RecordingFinished(None, failure="Asterisk has no such recording")
        except AriError as exc:
            bound.warning("stasis.recording_unknown", recording=name, error=str(exc))
            return None
        bound.warning("stasis.recording_end_untold", recording=name)
        # the call's talk time is how long it was bridged: the recording starts as the
        # customer answers and ends with the bridge
        return RecordingFinished(session.talk_ms, estimated=True)

    async def _recording_is_live(self, name: str) -> bool:
        try:
            await self._ari.live_recording(name)
        except AriNotFound:
            return False
        return True

    def _release(self, session_id: uuid.UUID) -> None:
        """The call is over and expects no more facts: forget its lock and its transfer,
        and let the journal write it through again after its last batch."""
        self._locks.pop(session_id, None)
        self._unwatch_recording(session_id)
        self._recording_asked.pop(session_id, None)
        self.transfers.forget(session_id)
        self.trunks.forget(session_id)
        for channel in self._followed_by_session.pop(session_id, ()):
            self._followed.pop(channel, None)
            self._hangup_causes.pop(channel, None)
        self._store.sessions.release(session_id)

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
            except (AriError, CarrierError) as exc:
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
            case AnswerLeg():
                # a leg the engine did not dial gets what a dialled one gets at its
                # originate (the session's variables, then the hangup handler that reads
                # them). Gone already (the agent hung up while the call was being checked,
                # before its channel was followed): AriNotFound fails the call here, so
                # the customer is never dialled for nobody
                channel = current_leg_channel(session, step.leg)
                variables = {**leg_channel_variables(sid, step.leg), **self._leg_variables}
                for name, value in variables.items():
                    await self._ari.set_channel_var(channel, name, value)
                await self._ari.answer(channel)
            case PlayRingback():
                with contextlib.suppress(AriNotFound):
                    await self._ari.play(
                        current_leg_channel(session, step.leg),
                        RINGBACK_MEDIA,
                        playback_id=ringback_playback_id(sid, step.leg),
                    )
            case BridgeLegs():
                with contextlib.suppress(AriNotFound):
                    await self._ari.stop_playback(ringback_playback_id(sid, Leg.AGENT))
                bridge = call_bridge_id(sid)
                try:
                    await self._ari.create_bridge(bridge)
                except AriConflict:
                    # made by an engine that died before it could say so: adopt it
                    bound.info("stasis.bridge_adopted", bridge=bridge)
                # adding a channel that is in the bridge already is a no-op in Asterisk
                await self._ari.add_to_bridge(
                    bridge,
                    current_leg_channel(session, Leg.AGENT),
                    current_leg_channel(session, Leg.CUSTOMER),
                )
            case PlayConsent():
                # to both parties on the bridge; its end (PlaybackFinished) starts recording
                await self._ari.play_on_bridge(
                    call_bridge_id(sid), step.media, playback_id=consent_playback_id(sid)
                )
            case StopRecording():
                # not the call's failure: a recording that did not stop ends with its
                # bridge, and its end is settled like any end that was not told
                try:
                    await self._ari.stop_recording(recording_name(sid))
                except AriNotFound:
                    pass
                except AriError as exc:
                    bound.warning("stasis.recording_not_stopped", error=str(exc))
            case DestroyBridge():
                await self.destroy_bridge(call_bridge_id(sid), bound)
            case StartRecording():
                # decided only under an enabled policy (customer answered, or consent played)
                if policy is None:
                    raise RuntimeError(f"call {sid}: StartRecording without a recording policy")
                session = await self._start_recording(session, policy)
            case Hangup():
                # the leg's channel now: a completed transfer's target has replaced it
                with contextlib.suppress(AriNotFound):
                    await self._ari.hangup(current_leg_channel(session, step.leg))
            case Note():
                session, _ = await self._store.sessions.append_event(
                    session.tenant_id,
                    sid,
                    step.event_type,
                    payload=step.payload,
                    changes=step.changes,
                )
        return session

    async def destroy_bridge(self, bridge: str, bound: Any = log) -> bool:
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
            endpoint = dial_string(self._settings, session.agent_number)
            # the agent sees who they are about to talk to
            caller_id = session.customer_number
            ring = self._settings.agent_ring_timeout
        elif (attempt := await self.trunks.first(session)) is not None:
            await self._originate_on_trunks(session, attempt)
            return
        else:
            endpoint = dial_string(self._settings, session.customer_number, outside_line=True)
            # the caller ID chosen at initiate (compliance's CallerIdChooser) or asked for:
            # the INVITE's From, and its P-Asserted-Identity where the trunk endpoint has
            # send_pai = yes (dialplan/pjsip.conf)
            caller_id = session.caller_id or self._settings.default_caller_id
            ring = self._settings.customer_ring_timeout
        try:
            await self._ari.originate(
                endpoint,
                channel_id=leg_channel_id(session.id, leg),
                app_args=leg_stasis_args(session.id, leg),
                caller_id=caller_id,
                ring_timeout=ring,
                variables={**leg_channel_variables(session.id, leg), **self._leg_variables},
            )
        except AriConflict:
            # the leg's channel exists: dialed by an engine that stopped before its status
            # reached PostgreSQL (the resync carries on from there)
            log.info("stasis.leg_adopted", call_id=str(session.id), leg=leg.value)
        accepted = self._accepted.pop(session.id, None) if leg is Leg.AGENT else None
        if accepted is not None and self._metrics is not None:
            self._metrics.originate_latency.observe(time.monotonic() - accepted)

    # -- the customer leg through sip_trunk providers (engine/asterisk/flows/trunks.py) --------

    def _on_customer_trunk(self, session: StoredSession, fact: ChannelFact) -> bool:
        """Whether ``fact`` ends or answers a trunk attempt of the session's customer leg."""
        return (
            session.status is CallStatus.DIALING_CUSTOMER
            and fact.channel == leg_channel_id(session.id, Leg.CUSTOMER)
            and self.trunks.current(session.id) is not None
        )

    async def _trunk_attempt_over(
        self, session: StoredSession, fact: ChannelFact, bound: Any
    ) -> tuple[StoredSession, bool]:
        """Write how the ringing trunk attempt ended (the customer answered, or its channel
        ended with a SIP answer) and dial the next trunk when that answer allows it; whether
        the call failed over (the fact is then consumed: the agent keeps waiting)."""
        attempt = self.trunks.current(session.id)
        if attempt is None:
            raise RuntimeError(f"call {session.id}: no trunk attempt to end")
        outcome = AttemptOutcome.CREATED if fact.up else trunk_outcome(fact.tech_cause, fact.cause)
        following = self.trunks.conclude(session.id, outcome)
        reason = fact.cause_text or ("answered" if fact.up else "ended")
        if fact.tech_cause is not None:
            reason = f"SIP {fact.tech_cause} ({reason})"
        session = await self._note_attempt(
            session,
            attempt,
            outcome,
            reason,
            sip_code=fact.tech_cause,
            cause=fact.cause,
            following=following,
        )
        bound.info(
            "trunk.attempt",
            provider=attempt.provider.name,
            outcome=outcome.value,
            sip_code=fact.tech_cause,
            next_provider=following.provider.name if following else None,
        )
        if following is None:
            return session, False
        try:
            await self._originate_on_trunks(session, following)
        except CarrierRefused:
            # every trunk left refused the originate: the call ends on this attempt's answer
            return session, False
        return session, True

    async def _originate_on_trunks(self, session: StoredSession, attempt: TrunkAttempt) -> None:
        """Originate the customer leg through ``attempt``'s trunk; a trunk the originate
        itself refuses (e.g. no such endpoint: ARI answers 500 "Allocation failed") is an
        attempt not sent, and the next trunk is tried. CarrierRefused when none is left."""
        number = session.customer_number
        if number is None:
            raise AriError(f"session {session.id} has no number to dial for the customer")
        current: TrunkAttempt | None = attempt
        while current is not None:
            try:
                await self._ari.originate(
                    current.config.dial_string(number),
                    channel_id=leg_channel_id(session.id, Leg.CUSTOMER),
                    app_args=leg_stasis_args(session.id, Leg.CUSTOMER),
                    # the trunk's own caller ID, else the one chosen at initiate: the INVITE's
                    # From, and its P-Asserted-Identity where the endpoint has send_pai = yes
                    caller_id=current.config.caller_id
                    or session.caller_id
                    or self._settings.default_caller_id,
                    ring_timeout=self._settings.customer_ring_timeout,
                    variables={
                        **leg_channel_variables(session.id, Leg.CUSTOMER),
                        **self._leg_variables,
                    },
                )
                return
            except AriConflict:
                log.info("stasis.leg_adopted", call_id=str(session.id), leg=Leg.CUSTOMER.value)
                return
            except AriError as exc:
                following = self.trunks.conclude(session.id, AttemptOutcome.NOT_SENT)
                session = await self._note_attempt(
                    session, current, AttemptOutcome.NOT_SENT, str(exc), following=following
                )
                current = following
        raise CarrierRefused(
            ProviderType.SIP_TRUNK, f"no sip_trunk provider could take the call to {number}"
        )

    async def _note_attempt(
        self,
        session: StoredSession,
        attempt: TrunkAttempt,
        outcome: AttemptOutcome,
        reason: str,
        *,
        sip_code: int | None = None,
        cause: int | None = None,
        following: TrunkAttempt | None,
    ) -> StoredSession:
        payload = {
            **attempt.payload(),
            "outcome": outcome.value,
            "reason": reason,
            "sip_code": sip_code,
            "hangup_cause": cause,
            "next_provider": following.provider.name if following else None,
        }
        # the trunk that carried the call is the session's provider (billing, stats, limits)
        carried = outcome is AttemptOutcome.CREATED and attempt.provider.id != session.provider_id
        session, _ = await self._store.sessions.append_event(
            session.tenant_id,
            session.id,
            CallEventType.PROVIDER_ATTEMPT,
            payload=payload,
            changes={"provider_id": attempt.provider.id} if carried else None,
        )
        return session

    async def _start_recording(
        self, session: StoredSession, policy: RecordingPolicy
    ) -> StoredSession:
        fmt = policy.format
        name = recording_name(session.id)
        bridge = call_bridge_id(session.id)
        try:
            await self._ari.record_bridge(
                bridge,
                name,
                fmt=fmt,
                max_duration=policy.max_duration_s or 0,
                beep=policy.beep,
            )
        except AriConflict:
            # in progress already (started by an engine that died before saying so):
            # adopt it if it records this bridge, else the conflict stands
            live = await self._ari.live_recording(name)
            if live.get("target_uri") != f"bridge:{bridge}":
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
        channels = {leg_channel_id(session.id, leg) for leg in Leg}
        channels |= {current_leg_channel(session, leg) for leg in Leg}
        for channel in sorted(channels):
            with contextlib.suppress(AriError):
                await self._ari.hangup(channel)
        await self.destroy_bridge(call_bridge_id(session.id), bound)
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


def channel_role(
    session: StoredSession, transfer: StoredTransfer | None, channel: str
) -> ChannelRole:
    """The role ``channel`` plays in the session now (with its transfer in flight)."""
    return route_channel(
        channel,
        agent=current_leg_channel(session, Leg.AGENT),
        customer=current_leg_channel(session, Leg.CUSTOMER),
        target=transfer.target_channel_id if transfer is not None else None,
    )


def route_fact(
    session: StoredSession, transfer: StoredTransfer | None, fact: ChannelFact
) -> Fact | TransferFact | None:
    """The channel fact as it concerns the session now: a leg's answer or hangup, or the
    transfer target's; None for a channel a completed transfer replaced (or any other
    channel that plays no role any more: ignore it)."""
    role = channel_role(session, transfer, fact.channel)
    parsed = parse_leg_channel_id(fact.channel)
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

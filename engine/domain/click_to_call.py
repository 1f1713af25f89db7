"""What a click-to-call does next: telephony facts in, status changes and commands out.

The flow: ring the agent; when the agent answers, play ringback to them and ring the
customer; when the customer answers, bridge both and (if the tenant wants it) record the
bridge (where a consent rule applies, the consent announcement plays to both first and
the recording starts once it finished; where consent is required and absent, the call is
not recorded). Either side hanging up hangs up the other.

A call an agent dialled from the desk phone (``agent_dialled``: the ``[ctc-agents]`` door,
direction ``outbound``) is the same call with its first step done by the agent: its
``Start`` answers the agent's waiting channel and goes straight to ringing the customer, so
every step from there (the customer's leg, ringback, bridge, recording, ends) is decided
here, once, for both. The adapters (ARI) report facts and
carry out the commands; this module only decides, so every branch is unit-testable.

Legs are named by role (``agent``/``customer``); the adapter derives channel, bridge and
recording ids from the session id, so a resync can tell which channels belong to which
session without any other state.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from engine.domain.call import CallStatus
from engine.domain.event_types import CallEventType, leg_hangup

__all__ = [
    "AnswerLeg",
    "Answered",
    "BridgeLegs",
    "Command",
    "ConsentPlayed",
    "Decision",
    "DestroyBridge",
    "EndRequested",
    "Fact",
    "Hangup",
    "Leg",
    "LegEnded",
    "Note",
    "Originate",
    "PlayConsent",
    "PlayRingback",
    "RecordingFinished",
    "Resume",
    "SetStatus",
    "Start",
    "StartExpired",
    "StartRecording",
    "StopRecording",
    "decide",
    "restart_queued",
    "status_for_unanswered",
]


class Leg(enum.StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"


# Q.850 causes that mean "the called side is busy or declined" and "nobody answered".
_BUSY_CAUSES = frozenset({17, 21})  # user busy, call rejected
_NO_ANSWER_CAUSES = frozenset({18, 19})  # no user responding, no answer (ring timeout)


def status_for_unanswered(cause: int | None) -> CallStatus:
    """The terminal status of a leg that ended before it was answered."""
    if cause in _BUSY_CAUSES:
        return CallStatus.BUSY
    if cause in _NO_ANSWER_CAUSES:
        return CallStatus.NO_ANSWER
    return CallStatus.FAILED


# -- facts (in) --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Start:
    """The session is stored and queued: begin dialing."""


@dataclasses.dataclass(frozen=True, slots=True)
class StartExpired:
    """A queued call whose start was lost (the engine that accepted it died) and that is
    too old to dial now."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Resume:
    """The engine carrying out this call died between two of its steps (the resync after
    a restart found the call waiting): take up where it stopped."""


@dataclasses.dataclass(frozen=True, slots=True)
class Answered:
    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class LegEnded:
    """A leg's channel ended. ``at`` is when Asterisk says it ended (None: now, as the
    event arrives); ``estimated`` marks an end nobody saw (the channel was found gone after
    a reconnect and Asterisk kept no record of it): its time is when we noticed."""

    leg: Leg
    cause: int | None
    cause_text: str | None = None
    at: datetime | None = None
    estimated: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class EndRequested:
    """The API (or an operator) asked to end the call."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingFinished:
    """The call's recording is over. Asterisk said so (``duration_ms`` as it counted; a
    ``failure`` with its cause when the recording failed), or it never did and the engine
    found the file stored: then ``estimated`` is set and the duration is the bridge's
    time from the answer to the end."""

    duration_ms: int | None
    failure: str | None = None
    estimated: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ConsentPlayed:
    """The recording-consent announcement on the call's bridge finished; ``failed``: it
    could not be played (Asterisk's playback state ``failed``: a missing sound), so nobody
    heard it."""

    media: str | None = None
    failed: bool = False


Fact = (
    Start
    | StartExpired
    | Resume
    | Answered
    | LegEnded
    | EndRequested
    | RecordingFinished
    | ConsentPlayed
)


def restart_queued(age: timedelta, deadline: timedelta) -> Start | StartExpired:
    """What to do with a queued call a resync finds. Its start is either in flight in this
    process (a second Start then decides nothing) or was lost with the process that
    accepted it. Young enough, it is started; older, it is failed: an ERP user who clicked
    "call" minutes ago has moved on, and an agent's phone ringing now would surprise them."""
    if age <= deadline:
        return Start()
    seconds = round(deadline.total_seconds())
    return StartExpired(f"not started within {seconds} s (the engine stopped before dialing)")


# -- decisions (out) ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SetStatus:
    status: CallStatus
    event_type: CallEventType
    payload: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # when the change happened, if not now (an end Asterisk recorded while we were away)
    at: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Originate:
    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class AnswerLeg:
    """Answer a leg's channel that is waiting unanswered (an agent who dialled out)."""

    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class PlayRingback:
    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class BridgeLegs:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class PlayConsent:
    """Play the recording-consent announcement ``media`` on the call's bridge (both
    parties hear it); the recording starts when it finished (:class:`ConsentPlayed`)."""

    media: str


@dataclasses.dataclass(frozen=True, slots=True)
class StartRecording:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class StopRecording:
    """The call is ending: stop its recording before its bridge goes. Asterisk 22 then
    tells the recording's end; destroying a bridge it still records loses that event for
    up to 8 % of calls (``bench/originate.py``: 40 of 500, 0 of 500 once stopped first)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DestroyBridge:
    """The call is over: its bridge goes too (Asterisk keeps an empty bridge forever)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Hangup:
    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class Note:
    """A telephony fact worth a ``call_event`` row that changes no status."""

    event_type: CallEventType
    payload: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)


Command = (
    SetStatus
    | AnswerLeg
    | Originate
    | PlayRingback
    | PlayConsent
    | BridgeLegs
    | StartRecording
    | StopRecording
    | Hangup
    | DestroyBridge
    | Note
)


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """Steps to carry out, in order. Status changes are persisted as they come."""

    steps: tuple[Command, ...] = ()

    def __add__(self, other: Decision) -> Decision:
        return Decision(self.steps + other.steps)


NOTHING = Decision()

# once the agent answered: ringback to them while the customer rings
_DIAL_CUSTOMER: tuple[Command, ...] = (
    PlayRingback(Leg.AGENT),
    SetStatus(CallStatus.DIALING_CUSTOMER, CallEventType.CUSTOMER_DIALING),
    Originate(Leg.CUSTOMER),
)


def _cause(fact: LegEnded) -> dict[str, Any]:
    cause: dict[str, Any] = {"hangup_cause": fact.cause, "hangup_cause_text": fact.cause_text}
    if fact.estimated:
        cause["end_estimated"] = True
    return cause


def _ended(
    status: CallStatus, event_type: CallEventType, fact: LegEnded, **reason: str
) -> SetStatus:
    """The terminal status a leg's end leads to, stamped when the leg ended."""
    return SetStatus(status, event_type, _cause(fact), {**_cause(fact), **reason}, at=fact.at)


def _stop_recording(recording_open: bool) -> tuple[StopRecording, ...]:
    """A call ending while recorded stops its recording first (see :class:`StopRecording`)."""
    return (StopRecording(),) if recording_open else ()


def _recording_over(fact: RecordingFinished) -> Note:
    """The recording's end as an event; the duration stored is 0 when none is known, so
    the call no longer waits for one."""
    payload: dict[str, Any] = {"duration_ms": fact.duration_ms}
    if fact.failure is not None:
        payload["failure"] = fact.failure
    if fact.estimated:
        payload["estimated"] = True
    return Note(
        CallEventType.RECORDING_FINISHED,
        payload,
        {"recording_duration_ms": fact.duration_ms or 0},
    )


def _recording_steps(
    record: bool, announce: str | None, refused: Mapping[str, Any] | None
) -> tuple[Command, ...]:
    """What a bridged call does about its recording: nothing, start it, announce first
    (consent), or note that consent is missing and not record."""
    if not record:
        return ()
    if refused is not None:
        return (Note(CallEventType.RECORDING_REFUSED, refused),)
    if announce is not None:
        return (PlayConsent(announce),)
    return (StartRecording(),)


def decide(
    status: CallStatus,
    fact: Fact,
    *,
    record: bool = False,
    recording_open: bool = False,
    announce: str | None = None,
    recording_refused: Mapping[str, Any] | None = None,
    agent_dialled: bool = False,
) -> Decision:
    """The next steps for a click-to-call in ``status`` when ``fact`` happens; ``record``:
    the recording policy says record, ``recording_open``: a recording was started and its
    end is not known yet; ``announce``: the consent announcement to play before recording;
    ``recording_refused``: why consent forbids recording (the rule and reason);
    ``agent_dialled``: the agent placed the call from their phone, whose channel waits for
    the customer (nobody rings the agent).

    Facts that no longer matter (a leg ending after the call already ended, a recording's
    end told twice) decide nothing.
    """
    match fact:
        case Start() if status is CallStatus.QUEUED and agent_dialled:
            return Decision(
                (
                    AnswerLeg(Leg.AGENT),
                    SetStatus(CallStatus.AGENT_ANSWERED, CallEventType.AGENT_ANSWERED),
                    *_DIAL_CUSTOMER,
                )
            )
        case LegEnded(leg=Leg.AGENT) if status is CallStatus.QUEUED and agent_dialled:
            why = "agent hung up before the customer was dialled"
            return Decision(
                (_ended(CallStatus.CANCELED, CallEventType.AGENT_HANGUP, fact, end_reason=why),)
            )
        case Start() if status is CallStatus.QUEUED:
            return Decision(
                (
                    SetStatus(CallStatus.DIALING_AGENT, CallEventType.AGENT_DIALING),
                    Originate(Leg.AGENT),
                )
            )
        case StartExpired() if status is CallStatus.QUEUED:
            reason = {"end_reason": fact.reason}
            return Decision(
                (SetStatus(CallStatus.FAILED, CallEventType.SESSION_START_EXPIRED, reason, reason),)
            )
        case Answered(leg=Leg.AGENT) if status is CallStatus.DIALING_AGENT:
            return Decision(
                (
                    SetStatus(CallStatus.AGENT_ANSWERED, CallEventType.AGENT_ANSWERED),
                    *_DIAL_CUSTOMER,
                )
            )
        case Resume() if status is CallStatus.AGENT_ANSWERED:
            # the agent is waiting; the customer was not dialed (that is stored first)
            return Decision(_DIAL_CUSTOMER)
        case Answered(leg=Leg.CUSTOMER) if status is CallStatus.DIALING_CUSTOMER:
            steps: tuple[Command, ...] = (
                BridgeLegs(),
                SetStatus(CallStatus.CONNECTED, CallEventType.CUSTOMER_ANSWERED),
            )
            return Decision(steps + _recording_steps(record, announce, recording_refused))
        case ConsentPlayed(failed=True) if status is CallStatus.CONNECTED and record:
            # consent was required and nobody heard the announcement: no recording
            unheard = {
                "reason": "the consent announcement could not be played",
                "media": fact.media,
            }
            return Decision((Note(CallEventType.RECORDING_REFUSED, unheard),))
        case ConsentPlayed() if status is CallStatus.CONNECTED and record and not recording_open:
            played = Note(CallEventType.RECORDING_CONSENT_PLAYED, {"media": fact.media})
            return Decision((played, StartRecording()))
        case LegEnded(leg=Leg.AGENT) if status is CallStatus.DIALING_AGENT:
            end = status_for_unanswered(fact.cause)
            return Decision((_ended(end, CallEventType.AGENT_UNANSWERED, fact),))
        case LegEnded(leg=Leg.AGENT) if status in (
            CallStatus.AGENT_ANSWERED,
            CallStatus.DIALING_CUSTOMER,
        ):
            why = "agent hung up before the customer answered"
            return Decision(
                (
                    Hangup(Leg.CUSTOMER),
                    _ended(CallStatus.CANCELED, CallEventType.AGENT_HANGUP, fact, end_reason=why),
                )
            )
        case LegEnded(leg=Leg.CUSTOMER) if status is CallStatus.DIALING_CUSTOMER:
            end = status_for_unanswered(fact.cause)
            return Decision(
                (Hangup(Leg.AGENT), _ended(end, CallEventType.CUSTOMER_UNANSWERED, fact))
            )
        case LegEnded() if status is CallStatus.CONNECTED:
            other = Leg.CUSTOMER if fact.leg is Leg.AGENT else Leg.AGENT
            return Decision(
                (
                    *_stop_recording(recording_open),
                    Hangup(other),
                    _ended(
                        CallStatus.COMPLETED,
                        leg_hangup(fact.leg),
                        fact,
                        end_reason=f"{fact.leg.value} hung up",
                    ),
                    DestroyBridge(),
                )
            )
        case EndRequested() if not status.is_terminal:
            target = CallStatus.COMPLETED if status is CallStatus.CONNECTED else CallStatus.CANCELED
            reason = {"end_reason": fact.reason}
            bridged = (DestroyBridge(),) if status is CallStatus.CONNECTED else ()
            return Decision(
                (
                    *_stop_recording(recording_open),
                    SetStatus(
                        target, CallEventType.SESSION_ENDED, {"source": "api", **reason}, reason
                    ),
                    Hangup(Leg.AGENT),
                    Hangup(Leg.CUSTOMER),
                    *bridged,
                )
            )
        case RecordingFinished() if recording_open:
            return Decision((_recording_over(fact),))
    return NOTHING

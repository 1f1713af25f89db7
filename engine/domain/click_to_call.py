"""What a click-to-call does next: telephony facts in, status changes and commands out.

The flow: ring the agent; when the agent answers, play ringback to them and ring the
customer; when the customer answers, bridge both and (if the tenant wants it) record the
bridge. Either side hanging up hangs up the other. The adapters (ARI) report facts and
carry out the commands; this module only decides, so every branch is unit-testable.

Legs are named by role (``agent``/``customer``); the adapter derives channel, bridge and
recording ids from the session id, so a resync can tell which channels belong to which
session without any other state.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from engine.domain.call import CallStatus

__all__ = [
    "Answered",
    "BridgeLegs",
    "Command",
    "Decision",
    "EndRequested",
    "Fact",
    "Hangup",
    "Leg",
    "LegEnded",
    "Note",
    "Originate",
    "PlayRingback",
    "RecordingFinished",
    "SetStatus",
    "Start",
    "StartRecording",
    "decide",
    "status_for_unanswered",
]


class Leg(enum.StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"


S = CallStatus

# Q.850 causes that mean "the called side is busy or declined" and "nobody answered".
_BUSY_CAUSES = frozenset({17, 21})  # user busy, call rejected
_NO_ANSWER_CAUSES = frozenset({18, 19})  # no user responding, no answer (ring timeout)


def status_for_unanswered(cause: int | None) -> CallStatus:
    """The terminal status of a leg that ended before it was answered."""
    if cause in _BUSY_CAUSES:
        return S.BUSY
    if cause in _NO_ANSWER_CAUSES:
        return S.NO_ANSWER
    return S.FAILED


# -- facts (in) --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Start:
    """The session is stored and queued: begin dialing."""


@dataclasses.dataclass(frozen=True, slots=True)
class Answered:
    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class LegEnded:
    leg: Leg
    cause: int | None
    cause_text: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class EndRequested:
    """The API (or an operator) asked to end the call."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingFinished:
    duration_ms: int | None


Fact = Start | Answered | LegEnded | EndRequested | RecordingFinished


# -- decisions (out) ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SetStatus:
    status: CallStatus
    event_type: str
    payload: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Originate:
    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class PlayRingback:
    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class BridgeLegs:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class StartRecording:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Hangup:
    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class Note:
    """A telephony fact worth a ``call_event`` row that changes no status."""

    event_type: str
    payload: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)


Command = SetStatus | Originate | PlayRingback | BridgeLegs | StartRecording | Hangup | Note


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """Steps to carry out, in order. Status changes are persisted as they come."""

    steps: tuple[Command, ...] = ()

    def __add__(self, other: Decision) -> Decision:
        return Decision(self.steps + other.steps)


NOTHING = Decision()


def _cause(fact: LegEnded) -> dict[str, Any]:
    return {"hangup_cause": fact.cause, "hangup_cause_text": fact.cause_text}


def decide(status: CallStatus, fact: Fact, *, record: bool = False) -> Decision:
    """The next steps for a click-to-call in ``status`` when ``fact`` happens.

    Facts that no longer matter (a leg ending after the call already ended) decide nothing.
    """
    match fact:
        case Start() if status is S.QUEUED:
            return Decision((SetStatus(S.DIALING_AGENT, "agent.dialing"), Originate(Leg.AGENT)))
        case Answered(leg=Leg.AGENT) if status is S.DIALING_AGENT:
            return Decision(
                (
                    SetStatus(S.AGENT_ANSWERED, "agent.answered"),
                    PlayRingback(Leg.AGENT),
                    SetStatus(S.DIALING_CUSTOMER, "customer.dialing"),
                    Originate(Leg.CUSTOMER),
                )
            )
        case Answered(leg=Leg.CUSTOMER) if status is S.DIALING_CUSTOMER:
            steps: tuple[Command, ...] = (
                BridgeLegs(),
                SetStatus(S.CONNECTED, "customer.answered"),
            )
            return Decision(steps + ((StartRecording(),) if record else ()))
        case LegEnded(leg=Leg.AGENT) if status is S.DIALING_AGENT:
            end = status_for_unanswered(fact.cause)
            return Decision((SetStatus(end, "agent.unanswered", _cause(fact), _cause(fact)),))
        case LegEnded(leg=Leg.AGENT) if status in (S.AGENT_ANSWERED, S.DIALING_CUSTOMER):
            reason = {"end_reason": "agent hung up before the customer answered"}
            return Decision(
                (
                    Hangup(Leg.CUSTOMER),
                    SetStatus(S.CANCELED, "agent.hangup", _cause(fact), {**_cause(fact), **reason}),
                )
            )
        case LegEnded(leg=Leg.CUSTOMER) if status is S.DIALING_CUSTOMER:
            end = status_for_unanswered(fact.cause)
            return Decision(
                (
                    Hangup(Leg.AGENT),
                    SetStatus(end, "customer.unanswered", _cause(fact), _cause(fact)),
                )
            )
        case LegEnded() if status is S.CONNECTED:
            other = Leg.CUSTOMER if fact.leg is Leg.AGENT else Leg.AGENT
            reason = {"end_reason": f"{fact.leg.value} hung up"}
            return Decision(
                (
                    Hangup(other),
                    SetStatus(
                        S.COMPLETED,
                        f"{fact.leg.value}.hangup",
                        _cause(fact),
                        {**_cause(fact), **reason},
                    ),
                )
            )
        case EndRequested() if not status.is_terminal:
            target = S.COMPLETED if status is S.CONNECTED else S.CANCELED
            reason = {"end_reason": fact.reason}
            return Decision(
                (
                    SetStatus(target, "session.ended", {"source": "api", **reason}, reason),
                    Hangup(Leg.AGENT),
                    Hangup(Leg.CUSTOMER),
                )
            )
        case RecordingFinished():
            return Decision(
                (
                    Note(
                        "recording.finished",
                        {"duration_ms": fact.duration_ms},
                        {"recording_duration_ms": fact.duration_ms},
                    ),
                )
            )
    return NOTHING

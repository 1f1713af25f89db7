"""What a carrier's status webhook means for a session: pure decisions, no I/O.

A carrier (Twilio, Exotel, Vonage, mCube) tells us about a two-leg click-to-call in its own
words. Each adapter parses a verified webhook into a :class:`CarrierFact`: the carrier's raw
status kept as it came, the leg it is about, the carrier's own dedupe key, and the session
status it maps to through that carrier's table below (sources: ``CARRIERS.md`` section 6).
:func:`decide` then says what the fact does to a session in its current status.

Why here: the same rules hold whichever carrier carried the call, and every rule about order
is the state machine's (:mod:`engine.domain.call`), not the adapters'.

Order rules (carriers document out-of-order delivery for Twilio and Vonage):

- Never backwards: a fact whose status the session has already passed (a Twilio ``ringing``
  arriving after ``in-progress``; an Exotel ``answered`` after the terminal callback) changes
  nothing. Twilio's ``SequenceNumber`` orders one leg's callbacks and is part of the dedupe
  key; a lower one arriving late is exactly such a stale fact.
- Catching up: carriers skip statuses (Exotel reports only ``answered`` and the terminal
  state); a fact ahead of the session moves it along the shortest legal path, each step
  stamped with the fact's time, so every session has the same timeline columns.
- A customer-leg outcome passes through ``dialing_customer`` (a customer's busy is never
  the agent's busy, even when the agent's ``answered`` was lost).
- ``completed`` on a leg that was never answered is not an outcome: Vonage may send
  ``completed`` before the leg's ``busy``/``timeout`` (the failure/completed swap), and
  Twilio's parent (agent) leg ``completed`` before the customer connected means only the
  agent talked; the customer leg's own status decides. An agent leg that answered and
  completed while the customer was never dialled is ``canceled``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from engine.domain.call import TRANSITIONS, CallStatus
from engine.domain.click_to_call import Leg
from engine.domain.event_types import CallEventType, leg_hangup
from engine.domain.providers import ProviderType

__all__ = [
    "CARRIER_STATUSES",
    "CarrierFact",
    "Decision",
    "StatusMeaning",
    "decide",
    "event_for",
    "meaning",
    "path_to",
]


class StatusMeaning(enum.StrEnum):
    """What a carrier status says about its leg, before the session is looked at."""

    CREATED = "created"  # the carrier accepted the call; nothing rang yet
    RINGING = "ringing"
    ANSWERED = "answered"
    COMPLETED = "completed"  # the leg ended after audio flowed (or so the carrier says)
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    CANCELED = "canceled"


# Each carrier's raw status -> meaning, from its documented vocabulary (CARRIERS.md 1.3,
# 2.3, 3.3, 4). Raw values are compared lower-cased; a value missing here is recorded as
# a fact that changes nothing.
CARRIER_STATUSES: Final[Mapping[ProviderType, Mapping[str, StatusMeaning]]] = {
    ProviderType.TWILIO: {
        "queued": StatusMeaning.CREATED,
        "initiated": StatusMeaning.RINGING,
        "ringing": StatusMeaning.RINGING,
        "answered": StatusMeaning.ANSWERED,
        "in-progress": StatusMeaning.ANSWERED,
        "completed": StatusMeaning.COMPLETED,
        "busy": StatusMeaning.BUSY,
        "no-answer": StatusMeaning.NO_ANSWER,
        "failed": StatusMeaning.FAILED,
        "canceled": StatusMeaning.CANCELED,
    },
    ProviderType.VONAGE: {
        "started": StatusMeaning.RINGING,
        "ringing": StatusMeaning.RINGING,
        "answered": StatusMeaning.ANSWERED,
        "completed": StatusMeaning.COMPLETED,
        "busy": StatusMeaning.BUSY,
        "rejected": StatusMeaning.BUSY,
        "timeout": StatusMeaning.NO_ANSWER,
        "unanswered": StatusMeaning.NO_ANSWER,
        "failed": StatusMeaning.FAILED,
        "cancelled": StatusMeaning.CANCELED,
    },
    # Exotel's connect: 'answered' (EventType) means both legs are bridged; the terminal
    # Status is the call's outcome (completed, busy, no-answer, failed)
    ProviderType.EXOTEL: {
        "queued": StatusMeaning.CREATED,
        "in-progress": StatusMeaning.ANSWERED,
        "answered": StatusMeaning.ANSWERED,
        "completed": StatusMeaning.COMPLETED,
        "busy": StatusMeaning.BUSY,
        "no-answer": StatusMeaning.NO_ANSWER,
        "failed": StatusMeaning.FAILED,
        "canceled": StatusMeaning.CANCELED,
    },
    # mCube's dialstatus, sent once the call is over
    ProviderType.MCUBE: {
        "answer": StatusMeaning.COMPLETED,
        "executive busy": StatusMeaning.BUSY,
        "busy": StatusMeaning.BUSY,
        "noanswer": StatusMeaning.NO_ANSWER,
        "cancel": StatusMeaning.CANCELED,
    },
}


def meaning(provider_type: ProviderType, raw_status: str) -> StatusMeaning | None:
    """What ``raw_status`` of ``provider_type`` means (None: nothing we act on)."""
    return CARRIER_STATUSES.get(provider_type, {}).get(raw_status.strip().lower())


@dataclasses.dataclass(frozen=True, slots=True)
class CarrierFact:
    """One verified carrier webhook, parsed.

    ``call_id`` is the id the session recorded when the call was placed (Twilio: the parent
    CallSid; Vonage: the conversation uuid; Exotel: the CallSid; mCube: the callid).
    ``leg`` is None when the carrier reports the call as a whole (Exotel, mCube).
    """

    provider_type: ProviderType
    call_id: str
    raw_status: str
    dedupe_key: str
    leg: Leg | None = None
    leg_call_id: str | None = None  # the leg's own id where it differs from call_id
    sequence: int | None = None  # Twilio SequenceNumber (per leg)
    occurred_at: datetime | None = None  # the carrier's timestamp, when it sends one
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def meaning(self) -> StatusMeaning | None:
        return meaning(self.provider_type, self.raw_status)

    @property
    def terminal(self) -> bool:
        found = self.meaning
        return found is not None and found not in (
            StatusMeaning.CREATED,
            StatusMeaning.RINGING,
            StatusMeaning.ANSWERED,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The statuses to pass through, in order (empty: the fact changes nothing), and why."""

    path: tuple[CallStatus, ...]
    reason: str

    @property
    def target(self) -> CallStatus | None:
        return self.path[-1] if self.path else None


def path_to(
    current: CallStatus, target: CallStatus, *, via: CallStatus | None = None
) -> tuple[CallStatus, ...] | None:
    """The shortest legal path from ``current`` to ``target`` (excluding ``current``), that
    passes through ``via`` when given and not yet passed; None when there is none (the
    session is past ``target`` or ended): a stale fact."""
    if current is target:
        return ()
    if via is not None and via is not current:
        first = _shortest(current, via)
        if first is not None:
            rest = _shortest(via, target)
            if rest is not None:
                return first + rest
            return None
    return _shortest(current, target)


def _shortest(start: CallStatus, goal: CallStatus) -> tuple[CallStatus, ...] | None:
    if start is goal:
        return ()
    came_from: dict[CallStatus, CallStatus] = {}
    queue = collections.deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(TRANSITIONS[node]):
            if nxt in came_from or nxt is start:
                continue
            came_from[nxt] = node
            if nxt is goal:
                path = [goal]
                while came_from[path[-1]] is not start:
                    path.append(came_from[path[-1]])
                return tuple(reversed(path))
            queue.append(nxt)
    return None


# (leg, meaning) -> (target, the status the path must pass through)
_CUSTOMER: Final[Mapping[StatusMeaning, tuple[CallStatus, CallStatus | None]]] = {
    StatusMeaning.RINGING: (CallStatus.DIALING_CUSTOMER, None),
    StatusMeaning.ANSWERED: (CallStatus.CONNECTED, None),
    StatusMeaning.BUSY: (CallStatus.BUSY, CallStatus.DIALING_CUSTOMER),
    StatusMeaning.NO_ANSWER: (CallStatus.NO_ANSWER, CallStatus.DIALING_CUSTOMER),
    StatusMeaning.FAILED: (CallStatus.FAILED, CallStatus.DIALING_CUSTOMER),
    StatusMeaning.CANCELED: (CallStatus.CANCELED, CallStatus.DIALING_CUSTOMER),
}
_AGENT: Final[Mapping[StatusMeaning, tuple[CallStatus, CallStatus | None]]] = {
    StatusMeaning.RINGING: (CallStatus.DIALING_AGENT, None),
    StatusMeaning.ANSWERED: (CallStatus.AGENT_ANSWERED, None),
    StatusMeaning.BUSY: (CallStatus.BUSY, None),
    StatusMeaning.NO_ANSWER: (CallStatus.NO_ANSWER, None),
    StatusMeaning.FAILED: (CallStatus.FAILED, None),
    StatusMeaning.CANCELED: (CallStatus.CANCELED, None),
}
# a carrier reporting the whole call (Exotel, mCube): its outcome is the customer's
_WHOLE: Final[Mapping[StatusMeaning, tuple[CallStatus, CallStatus | None]]] = {
    StatusMeaning.ANSWERED: (CallStatus.CONNECTED, None),
    StatusMeaning.COMPLETED: (CallStatus.COMPLETED, CallStatus.CONNECTED),
    StatusMeaning.BUSY: (CallStatus.BUSY, None),
    StatusMeaning.NO_ANSWER: (CallStatus.NO_ANSWER, None),
    StatusMeaning.FAILED: (CallStatus.FAILED, None),
    StatusMeaning.CANCELED: (CallStatus.CANCELED, None),
}


def decide(current: CallStatus, fact: CarrierFact, *, connected: bool) -> Decision:
    """What ``fact`` does to a session now in ``current`` (``connected``: the customer
    answered at some point). See the module docstring for the order rules."""
    found = fact.meaning
    if found is None:
        return Decision((), f"status {fact.raw_status!r} is not one we act on")
    if found is StatusMeaning.CREATED:
        return Decision((), "the carrier accepted the call")
    if current.is_terminal:
        return Decision((), f"the session already ended ({current.value})")
    target: CallStatus
    via: CallStatus | None
    if found is StatusMeaning.COMPLETED and fact.leg is not None:
        if connected:
            target, via = CallStatus.COMPLETED, None
        elif fact.leg is Leg.AGENT and current is CallStatus.AGENT_ANSWERED:
            target, via = CallStatus.CANCELED, None
        else:
            return Decision((), "completed on a leg that was never bridged: its outcome decides")
    elif fact.leg is Leg.CUSTOMER:
        target, via = _CUSTOMER[found]
    elif fact.leg is Leg.AGENT:
        if found is StatusMeaning.ANSWERED and current in (
            CallStatus.DIALING_CUSTOMER,
            CallStatus.CONNECTED,
        ):
            return Decision((), "the agent's answer is already behind the session")
        target, via = _AGENT[found]
    else:
        target, via = _WHOLE[found]
    path = path_to(current, target, via=via)
    if path is None:
        return Decision((), f"stale: the session is {current.value}, past {target.value}")
    if not path:
        return Decision((), f"the session is already {current.value}")
    return Decision(path, f"{fact.provider_type.value} {fact.raw_status}")


def event_for(status_from: CallStatus, status_to: CallStatus, leg: Leg | None) -> CallEventType:
    """The event a carrier-driven step records: the same types the Asterisk flow writes."""
    match status_to:
        case CallStatus.DIALING_AGENT:
            return CallEventType.AGENT_DIALING
        case CallStatus.AGENT_ANSWERED:
            return CallEventType.AGENT_ANSWERED
        case CallStatus.DIALING_CUSTOMER:
            return CallEventType.CUSTOMER_DIALING
        case CallStatus.CONNECTED:
            return CallEventType.CUSTOMER_ANSWERED
        case CallStatus.COMPLETED | CallStatus.CANCELED:
            return leg_hangup(leg or Leg.CUSTOMER)
        case CallStatus.BUSY | CallStatus.NO_ANSWER:
            if status_from is CallStatus.DIALING_AGENT:
                return CallEventType.AGENT_UNANSWERED
            return CallEventType.CUSTOMER_UNANSWERED
    return CallEventType.CALL_FAILED

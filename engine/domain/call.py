"""The call session state machine.

A session is one logical call. Its status moves only along the edges of
:data:`TRANSITIONS`; anything else raises :class:`~engine.errors.IllegalTransition`, so an
out-of-order Asterisk event or a wrong API request can never silently overwrite state.

The machine also decides what a transition means for the session's timeline (which
timestamp it sets) and, on the terminal step, the ring and talk durations — the store
only persists what :meth:`CallSession.transition` returns.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.errors import IllegalTransition

__all__ = [
    "INBOUND_TRANSITIONS",
    "LIVE_STATUSES",
    "OUTBOUND_TRANSITIONS",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "CallSession",
    "CallStatus",
    "Direction",
    "Transition",
    "check_transition",
]


class CallStatus(enum.StrEnum):
    QUEUED = "queued"
    DIALING_AGENT = "dialing_agent"
    AGENT_ANSWERED = "agent_answered"
    DIALING_CUSTOMER = "dialing_customer"
    CONNECTED = "connected"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    CANCELED = "canceled"
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


class Direction(enum.StrEnum):
    CLICK_TO_CALL = "click_to_call"
    INBOUND = "inbound"
    OUTBOUND = "outbound"


TERMINAL_STATUSES: frozenset[CallStatus] = frozenset(
    {
        CallStatus.COMPLETED,
        CallStatus.BUSY,
        CallStatus.NO_ANSWER,
        CallStatus.FAILED,
        CallStatus.CANCELED,
        CallStatus.REJECTED,
    }
)
LIVE_STATUSES: frozenset[CallStatus] = frozenset(set(CallStatus) - TERMINAL_STATUSES)

# Every legal edge. Terminal statuses have none: a finished call stays finished.
TRANSITIONS: Mapping[CallStatus, frozenset[CallStatus]] = {
    # rejected: compliance or blocklist said no before anything was dialled
    CallStatus.QUEUED: frozenset(
        {CallStatus.DIALING_AGENT, CallStatus.CANCELED, CallStatus.REJECTED, CallStatus.FAILED}
    ),
    CallStatus.DIALING_AGENT: frozenset(
        {
            CallStatus.AGENT_ANSWERED,
            CallStatus.BUSY,
            CallStatus.NO_ANSWER,
            CallStatus.FAILED,
            CallStatus.CANCELED,
        }
    ),
    # the agent hung up before we dialled the customer: canceled, not completed
    CallStatus.AGENT_ANSWERED: frozenset(
        {CallStatus.DIALING_CUSTOMER, CallStatus.FAILED, CallStatus.CANCELED}
    ),
    CallStatus.DIALING_CUSTOMER: frozenset(
        {
            CallStatus.CONNECTED,
            CallStatus.BUSY,
            CallStatus.NO_ANSWER,
            CallStatus.FAILED,
            CallStatus.CANCELED,
        }
    ),
    CallStatus.CONNECTED: frozenset({CallStatus.COMPLETED, CallStatus.FAILED}),
    **{t: frozenset() for t in TERMINAL_STATUSES},
}

# An inbound call (a caller reaching the IVR): created when it enters Stasis, connected once
# answered, over when the caller (or the IVR) hangs up. Transfers keep it connected.
INBOUND_TRANSITIONS: Mapping[CallStatus, frozenset[CallStatus]] = {
    CallStatus.QUEUED: frozenset({CallStatus.CONNECTED, CallStatus.CANCELED, CallStatus.FAILED}),
    CallStatus.CONNECTED: frozenset({CallStatus.COMPLETED, CallStatus.FAILED}),
    **{s: frozenset() for s in CallStatus if s not in (CallStatus.QUEUED, CallStatus.CONNECTED)},
}

# A call an agent placed from the desk phone (direction outbound): the agent's leg is up as
# the session is created (the agent dialled), so it goes straight to agent_answered and
# never has a dialing_agent step; the rest is a click-to-call's.
OUTBOUND_TRANSITIONS: Mapping[CallStatus, frozenset[CallStatus]] = {
    **TRANSITIONS,
    CallStatus.QUEUED: frozenset(
        {CallStatus.AGENT_ANSWERED, CallStatus.CANCELED, CallStatus.REJECTED, CallStatus.FAILED}
    ),
    CallStatus.DIALING_AGENT: frozenset(),
}

_GRAPHS: Mapping[Direction, Mapping[CallStatus, frozenset[CallStatus]]] = {
    Direction.CLICK_TO_CALL: TRANSITIONS,
    Direction.INBOUND: INBOUND_TRANSITIONS,
    Direction.OUTBOUND: OUTBOUND_TRANSITIONS,
}

# Which timeline column a status stamps when it is entered.
_STAMPS: Mapping[CallStatus, str] = {
    CallStatus.DIALING_AGENT: "dialing_agent_at",
    CallStatus.AGENT_ANSWERED: "agent_answered_at",
    CallStatus.DIALING_CUSTOMER: "dialing_customer_at",
    CallStatus.CONNECTED: "connected_at",
    **dict.fromkeys(TERMINAL_STATUSES, "ended_at"),
}


def check_transition(
    current: CallStatus | str,
    target: CallStatus | str,
    direction: Direction = Direction.CLICK_TO_CALL,
) -> CallStatus:
    """Return ``target`` as a :class:`CallStatus` if ``current -> target`` is legal for a
    call in ``direction``."""
    try:
        cur = CallStatus(current)
        tgt = CallStatus(target)
    except ValueError as exc:
        raise IllegalTransition(str(current), str(target)) from exc
    graph = _GRAPHS[direction]
    if tgt not in graph[cur]:
        raise IllegalTransition(cur.value, tgt.value)
    return tgt


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """What one legal status change does to a session row."""

    status_from: CallStatus
    status_to: CallStatus
    at: datetime
    # column name -> value, for the store to write along with the status
    changes: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class CallSession:
    """The part of a session the state machine needs to decide a transition."""

    status: CallStatus
    created_at: datetime
    direction: Direction = Direction.CLICK_TO_CALL
    dialing_agent_at: datetime | None = None
    agent_answered_at: datetime | None = None
    dialing_customer_at: datetime | None = None
    connected_at: datetime | None = None
    ended_at: datetime | None = None

    def transition(self, target: CallStatus | str, at: datetime) -> Transition:
        """Decide the change to ``target`` at time ``at``; raise if it is illegal."""
        tgt = check_transition(self.status, target, self.direction)
        changes: dict[str, Any] = {"status": tgt.value, _STAMPS[tgt]: at}
        if tgt.is_terminal:
            changes.update(self._durations(at))
        return Transition(self.status, tgt, at, changes)

    def _durations(self, ended_at: datetime) -> dict[str, int]:
        # ring time: from the first dial until someone answered (or the call ended
        # unanswered); an agent who dialled out was never rung: only the customer rang
        rang_from = self.dialing_agent_at or self.dialing_customer_at
        answered = self.agent_answered_at or self.connected_at
        if self.direction is Direction.OUTBOUND:
            answered = self.connected_at
        out: dict[str, int] = {}
        if rang_from is not None:
            out["ring_ms"] = _ms(rang_from, answered or ended_at)
        if self.connected_at is not None:
            out["talk_ms"] = _ms(self.connected_at, ended_at)
        return out


def _ms(start: datetime, end: datetime) -> int:
    return max(0, round((end - start).total_seconds() * 1000))

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from engine.domain.call import (
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    TRANSITIONS,
    CallSession,
    CallStatus,
    check_transition,
)
from engine.errors import CtcError, IllegalTransition

LEGAL = {
    (CallStatus.QUEUED, CallStatus.DIALING_AGENT),
    (CallStatus.QUEUED, CallStatus.CANCELED),
    (CallStatus.QUEUED, CallStatus.REJECTED),
    (CallStatus.QUEUED, CallStatus.FAILED),
    (CallStatus.DIALING_AGENT, CallStatus.AGENT_ANSWERED),
    (CallStatus.DIALING_AGENT, CallStatus.BUSY),
    (CallStatus.DIALING_AGENT, CallStatus.NO_ANSWER),
    (CallStatus.DIALING_AGENT, CallStatus.FAILED),
    (CallStatus.DIALING_AGENT, CallStatus.CANCELED),
    (CallStatus.AGENT_ANSWERED, CallStatus.DIALING_CUSTOMER),
    (CallStatus.AGENT_ANSWERED, CallStatus.FAILED),
    (CallStatus.AGENT_ANSWERED, CallStatus.CANCELED),
    (CallStatus.DIALING_CUSTOMER, CallStatus.CONNECTED),
    (CallStatus.DIALING_CUSTOMER, CallStatus.BUSY),
    (CallStatus.DIALING_CUSTOMER, CallStatus.NO_ANSWER),
    (CallStatus.DIALING_CUSTOMER, CallStatus.FAILED),
    (CallStatus.DIALING_CUSTOMER, CallStatus.CANCELED),
    (CallStatus.CONNECTED, CallStatus.COMPLETED),
    (CallStatus.CONNECTED, CallStatus.FAILED),
}
ALL_PAIRS = list(itertools.product(CallStatus, CallStatus))
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_the_table_is_exactly_the_documented_graph() -> None:
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert table == LEGAL


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL))
def test_every_legal_transition_is_accepted(current: CallStatus, target: CallStatus) -> None:
    assert check_transition(current, target) is target
    assert check_transition(current.value, target.value) is target


@pytest.mark.parametrize(("current", "target"), [p for p in ALL_PAIRS if p not in LEGAL])
def test_every_illegal_transition_raises(current: CallStatus, target: CallStatus) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, target)
    assert info.value.current == current.value
    assert info.value.target == target.value
    assert isinstance(info.value, CtcError)
    assert f"{current.value} -> {target.value}" in str(info.value)


def test_unknown_status_is_an_illegal_transition_not_a_value_error() -> None:
    with pytest.raises(IllegalTransition):
        check_transition("queued", "ringing")
    with pytest.raises(IllegalTransition):
        check_transition("bogus", "queued")


def test_terminal_statuses_have_no_way_out() -> None:
    assert TERMINAL_STATUSES.isdisjoint(LIVE_STATUSES)
    assert set(CallStatus) == TERMINAL_STATUSES | LIVE_STATUSES
    for status in TERMINAL_STATUSES:
        assert status.is_terminal
        assert not TRANSITIONS[status]


def test_every_live_status_can_reach_a_terminal_one() -> None:
    for status in LIVE_STATUSES:
        seen, todo = set(), [status]
        while todo:
            s = todo.pop()
            seen.add(s)
            todo.extend(TRANSITIONS[s] - seen)
        assert seen & TERMINAL_STATUSES, status


def test_happy_path_stamps_the_timeline_and_computes_durations() -> None:
    session = CallSession(status=CallStatus.QUEUED, created_at=T0)
    steps = [
        (CallStatus.DIALING_AGENT, 1, "dialing_agent_at"),
        (CallStatus.AGENT_ANSWERED, 4, "agent_answered_at"),
        (CallStatus.DIALING_CUSTOMER, 5, "dialing_customer_at"),
        (CallStatus.CONNECTED, 9, "connected_at"),
    ]
    for status, second, column in steps:
        at = T0 + timedelta(seconds=second)
        change = session.transition(status, at)
        assert change.changes == {"status": status.value, column: at}
        session = CallSession(**{**_fields(session), "status": status, column: at})
    end = session.transition(CallStatus.COMPLETED, T0 + timedelta(seconds=39))
    assert end.status_from is CallStatus.CONNECTED
    assert end.status_to is CallStatus.COMPLETED
    assert end.changes["ended_at"] == T0 + timedelta(seconds=39)
    assert end.changes["ring_ms"] == 3000  # dialing agent -> agent answered
    assert end.changes["talk_ms"] == 30000  # connected -> ended


def test_unanswered_call_has_ring_time_and_no_talk_time() -> None:
    session = CallSession(
        status=CallStatus.DIALING_AGENT, created_at=T0, dialing_agent_at=T0 + timedelta(seconds=1)
    )
    end = session.transition(CallStatus.NO_ANSWER, T0 + timedelta(seconds=31))
    assert end.changes["ring_ms"] == 30000
    assert "talk_ms" not in end.changes


def test_canceled_before_dialing_has_no_durations() -> None:
    end = CallSession(status=CallStatus.QUEUED, created_at=T0).transition(CallStatus.CANCELED, T0)
    assert end.changes == {"status": "canceled", "ended_at": T0}


def test_illegal_transition_on_a_session_raises() -> None:
    with pytest.raises(IllegalTransition):
        CallSession(status=CallStatus.COMPLETED, created_at=T0).transition(CallStatus.CONNECTED, T0)


def _fields(session: CallSession) -> dict[str, object]:
    return {f: getattr(session, f) for f in session.__slots__}


INBOUND_LEGAL = {
    (CallStatus.QUEUED, CallStatus.CONNECTED),
    (CallStatus.QUEUED, CallStatus.CANCELED),
    (CallStatus.QUEUED, CallStatus.FAILED),
    (CallStatus.CONNECTED, CallStatus.COMPLETED),
    (CallStatus.CONNECTED, CallStatus.FAILED),
}


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS)
def test_inbound_calls_have_their_own_graph(current: CallStatus, target: CallStatus) -> None:
    from engine.domain.call import Direction

    if (current, target) in INBOUND_LEGAL:
        assert check_transition(current, target, Direction.INBOUND) is target
    else:
        with pytest.raises(IllegalTransition):
            check_transition(current, target, Direction.INBOUND)


def test_an_inbound_session_connects_without_dialing() -> None:
    from engine.domain.call import Direction

    session = CallSession(status=CallStatus.QUEUED, created_at=T0, direction=Direction.INBOUND)
    change = session.transition(CallStatus.CONNECTED, T0 + timedelta(seconds=1))
    assert change.changes["connected_at"] == T0 + timedelta(seconds=1)

"""An agent's state from its newest log row and its newest click-to-call: calls move it
(offered → ringing, answered → on_call, ended → wrap_up → available), wrap-up ends by
itself, the older report vocabulary still reads, and the log gives occupancy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.domain.agent_state import (
    RING_LIMIT,
    AgentStatus,
    CallFact,
    LoggedState,
    agent_status,
    occupancy,
    status_of,
)

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
WRAP = timedelta(seconds=30)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_an_agent_never_heard_of_is_available() -> None:
    assert agent_status(None, None, now=T0, wrap_up=WRAP) == (AgentStatus.AVAILABLE, None)


@pytest.mark.parametrize(
    ("activity", "status"),
    [
        ("login", AgentStatus.AVAILABLE),
        ("logout", AgentStatus.OFFLINE),
        ("busy", AgentStatus.ON_CALL),
        ("break", AgentStatus.BREAK),
        ("ringing", AgentStatus.RINGING),
    ],
)
def test_the_logs_older_vocabulary_still_reads(activity: str, status: AgentStatus) -> None:
    assert status_of(activity) is status


def test_a_live_click_to_call_decides_before_any_report() -> None:
    report = LoggedState("available", _at(100))
    ringing = CallFact(live=True, ringing=True, at=_at(50))
    talking = CallFact(live=True, ringing=False, at=_at(60))
    assert agent_status(report, ringing, now=_at(200), wrap_up=WRAP) == (
        AgentStatus.RINGING,
        _at(50),
    )
    assert agent_status(report, talking, now=_at(200), wrap_up=WRAP)[0] is AgentStatus.ON_CALL


def test_an_answered_call_that_ended_is_followed_by_a_timed_wrap_up() -> None:
    ended = CallFact(live=False, ringing=False, at=_at(100), answered=True)
    assert agent_status(None, ended, now=_at(110), wrap_up=WRAP) == (AgentStatus.WRAP_UP, _at(100))
    assert agent_status(None, ended, now=_at(130), wrap_up=WRAP) == (
        AgentStatus.AVAILABLE,
        _at(130),
    )
    # a report made after the call ended is newer: it decides
    report = LoggedState("break", _at(105))
    assert agent_status(report, ended, now=_at(110), wrap_up=WRAP)[0] is AgentStatus.BREAK
    # an unanswered call leaves the reported state as it was
    missed = CallFact(live=False, ringing=False, at=_at(100))
    early = LoggedState("break", _at(10))
    assert agent_status(early, missed, now=_at(110), wrap_up=WRAP)[0] is AgentStatus.BREAK


def test_a_logged_wrap_up_ends_at_its_until_or_after_the_tenants_time() -> None:
    until = LoggedState("wrap_up", _at(0), {"until": _at(60).isoformat()})
    assert agent_status(until, None, now=_at(59), wrap_up=WRAP)[0] is AgentStatus.WRAP_UP
    assert agent_status(until, None, now=_at(60), wrap_up=WRAP) == (AgentStatus.AVAILABLE, _at(60))
    plain = LoggedState("wrap_up", _at(0))
    assert agent_status(plain, None, now=_at(31), wrap_up=WRAP) == (AgentStatus.AVAILABLE, _at(30))


def test_a_ringing_row_left_behind_expires() -> None:
    stale = LoggedState("ringing", _at(0), by_engine=True)
    assert agent_status(stale, None, now=_at(10), wrap_up=WRAP)[0] is AgentStatus.RINGING
    later = T0 + RING_LIMIT
    assert agent_status(stale, None, now=later, wrap_up=WRAP) == (AgentStatus.AVAILABLE, later)


def test_occupancy_is_call_time_over_staffed_time_from_the_log() -> None:
    log = [
        LoggedState("available", _at(0)),
        LoggedState("ringing", _at(100)),
        LoggedState("on_call", _at(110)),
        LoggedState("wrap_up", _at(200), {"until": _at(230).isoformat()}),
        # wrap-up ends by itself at 230: available until the break
        LoggedState("break", _at(300)),
        LoggedState("available", _at(400)),
    ]
    # staffed: 0-300 and 400-500 = 400 s; busy: 100-230 = 130 s
    assert occupancy(log, _at(0), _at(500), wrap_up=WRAP) == pytest.approx(130 / 400)
    # a window starting mid-call takes the state from the row before it
    assert occupancy(log, _at(150), _at(250), wrap_up=WRAP) == pytest.approx(80 / 100)
    assert occupancy([LoggedState("offline", _at(0))], _at(0), _at(10), wrap_up=WRAP) is None


def test_a_click_to_call_left_ringing_expires_like_a_ringing_row() -> None:
    # an ERP-driven call (no dialer) left queued must not keep its agent from calls
    queued = CallFact(live=True, ringing=True, at=_at(0))
    assert agent_status(None, queued, now=_at(599), wrap_up=WRAP)[0] is AgentStatus.RINGING
    later = T0 + RING_LIMIT
    assert agent_status(None, queued, now=later, wrap_up=WRAP)[0] is AgentStatus.AVAILABLE
    # a call talking that long is still a call
    talking = CallFact(live=True, ringing=False, at=_at(0))
    assert agent_status(None, talking, now=later, wrap_up=WRAP)[0] is AgentStatus.ON_CALL


def test_an_unanswered_end_is_newer_than_the_engines_ringing_row() -> None:
    # the click-to-call's own ringing row, its 'available' not written yet: the end decides
    ringing = LoggedState("ringing", _at(0), by_engine=True)
    missed = CallFact(live=False, ringing=False, at=_at(40))
    assert agent_status(ringing, missed, now=_at(41), wrap_up=WRAP) == (
        AgentStatus.AVAILABLE,
        _at(40),
    )
    # a report (not the engine's) stays: a break taken while the call rang is a break
    report = LoggedState("break", _at(0))
    assert agent_status(report, missed, now=_at(41), wrap_up=WRAP)[0] is AgentStatus.BREAK

from __future__ import annotations

import types
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.asterisk.flows.click_to_call import ChannelFact
from engine.asterisk.flows.hangup_records import ChannelEnd, parse_record
from engine.asterisk.flows.resync import resync_facts
from engine.asterisk.naming import leg_channel_id
from engine.domain.call import CallStatus, check_transition
from engine.domain.click_to_call import (
    Answered,
    BridgeLegs,
    DestroyBridge,
    EndRequested,
    Fact,
    Hangup,
    Leg,
    LegEnded,
    Note,
    Originate,
    PlayRingback,
    RecordingFinished,
    Resume,
    SetStatus,
    Start,
    StartExpired,
    StartRecording,
    StopRecording,
    decide,
    restart_queued,
    status_for_unanswered,
)


def _statuses(steps: tuple[object, ...]) -> list[CallStatus]:
    return [s.status for s in steps if isinstance(s, SetStatus)]


def test_start_dials_the_agent() -> None:
    d = decide(CallStatus.QUEUED, Start())
    assert d.steps == (SetStatus(CallStatus.DIALING_AGENT, "agent.dialing"), Originate(Leg.AGENT))


def test_agent_answer_plays_ringback_then_dials_the_customer() -> None:
    d = decide(CallStatus.DIALING_AGENT, Answered(Leg.AGENT))
    assert [type(s) for s in d.steps] == [SetStatus, PlayRingback, SetStatus, Originate]
    assert _statuses(d.steps) == [CallStatus.AGENT_ANSWERED, CallStatus.DIALING_CUSTOMER]
    assert d.steps[-1] == Originate(Leg.CUSTOMER)


@pytest.mark.parametrize("record", [False, True])
def test_customer_answer_bridges_and_records_if_wanted(record: bool) -> None:
    d = decide(CallStatus.DIALING_CUSTOMER, Answered(Leg.CUSTOMER), record=record)
    assert d.steps[0] == BridgeLegs()
    assert _statuses(d.steps) == [CallStatus.CONNECTED]
    assert (StartRecording() in d.steps) is record


@pytest.mark.parametrize(
    ("cause", "status"),
    [
        (17, CallStatus.BUSY),
        (21, CallStatus.BUSY),
        (19, CallStatus.NO_ANSWER),
        (18, CallStatus.NO_ANSWER),
        (34, CallStatus.FAILED),
        (None, CallStatus.FAILED),
        (16, CallStatus.FAILED),
    ],
)
def test_unanswered_causes(cause: int | None, status: CallStatus) -> None:
    assert status_for_unanswered(cause) is status
    d = decide(CallStatus.DIALING_AGENT, LegEnded(Leg.AGENT, cause, "x"))
    assert _statuses(d.steps) == [status]
    assert d.steps[0].changes["hangup_cause"] == cause  # type: ignore[union-attr]


def test_customer_busy_hangs_up_the_agent() -> None:
    d = decide(CallStatus.DIALING_CUSTOMER, LegEnded(Leg.CUSTOMER, 17))
    assert d.steps[0] == Hangup(Leg.AGENT)
    assert _statuses(d.steps) == [CallStatus.BUSY]


@pytest.mark.parametrize("status", [CallStatus.AGENT_ANSWERED, CallStatus.DIALING_CUSTOMER])
def test_agent_leaving_before_the_customer_answers_cancels(status: CallStatus) -> None:
    d = decide(status, LegEnded(Leg.AGENT, 16))
    assert d.steps[0] == Hangup(Leg.CUSTOMER)
    assert _statuses(d.steps) == [CallStatus.CANCELED]


@pytest.mark.parametrize("leg", list(Leg))
def test_either_side_hanging_up_a_connected_call_completes_it(leg: Leg) -> None:
    d = decide(CallStatus.CONNECTED, LegEnded(leg, 16, "Normal Clearing"))
    other = Leg.CUSTOMER if leg is Leg.AGENT else Leg.AGENT
    assert d.steps[0] == Hangup(other)
    assert _statuses(d.steps) == [CallStatus.COMPLETED]
    assert d.steps[1].changes["end_reason"] == f"{leg.value} hung up"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "fact", [LegEnded(Leg.AGENT, 16), LegEnded(Leg.CUSTOMER, 16), EndRequested("ended by API")]
)
def test_a_connected_call_that_ends_destroys_its_bridge_after_the_status_is_set(
    fact: LegEnded | EndRequested,
) -> None:
    steps = decide(CallStatus.CONNECTED, fact).steps
    assert steps.count(DestroyBridge()) == 1
    set_at = next(i for i, step in enumerate(steps) if isinstance(step, SetStatus))
    assert steps.index(DestroyBridge()) > set_at


@pytest.mark.parametrize(
    "status", [CallStatus.QUEUED, CallStatus.DIALING_AGENT, CallStatus.DIALING_CUSTOMER]
)
def test_a_call_ended_before_it_was_bridged_has_no_bridge_to_destroy(status: CallStatus) -> None:
    for fact in (EndRequested("x"), LegEnded(Leg.AGENT, 16), LegEnded(Leg.CUSTOMER, 17)):
        assert DestroyBridge() not in decide(status, fact).steps


def test_a_leg_end_recorded_by_asterisk_ends_the_call_when_it_happened() -> None:
    at = datetime(2026, 11, 30, 3, 0, 5, 250000, tzinfo=UTC)
    d = decide(CallStatus.CONNECTED, LegEnded(Leg.CUSTOMER, 16, "recorded", at=at))
    (end,) = [step for step in d.steps if isinstance(step, SetStatus)]
    assert end.at == at
    assert end.changes["hangup_cause"] == 16
    assert "end_estimated" not in end.changes


@pytest.mark.parametrize(
    "status", [CallStatus.DIALING_AGENT, CallStatus.DIALING_CUSTOMER, CallStatus.CONNECTED]
)
def test_a_leg_end_nobody_saw_is_marked_estimated(status: CallStatus) -> None:
    d = decide(status, LegEnded(Leg.AGENT, None, "gone", estimated=True))
    (end,) = [step for step in d.steps if isinstance(step, SetStatus)]
    assert end.at is None  # now: when the engine noticed
    assert end.changes["end_estimated"] is True
    assert end.payload["end_estimated"] is True


def test_a_queued_call_found_young_is_started_old_is_failed_with_the_reason() -> None:
    deadline = timedelta(seconds=120)
    assert restart_queued(timedelta(seconds=3), deadline) == Start()
    expired = restart_queued(timedelta(minutes=10), deadline)
    assert isinstance(expired, StartExpired)
    assert "120 s" in expired.reason
    d = decide(CallStatus.QUEUED, expired)
    assert d.steps == (
        SetStatus(
            CallStatus.FAILED,
            "session.start_expired",
            {"end_reason": expired.reason},
            {"end_reason": expired.reason},
        ),
    )
    # a call that got going meanwhile is left alone
    assert decide(CallStatus.DIALING_AGENT, expired).steps == ()


def test_hangup_records_parse_time_and_cause() -> None:
    assert parse_record("1796006565.499,17") == ChannelEnd(
        datetime(2026, 11, 30, 2, 42, 45, 499000, tzinfo=UTC), 17
    )
    assert parse_record("1796006565.499,") == ChannelEnd(
        datetime(2026, 11, 30, 2, 42, 45, 499000, tzinfo=UTC), None
    )
    for bad in ("", "x,16", "1e400,16", ",16"):
        assert parse_record(bad) is None


@pytest.mark.parametrize(
    ("status", "target"),
    [
        (CallStatus.QUEUED, CallStatus.CANCELED),
        (CallStatus.DIALING_AGENT, CallStatus.CANCELED),
        (CallStatus.DIALING_CUSTOMER, CallStatus.CANCELED),
        (CallStatus.CONNECTED, CallStatus.COMPLETED),
    ],
)
def test_end_requested_ends_and_hangs_up_both(status: CallStatus, target: CallStatus) -> None:
    d = decide(status, EndRequested("ended by API"))
    assert _statuses(d.steps) == [target]
    assert Hangup(Leg.AGENT) in d.steps
    assert Hangup(Leg.CUSTOMER) in d.steps


@pytest.mark.parametrize("status", sorted(CallStatus.__members__.values()))
def test_every_status_a_decision_sets_is_a_legal_transition(status: CallStatus) -> None:
    facts = [
        Start(),
        StartExpired("too old"),
        Answered(Leg.AGENT),
        Answered(Leg.CUSTOMER),
        EndRequested("x"),
        *(LegEnded(leg, c) for leg in Leg for c in (16, 17, 19, None)),
    ]
    for fact in facts:
        current = status
        for step in decide(status, fact, record=True).steps:
            if isinstance(step, SetStatus):
                check_transition(current, step.status)  # raises if the domain disagrees
                current = step.status


@pytest.mark.parametrize("status", sorted(s for s in CallStatus if s.is_terminal))
def test_late_facts_after_the_end_decide_nothing(status: CallStatus) -> None:
    for fact in (Answered(Leg.AGENT), LegEnded(Leg.CUSTOMER, 16), EndRequested("x"), Start()):
        assert decide(status, fact).steps == ()


def test_recording_finished_is_noted_with_its_duration() -> None:
    d = decide(CallStatus.COMPLETED, RecordingFinished(5000), recording_open=True)
    assert d.steps == (
        Note("recording.finished", {"duration_ms": 5000}, {"recording_duration_ms": 5000}),
    )


@pytest.mark.parametrize(
    "fact", [LegEnded(Leg.CUSTOMER, 16), LegEnded(Leg.AGENT, 16), EndRequested("done")]
)
def test_a_recorded_call_ending_stops_its_recording_before_anything_else(fact: Fact) -> None:
    # destroying a bridge still recorded loses Asterisk's RecordingFinished (40 of 500)
    steps = decide(CallStatus.CONNECTED, fact, recording_open=True).steps
    assert steps[0] == StopRecording()
    assert StopRecording() not in decide(CallStatus.CONNECTED, fact).steps


def test_a_recording_end_told_twice_or_with_no_recording_open_decides_nothing() -> None:
    # e.g. Asterisk's RecordingFinished arriving after the engine found the file itself
    assert decide(CallStatus.COMPLETED, RecordingFinished(5000)).steps == ()


def test_an_estimated_or_failed_recording_end_says_so_and_closes_the_recording() -> None:
    estimated = decide(
        CallStatus.COMPLETED, RecordingFinished(31000, estimated=True), recording_open=True
    )
    assert estimated.steps == (
        Note(
            "recording.finished",
            {"duration_ms": 31000, "estimated": True},
            {"recording_duration_ms": 31000},
        ),
    )
    # no duration known: 0 is stored, so the call waits for no other end
    failed = decide(
        CallStatus.COMPLETED, RecordingFinished(None, failure="disk full"), recording_open=True
    )
    assert failed.steps == (
        Note(
            "recording.finished",
            {"duration_ms": None, "failure": "disk full"},
            {"recording_duration_ms": 0},
        ),
    )


def test_a_call_found_agent_answered_is_resumed_by_dialing_the_customer() -> None:
    assert decide(CallStatus.AGENT_ANSWERED, Resume()).steps == (
        PlayRingback(Leg.AGENT),
        SetStatus(CallStatus.DIALING_CUSTOMER, "customer.dialing"),
        Originate(Leg.CUSTOMER),
    )
    for status in (
        CallStatus.QUEUED,
        CallStatus.DIALING_AGENT,
        CallStatus.DIALING_CUSTOMER,
        CallStatus.CONNECTED,
        CallStatus.COMPLETED,
    ):
        assert decide(status, Resume()).steps == ()


def _found(status: CallStatus) -> Any:
    """What the resync reads of a session: its id, status and current leg channels."""
    return types.SimpleNamespace(
        id=uuid.UUID(int=7), status=status, agent_channel_id=None, customer_channel_id=None
    )


def test_resync_ends_legs_at_their_recorded_times_first_hangup_first() -> None:
    session = _found(CallStatus.CONNECTED)
    agent, customer = (
        leg_channel_id(session.id, Leg.AGENT),
        leg_channel_id(session.id, Leg.CUSTOMER),
    )
    t0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    ends = {agent: ChannelEnd(t0 + timedelta(seconds=9), 16), customer: ChannelEnd(t0, 17)}
    facts = resync_facts(session, {}, ends)
    assert [(f.channel, f.at, f.cause, f.estimated) for f in facts] == [
        (customer, t0, 17, False),  # the customer left first: their end ends the call
        (agent, t0 + timedelta(seconds=9), 16, False),
    ]


def test_resync_estimates_an_end_asterisk_kept_no_record_of_after_recorded_ones() -> None:
    session = _found(CallStatus.CONNECTED)
    agent, customer = (
        leg_channel_id(session.id, Leg.AGENT),
        leg_channel_id(session.id, Leg.CUSTOMER),
    )
    t0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    facts = resync_facts(session, {}, {customer: ChannelEnd(t0, 16)})
    assert [(f.channel, f.estimated, f.cause) for f in facts] == [
        (customer, False, 16),
        (agent, True, None),
    ]


def test_resync_takes_up_a_call_whose_engine_died_before_dialing_the_customer() -> None:
    session = _found(CallStatus.AGENT_ANSWERED)
    agent = leg_channel_id(session.id, Leg.AGENT)
    assert resync_facts(session, {agent: {"state": "Up"}}, {}) == [Resume()]
    # the agent left meanwhile: that ends the call, nothing to resume
    facts = resync_facts(session, {}, {})
    assert len(facts) == 1
    assert not facts[0].up


def test_resync_catches_up_answers_postgresql_had_not_heard_of_in_the_order_they_came() -> None:
    # the engine that stopped had written "dialing_agent"; Asterisk has both legs up
    session = _found(CallStatus.DIALING_AGENT)
    agent, customer = (
        leg_channel_id(session.id, Leg.AGENT),
        leg_channel_id(session.id, Leg.CUSTOMER),
    )
    both_up = {agent: {"state": "Up"}, customer: {"state": "Up"}}
    facts = resync_facts(session, both_up, {})
    assert facts == [ChannelFact(agent, up=True), ChannelFact(customer, up=True)]
    # the customer still ringing: only the agent's answer (dialing the customer meets 409)
    ringing = {agent: {"state": "Up"}, customer: {"state": "Ringing"}}
    assert resync_facts(session, ringing, {}) == [ChannelFact(agent, up=True)]


def test_resync_resumes_a_call_found_agent_answered_before_the_customer_answer_it_missed() -> None:
    session = _found(CallStatus.AGENT_ANSWERED)
    agent, customer = (
        leg_channel_id(session.id, Leg.AGENT),
        leg_channel_id(session.id, Leg.CUSTOMER),
    )
    facts = resync_facts(session, {agent: {"state": "Up"}, customer: {"state": "Up"}}, {})
    assert facts == [Resume(), ChannelFact(customer, up=True)]


def test_resync_does_not_end_a_customer_postgresql_never_saw_dialed() -> None:
    session = _found(CallStatus.DIALING_AGENT)
    agent = leg_channel_id(session.id, Leg.AGENT)
    assert resync_facts(session, {agent: {"state": "Ringing"}}, {}) == []

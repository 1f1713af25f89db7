from __future__ import annotations

import uuid

import pytest

from engine.asterisk.stasis import bridge_id, channel_id, parse_channel_id
from engine.domain.call import CallStatus, check_transition
from engine.domain.click_to_call import (
    Answered,
    BridgeLegs,
    EndRequested,
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
    status_for_unanswered,
)

S = CallStatus


def _statuses(steps: tuple[object, ...]) -> list[CallStatus]:
    return [s.status for s in steps if isinstance(s, SetStatus)]


def test_start_dials_the_agent() -> None:
    d = decide(S.QUEUED, Start())
    assert d.steps == (SetStatus(S.DIALING_AGENT, "agent.dialing"), Originate(Leg.AGENT))


def test_agent_answer_plays_ringback_then_dials_the_customer() -> None:
    d = decide(S.DIALING_AGENT, Answered(Leg.AGENT))
    assert [type(s) for s in d.steps] == [SetStatus, PlayRingback, SetStatus, Originate]
    assert _statuses(d.steps) == [S.AGENT_ANSWERED, S.DIALING_CUSTOMER]
    assert d.steps[-1] == Originate(Leg.CUSTOMER)


@pytest.mark.parametrize("record", [False, True])
def test_customer_answer_bridges_and_records_if_wanted(record: bool) -> None:
    d = decide(S.DIALING_CUSTOMER, Answered(Leg.CUSTOMER), record=record)
    assert d.steps[0] == BridgeLegs()
    assert _statuses(d.steps) == [S.CONNECTED]
    assert (StartRecording() in d.steps) is record


@pytest.mark.parametrize(
    ("cause", "status"),
    [
        (17, S.BUSY),
        (21, S.BUSY),
        (19, S.NO_ANSWER),
        (18, S.NO_ANSWER),
        (34, S.FAILED),
        (None, S.FAILED),
        (16, S.FAILED),
    ],
)
def test_unanswered_causes(cause: int | None, status: CallStatus) -> None:
    assert status_for_unanswered(cause) is status
    d = decide(S.DIALING_AGENT, LegEnded(Leg.AGENT, cause, "x"))
    assert _statuses(d.steps) == [status]
    assert d.steps[0].changes["hangup_cause"] == cause  # type: ignore[union-attr]


def test_customer_busy_hangs_up_the_agent() -> None:
    d = decide(S.DIALING_CUSTOMER, LegEnded(Leg.CUSTOMER, 17))
    assert d.steps[0] == Hangup(Leg.AGENT)
    assert _statuses(d.steps) == [S.BUSY]


@pytest.mark.parametrize("status", [S.AGENT_ANSWERED, S.DIALING_CUSTOMER])
def test_agent_leaving_before_the_customer_answers_cancels(status: CallStatus) -> None:
    d = decide(status, LegEnded(Leg.AGENT, 16))
    assert d.steps[0] == Hangup(Leg.CUSTOMER)
    assert _statuses(d.steps) == [S.CANCELED]


@pytest.mark.parametrize("leg", list(Leg))
def test_either_side_hanging_up_a_connected_call_completes_it(leg: Leg) -> None:
    d = decide(S.CONNECTED, LegEnded(leg, 16, "Normal Clearing"))
    other = Leg.CUSTOMER if leg is Leg.AGENT else Leg.AGENT
    assert d.steps[0] == Hangup(other)
    assert _statuses(d.steps) == [S.COMPLETED]
    assert d.steps[1].changes["end_reason"] == f"{leg.value} hung up"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status", "target"),
    [
        (S.QUEUED, S.CANCELED),
        (S.DIALING_AGENT, S.CANCELED),
        (S.DIALING_CUSTOMER, S.CANCELED),
        (S.CONNECTED, S.COMPLETED),
    ],
)
def test_end_requested_ends_and_hangs_up_both(status: CallStatus, target: CallStatus) -> None:
    d = decide(status, EndRequested("ended by API"))
    assert _statuses(d.steps) == [target]
    assert Hangup(Leg.AGENT) in d.steps
    assert Hangup(Leg.CUSTOMER) in d.steps


@pytest.mark.parametrize("status", sorted(S.__members__.values()))
def test_every_status_a_decision_sets_is_a_legal_transition(status: CallStatus) -> None:
    facts = [
        Start(),
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


@pytest.mark.parametrize("status", sorted(s for s in S if s.is_terminal))
def test_late_facts_after_the_end_decide_nothing(status: CallStatus) -> None:
    for fact in (Answered(Leg.AGENT), LegEnded(Leg.CUSTOMER, 16), EndRequested("x"), Start()):
        assert decide(status, fact).steps == ()


def test_recording_finished_is_noted_with_its_duration() -> None:
    d = decide(S.COMPLETED, RecordingFinished(5000))
    assert d.steps == (
        Note("recording.finished", {"duration_ms": 5000}, {"recording_duration_ms": 5000}),
    )


def test_channel_ids_round_trip() -> None:
    sid = uuid.uuid4()
    for leg in Leg:
        assert parse_channel_id(channel_id(sid, leg)) == (sid, leg)
    assert bridge_id(sid) == f"c2c-{sid}"
    for other in ("PJSIP/agent1-00000001", "c2c-nope-agent", f"c2c-{sid}-boss", "1700000000.1"):
        assert parse_channel_id(other) is None

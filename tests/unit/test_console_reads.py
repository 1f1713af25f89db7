"""The pure parts of what the console reads: every minute of a window, counted or not;
and which source decides an agent's state (the rules: tests/unit/test_agent_state.py)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from engine.app.agent_states import StateSource, agent_states
from engine.app.call_activity import every_minute
from engine.domain.call import CallStatus, Direction
from engine.store.records import AgentActivity, AgentLastCall, CallsInMinute, StoredSession

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_every_minute_of_the_window_is_there_and_the_counted_ones_keep_their_counts() -> None:
    counted = [CallsInMinute(AT + timedelta(minutes=2), 3, 1, 2)]
    minutes = every_minute(counted, AT, AT + timedelta(minutes=4))
    assert [m.minute for m in minutes] == [AT + timedelta(minutes=i) for i in range(4)]
    assert [(m.placed, m.answered, m.decided) for m in minutes] == [
        (0, 0, 0),
        (0, 0, 0),
        (3, 1, 2),
        (0, 0, 0),
    ]


def _session(status: CallStatus, **times: datetime | None) -> StoredSession:
    return StoredSession(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        provider_id=None,
        direction=Direction.CLICK_TO_CALL,
        status=status,
        agent_number="1001",
        customer_number="+15550002",
        caller_id=None,
        agent_id=None,
        external_ref=None,
        callback_url=None,
        metadata={},
        idempotency_key=None,
        request_hash=None,
        agent_channel_id=None,
        customer_channel_id=None,
        bridge_id=None,
        provider_call_id=None,
        hangup_cause=None,
        hangup_cause_text=None,
        end_reason=None,
        recording_path=None,
        recording_duration_ms=None,
        ring_ms=None,
        talk_ms=None,
        created_at=AT,
        dialing_agent_at=times.get("dialing_agent_at"),
        agent_answered_at=times.get("agent_answered_at"),
        dialing_customer_at=None,
        connected_at=None,
        ended_at=times.get("ended_at"),
        updated_at=AT + timedelta(minutes=9),
        version=1,
    )


def _report(agent: str, activity: str, minutes: int) -> AgentActivity:
    return AgentActivity(
        id=1,
        tenant_id=uuid.uuid4(),
        agent_id=agent,
        activity=activity,
        session_id=None,
        details={},
        occurred_at=AT + timedelta(minutes=minutes),
    )


def test_a_live_call_decides_an_agents_state_before_its_report_and_its_last_call_after() -> None:
    answered = AT + timedelta(minutes=1)
    talking = _session(CallStatus.CONNECTED, agent_answered_at=answered)
    ringing = _session(CallStatus.DIALING_AGENT)
    ended = _session(CallStatus.COMPLETED, ended_at=AT + timedelta(minutes=5))
    states = agent_states(
        [_report("ana", "break", 3), _report("bo", "available", 2)],
        [
            AgentLastCall("bo", talking, 2),
            AgentLastCall("cy", ringing, 1),
            AgentLastCall("dee", ended, 4),
            AgentLastCall("ana", dataclasses.replace(ended, id=uuid.uuid4()), 1),
        ],
        now=AT + timedelta(minutes=9),  # cy still rings: under RING_LIMIT
        wrap_up=timedelta(0),
    )
    assert [(s.agent, s.state, s.since, s.source, s.calls) for s in states] == [
        ("ana", "break", AT + timedelta(minutes=3), StateSource.ACTIVITY, 1),
        ("bo", "on_call", answered, StateSource.CALLS, 2),
        ("cy", "ringing", AT, StateSource.CALLS, 1),
        ("dee", "available", AT + timedelta(minutes=5), StateSource.CALLS, 4),
    ]
    assert states[3].in_state_s == 240.0
    assert states[1].last_session_id == talking.id
    assert states[1].last_customer == "+15550002"

"""Calls agents dial from their desk phone: the steps the domain decides for them, their
status graph, the Stasis arguments and channel names the door reads, and the resync's
take on such a call found waiting."""

from __future__ import annotations

import types
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.asterisk.flows.agent_door import AgentDoor, endpoint_of_channel
from engine.asterisk.flows.click_to_call import ChannelFact
from engine.asterisk.flows.resync import resync_facts
from engine.asterisk.naming import AgentStasisArgs, parse_agent_stasis_args
from engine.config.settings import CallSettings
from engine.domain.call import (
    OUTBOUND_TRANSITIONS,
    CallSession,
    CallStatus,
    Direction,
    check_transition,
)
from engine.domain.click_to_call import (
    Answered,
    AnswerLeg,
    BridgeLegs,
    Hangup,
    Leg,
    LegEnded,
    Originate,
    PlayRingback,
    SetStatus,
    Start,
    StartRecording,
    decide,
)
from engine.errors import FeatureUnavailable, IllegalTransition, NotFound


def test_an_agent_dialled_start_answers_the_agent_and_rings_the_customer() -> None:
    d = decide(CallStatus.QUEUED, Start(), agent_dialled=True)
    assert d.steps == (
        AnswerLeg(Leg.AGENT),
        SetStatus(CallStatus.AGENT_ANSWERED, "agent.answered"),
        PlayRingback(Leg.AGENT),
        SetStatus(CallStatus.DIALING_CUSTOMER, "customer.dialing"),
        Originate(Leg.CUSTOMER),
    )
    # nobody rings the agent: no agent.dialing, no Originate(agent)
    assert Originate(Leg.AGENT) not in d.steps


def test_from_the_customers_answer_on_it_is_a_click_to_call() -> None:
    for record in (False, True):
        ours = decide(
            CallStatus.DIALING_CUSTOMER, Answered(Leg.CUSTOMER), record=record, agent_dialled=True
        )
        assert ours == decide(CallStatus.DIALING_CUSTOMER, Answered(Leg.CUSTOMER), record=record)
        assert ours.steps[0] == BridgeLegs()
        assert (StartRecording() in ours.steps) is record


def test_an_agent_who_hangs_up_before_the_start_cancels_the_call() -> None:
    d = decide(CallStatus.QUEUED, LegEnded(Leg.AGENT, 16), agent_dialled=True)
    [step] = d.steps
    assert isinstance(step, SetStatus)
    assert step.status is CallStatus.CANCELED
    assert step.changes["end_reason"] == "agent hung up before the customer was dialled"
    # a click-to-call's queued session has no agent channel yet: nothing to decide
    assert decide(CallStatus.QUEUED, LegEnded(Leg.AGENT, 16)).steps == ()


def test_an_agent_who_hangs_up_while_the_customer_rings_cancels_it() -> None:
    d = decide(CallStatus.DIALING_CUSTOMER, LegEnded(Leg.AGENT, 16), agent_dialled=True)
    assert d.steps[0] == Hangup(Leg.CUSTOMER)
    assert [s.status for s in d.steps if isinstance(s, SetStatus)] == [CallStatus.CANCELED]


def test_the_outbound_graph_skips_dialing_the_agent() -> None:
    out = Direction.OUTBOUND
    assert check_transition("queued", "agent_answered", out) is CallStatus.AGENT_ANSWERED
    assert check_transition("queued", "rejected", out) is CallStatus.REJECTED
    with pytest.raises(IllegalTransition):
        check_transition("queued", "dialing_agent", out)
    with pytest.raises(IllegalTransition):
        check_transition("queued", "agent_answered")  # a click-to-call rings the agent first
    assert not OUTBOUND_TRANSITIONS[CallStatus.DIALING_AGENT]
    for status in (CallStatus.AGENT_ANSWERED, CallStatus.DIALING_CUSTOMER, CallStatus.CONNECTED):
        assert check_transition(status, "failed", out) is CallStatus.FAILED


def test_an_outbound_calls_ring_time_is_the_customers() -> None:
    t0 = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    session = CallSession(
        status=CallStatus.CONNECTED,
        created_at=t0,
        direction=Direction.OUTBOUND,
        agent_answered_at=t0 + timedelta(milliseconds=20),
        dialing_customer_at=t0 + timedelta(milliseconds=30),
        connected_at=t0 + timedelta(seconds=4, milliseconds=30),
    )
    changes = session.transition("completed", t0 + timedelta(seconds=10, milliseconds=30)).changes
    assert changes["ring_ms"] == 4000
    assert changes["talk_ms"] == 6000


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["agent", "4155550100"], AgentStasisArgs("4155550100", "default")),
        (["agent", "+14155550100", "acme"], AgentStasisArgs("+14155550100", "acme")),
        (["agent", " 0207 ", " "], AgentStasisArgs("0207", "default")),
        (["agent"], AgentStasisArgs("", "default")),
        (["ivr", "main"], None),
        ([], None),
    ],
)
def test_the_stasis_arguments_of_an_agents_call(
    args: list[str], expected: AgentStasisArgs | None
) -> None:
    assert parse_agent_stasis_args(args) == expected


@pytest.mark.parametrize(
    ("name", "endpoint"),
    [
        ("PJSIP/agent1-0000002a", "agent1"),
        ("PJSIP/desk-12-00000003", "desk-12"),
        ("SIP/1001-0a0b0c0d", "1001"),
        ("PJSIP/agent1", "agent1"),
        ("agent1", "agent1"),
    ],
)
def test_the_agent_is_the_endpoint_of_their_channel(name: str, endpoint: str) -> None:
    assert endpoint_of_channel(name) == endpoint


def test_the_agents_default_region_is_an_iso_code_phonenumbers_knows() -> None:
    assert CallSettings(agent_default_region="GB").agent_default_region == "GB"
    assert CallSettings().agent_default_region is None
    for bad in ("gb", "XX", "GBR", 44):
        with pytest.raises(ValueError, match="agent_default_region"):
            CallSettings(agent_default_region=bad)


def _waiting(status: CallStatus, channel: str) -> Any:
    return types.SimpleNamespace(
        id=uuid.UUID(int=9), status=status, agent_channel_id=channel, customer_channel_id=None
    )


def test_resync_starts_an_agent_dialled_call_whose_start_was_lost() -> None:
    channel = "1764514800.42"  # Asterisk's id for the agent's own channel
    session = _waiting(CallStatus.QUEUED, channel)
    assert resync_facts(session, {channel: {"state": "Ring"}}, {}) == [Start()]
    # the agent gave up meanwhile: their end is the only fact (the call is canceled)
    [gone] = resync_facts(session, {}, {})
    assert gone == ChannelFact(
        channel, up=False, cause_text="channel gone while ARI was disconnected", estimated=True
    )


class _Ari:
    """What the door asks of ARI, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def set_channel_var(self, channel_id: str, name: str, value: str) -> None:
        self.calls.append(("set", channel_id, name, value))

    async def continue_in_dialplan(self, channel_id: str) -> None:
        self.calls.append(("continue", channel_id))

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        self.calls.append(("hangup", channel_id))


class _Calls:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.placed: list[Any] = []

    async def place_agent_dialled(self, call: Any) -> Any:
        self.placed.append(call)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


CHANNEL = {"id": "1764514800.7", "name": "PJSIP/agent2-00000007", "caller": {"number": "agent2"}}


async def _take(outcome: Any, *, serve: bool = True) -> tuple[_Ari, _Calls]:
    ari, calls = _Ari(), _Calls(outcome)
    door = AgentDoor(ari, CallSettings(agent_default_region="GB"))  # type: ignore[arg-type]
    if serve:
        door.serve(calls)  # type: ignore[arg-type]
    await door.take(CHANNEL, AgentStasisArgs("02079460000", "acme"))
    return ari, calls


async def test_the_door_places_the_agents_call_through_the_call_use_cases() -> None:
    ari, calls = await _take(types.SimpleNamespace(status=CallStatus.DIALING_CUSTOMER))
    [call] = calls.placed
    assert (call.tenant_slug, call.dialled, call.endpoint) == ("acme", "02079460000", "agent2")
    assert (call.channel_id, call.caller_number, call.default_region) == (
        "1764514800.7",
        "agent2",
        "GB",
    )
    assert ari.calls == []  # the call is the click-to-call flow's from here


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (types.SimpleNamespace(status=CallStatus.REJECTED), "REJECTED"),
        (NotFound("tenant", "acme"), "FAILED"),
        (FeatureUnavailable("Asterisk is not connected"), "FAILED"),
        (RuntimeError("a bug"), "FAILED"),
    ],
    ids=["refused-number", "unknown-tenant", "not-ready", "bug"],
)
async def test_a_call_not_placed_goes_back_to_the_dialplan_saying_why(
    outcome: Any, status: str
) -> None:
    ari, _ = await _take(outcome)
    assert ari.calls == [
        ("set", "1764514800.7", "CTC_AGENT_STATUS", status),
        ("continue", "1764514800.7"),
    ]


async def test_a_door_not_serving_yet_hands_every_call_back() -> None:
    ari, calls = await _take(None, serve=False)
    assert not calls.placed
    assert ari.calls[0] == ("set", "1764514800.7", "CTC_AGENT_STATUS", "FAILED")

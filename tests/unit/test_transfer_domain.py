"""The transfer decisions (pure) and how a transfer target's channel is routed."""

from __future__ import annotations

import types
import uuid
from typing import Any

import pytest

from engine.asterisk.flows.click_to_call import ChannelFact, route_fact
from engine.asterisk.flows.transfers import replaced_leg
from engine.asterisk.naming import target_channel_id
from engine.domain.click_to_call import Answered, Leg, LegEnded
from engine.domain.transfer import (
    AdoptTarget,
    BridgeTarget,
    CancelRequested,
    ChannelRole,
    CompleteRequested,
    ConsultBridge,
    DestroyConsult,
    Finish,
    HangupTarget,
    HoldCustomer,
    OriginateTarget,
    ReleaseLeg,
    ReturnAgent,
    SetState,
    TargetAnswered,
    TargetEnded,
    TargetLost,
    TransferState,
    TransferType,
    UnholdCustomer,
    channel_fact,
    decide_transfer,
    other_leg,
    resync_transfer,
    route_channel,
    start_transfer,
    state_for_unanswered,
)

BLIND = TransferType.BLIND
ATTENDED = TransferType.ATTENDED


def test_start_blind_only_dials_the_target() -> None:
    assert start_transfer(BLIND) == (OriginateTarget(),)


def test_start_attended_holds_the_customer_first() -> None:
    assert start_transfer(ATTENDED) == (HoldCustomer(), OriginateTarget())


def test_blind_answer_bridges_target_releases_agent_and_adopts_target() -> None:
    steps = decide_transfer(BLIND, TransferState.INITIATED, TargetAnswered())
    assert steps == (
        BridgeTarget(),
        ReleaseLeg(Leg.AGENT),
        AdoptTarget(Leg.AGENT),
        Finish(TransferState.COMPLETED, "transfer.completed"),
    )


@pytest.mark.parametrize(
    ("cause", "outcome"),
    [
        (17, TransferState.BUSY),
        (21, TransferState.BUSY),
        (18, TransferState.NO_ANSWER),
        (19, TransferState.NO_ANSWER),
        (34, TransferState.FAILED),
        (None, TransferState.FAILED),
    ],
)
def test_blind_target_unanswered_keeps_the_call(cause: int | None, outcome: TransferState) -> None:
    assert state_for_unanswered(cause) is outcome
    steps = decide_transfer(BLIND, TransferState.INITIATED, TargetEnded(cause, "x"))
    assert steps == (Finish(outcome, f"transfer.{outcome.value}", "x", cause),)
    # nothing touches the agent or the bridge
    assert steps is not None
    assert not any(isinstance(s, ReleaseLeg | BridgeTarget | AdoptTarget) for s in steps)


def test_attended_answer_moves_agent_to_consult() -> None:
    steps = decide_transfer(ATTENDED, TransferState.INITIATED, TargetAnswered())
    assert steps == (ConsultBridge(), SetState(TransferState.CONSULTING, "transfer.consulting"))


def test_attended_target_unanswered_takes_the_customer_off_hold() -> None:
    steps = decide_transfer(ATTENDED, TransferState.INITIATED, TargetEnded(17))
    assert steps is not None
    assert steps[0] == UnholdCustomer()
    assert steps[-1] == Finish(
        TransferState.BUSY, "transfer.busy", "target did not answer (busy)", 17
    )


def test_attended_complete() -> None:
    steps = decide_transfer(ATTENDED, TransferState.CONSULTING, CompleteRequested())
    assert steps == (
        BridgeTarget(),
        DestroyConsult(),
        UnholdCustomer(),
        ReleaseLeg(Leg.AGENT),
        AdoptTarget(Leg.AGENT),
        Finish(TransferState.COMPLETED, "transfer.completed"),
    )


def test_attended_cancel_while_consulting_returns_the_agent() -> None:
    steps = decide_transfer(ATTENDED, TransferState.CONSULTING, CancelRequested())
    assert steps == (
        HangupTarget(),
        ReturnAgent(),
        DestroyConsult(),
        UnholdCustomer(),
        Finish(TransferState.CANCELED, "transfer.canceled", "canceled by API"),
    )


def test_attended_cancel_while_ringing_releases_the_target() -> None:
    steps = decide_transfer(ATTENDED, TransferState.INITIATED, CancelRequested())
    assert steps is not None
    assert HangupTarget() in steps
    assert ReturnAgent() not in steps
    assert steps[-1].state is TransferState.CANCELED  # type: ignore[union-attr]


def test_target_hangup_during_consult_cancels() -> None:
    steps = decide_transfer(ATTENDED, TransferState.CONSULTING, TargetEnded(16))
    assert steps == (
        ReturnAgent(),
        DestroyConsult(),
        UnholdCustomer(),
        Finish(TransferState.CANCELED, "transfer.canceled", "target hung up", 16),
    )


@pytest.mark.parametrize(
    ("kind", "state", "fact"),
    [
        (ATTENDED, TransferState.INITIATED, CompleteRequested()),  # nobody to complete to yet
        (BLIND, TransferState.INITIATED, CompleteRequested()),
        (BLIND, TransferState.INITIATED, CancelRequested()),
        (ATTENDED, TransferState.COMPLETED, CancelRequested()),
        (BLIND, TransferState.COMPLETED, TargetEnded(16)),
        (ATTENDED, TransferState.CANCELED, TargetAnswered()),
    ],
)
def test_facts_that_do_not_apply(kind: TransferType, state: TransferState, fact: object) -> None:
    assert decide_transfer(kind, state, fact) is None  # type: ignore[arg-type]


def test_live_states() -> None:
    assert {s for s in TransferState if s.is_live} == {
        TransferState.INITIATED,
        TransferState.CONSULTING,
    }


# -- more than one transfer per session: routing by the current legs (ids: test_naming) ---


def test_from_leg_is_the_leg_that_stays() -> None:
    assert other_leg(Leg.AGENT) is Leg.CUSTOMER
    assert other_leg(Leg.CUSTOMER) is Leg.AGENT
    row = types.SimpleNamespace(from_leg="customer")
    assert replaced_leg(row) is Leg.AGENT  # type: ignore[arg-type]
    row = types.SimpleNamespace(from_leg="agent")
    assert replaced_leg(row) is Leg.CUSTOMER  # type: ignore[arg-type]


def test_route_channel_follows_the_current_legs_through_two_transfers() -> None:
    a, c, t1, t2 = "c2c-s-agent", "c2c-s-customer", "c2c-s-target-1", "c2c-s-target-2"
    # before any transfer; then t1 rings
    assert route_channel(a, agent=a, customer=c, target=None) is ChannelRole.AGENT
    assert route_channel(c, agent=a, customer=c, target=None) is ChannelRole.CUSTOMER
    assert route_channel(t1, agent=a, customer=c, target=t1) is ChannelRole.TARGET
    # t1 replaced the agent: the first agent is stale; t2 rings
    assert route_channel(a, agent=t1, customer=c, target=t2) is ChannelRole.STALE
    assert route_channel(t1, agent=t1, customer=c, target=t2) is ChannelRole.AGENT
    assert route_channel(t2, agent=t1, customer=c, target=t2) is ChannelRole.TARGET
    # t2 replaced t1: t1 is stale too (its hangup must not end the call)
    assert route_channel(t1, agent=t2, customer=c, target=None) is ChannelRole.STALE
    assert route_channel(t2, agent=t2, customer=c, target=None) is ChannelRole.AGENT
    # a customer-leg transfer: the target is the customer now, the agent stays
    assert route_channel(c, agent=a, customer=t1, target=None) is ChannelRole.STALE
    assert route_channel(t1, agent=a, customer=t1, target=None) is ChannelRole.CUSTOMER
    assert route_channel(a, agent=a, customer=t1, target=None) is ChannelRole.AGENT
    # an ended transfer's target that is nobody's leg
    assert route_channel(t1, agent=a, customer=c, target=None) is ChannelRole.STALE


def test_channel_fact_by_role() -> None:
    assert channel_fact(ChannelRole.AGENT, up=True) == Answered(Leg.AGENT)
    assert channel_fact(ChannelRole.CUSTOMER, up=False, cause=16, cause_text="x") == LegEnded(
        Leg.CUSTOMER, 16, "x"
    )
    assert channel_fact(ChannelRole.TARGET, up=True) == TargetAnswered()
    assert channel_fact(ChannelRole.TARGET, up=False, cause=17) == TargetEnded(17)
    # an adopted target entering Stasis is not the leg answering; its hangup is the leg's
    assert channel_fact(ChannelRole.AGENT, up=True, adopted=True) is None
    assert channel_fact(ChannelRole.AGENT, up=False, cause=16, adopted=True) == LegEnded(
        Leg.AGENT, 16
    )
    assert channel_fact(ChannelRole.STALE, up=False, cause=16) is None
    assert channel_fact(ChannelRole.STALE, up=True) is None


def _session(sid: uuid.UUID, agent: str | None, customer: str | None = None) -> Any:
    return types.SimpleNamespace(id=sid, agent_channel_id=agent, customer_channel_id=customer)


def _transfer(channel: str) -> Any:
    return types.SimpleNamespace(target_channel_id=channel)


def test_stasis_routes_channel_facts_by_who_plays_which_leg_now() -> None:
    sid, t1, t2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    agent, customer = f"c2c-{sid}-agent", f"c2c-{sid}-customer"
    first, second = target_channel_id(sid, t1), target_channel_id(sid, t2)
    before = _session(sid, agent, customer)
    ended = ChannelFact(agent, up=False, cause=16, cause_text="Normal Clearing")
    # before a completed transfer: the legs' facts are the legs'
    assert route_fact(before, None, ended) == LegEnded(Leg.AGENT, 16, "Normal Clearing")
    assert route_fact(before, None, ChannelFact(agent, up=True)) == Answered(Leg.AGENT)
    assert route_fact(_session(sid, None), None, ChannelFact(agent, up=True)) == Answered(Leg.AGENT)
    assert route_fact(before, _transfer(first), ChannelFact(first, up=True)) == TargetAnswered()
    assert route_fact(before, _transfer(first), ChannelFact(first, False, 17)) == TargetEnded(17)
    # a target whose transfer ended is nobody's
    assert route_fact(before, None, ChannelFact(first, up=True)) is None
    # after the first transfer: the replaced agent is stale, the target's hangup is the
    # agent's; the second transfer's target is the target now
    after = _session(sid, first, customer)
    assert route_fact(after, None, ended) is None
    assert route_fact(after, None, ChannelFact(agent, up=True)) is None
    assert route_fact(after, None, ChannelFact(first, False, 16, "x")) == LegEnded(
        Leg.AGENT, 16, "x"
    )
    assert route_fact(after, None, ChannelFact(first, up=True)) is None
    assert route_fact(after, _transfer(second), ChannelFact(second, up=True)) == TargetAnswered()
    # after the second: the first target is stale as well
    again = _session(sid, second, customer)
    assert route_fact(again, None, ChannelFact(first, False, 16)) is None
    assert route_fact(again, None, ChannelFact(second, False, 16)) == LegEnded(Leg.AGENT, 16)
    assert route_fact(again, None, ChannelFact(customer, False, 16)) == LegEnded(Leg.CUSTOMER, 16)
    # a customer-leg transfer: its target's hangup is the customer's
    handed = _session(sid, agent, first)
    assert route_fact(handed, None, ChannelFact(first, False, 16)) == LegEnded(Leg.CUSTOMER, 16)
    assert route_fact(handed, None, ChannelFact(customer, False, 16)) is None
    assert route_fact(handed, None, ended) == LegEnded(Leg.AGENT, 16, "Normal Clearing")


# -- the customer leg replaced (the agent stays) ------------------------------------------


def test_customer_leg_blind_answer_releases_the_customer_and_adopts_the_target() -> None:
    steps = decide_transfer(BLIND, TransferState.INITIATED, TargetAnswered(), Leg.CUSTOMER)
    assert steps == (
        BridgeTarget(),
        ReleaseLeg(Leg.CUSTOMER),
        AdoptTarget(Leg.CUSTOMER),
        Finish(TransferState.COMPLETED, "transfer.completed"),
    )


def test_customer_leg_attended_complete_returns_the_agent_to_the_target() -> None:
    assert decide_transfer(ATTENDED, TransferState.INITIATED, TargetAnswered(), Leg.CUSTOMER) == (
        ConsultBridge(),
        SetState(TransferState.CONSULTING, "transfer.consulting"),
    )
    steps = decide_transfer(ATTENDED, TransferState.CONSULTING, CompleteRequested(), Leg.CUSTOMER)
    assert steps == (
        ReturnAgent(),
        BridgeTarget(),
        DestroyConsult(),
        ReleaseLeg(Leg.CUSTOMER),
        AdoptTarget(Leg.CUSTOMER),
        Finish(TransferState.COMPLETED, "transfer.completed"),
    )
    assert ReleaseLeg(Leg.AGENT) not in steps


@pytest.mark.parametrize(
    ("kind", "state", "fact"),
    [
        (BLIND, TransferState.INITIATED, TargetEnded(17)),
        (ATTENDED, TransferState.INITIATED, TargetEnded(19)),
        (ATTENDED, TransferState.CONSULTING, TargetEnded(16)),
        (ATTENDED, TransferState.CONSULTING, CancelRequested()),
        (ATTENDED, TransferState.INITIATED, CancelRequested()),
    ],
)
def test_a_failed_or_canceled_transfer_is_the_same_for_either_leg(
    kind: TransferType, state: TransferState, fact: Any
) -> None:
    steps = decide_transfer(kind, state, fact, Leg.CUSTOMER)
    assert steps == decide_transfer(kind, state, fact, Leg.AGENT)
    assert steps is not None
    assert not any(isinstance(s, ReleaseLeg | AdoptTarget) for s in steps)


# -- resync: a transfer in flight across an ARI reconnect ----------------------------------


def test_resync_adopts_a_living_target() -> None:
    for state in (TransferState.INITIATED, TransferState.CONSULTING):
        assert resync_transfer(state, target_present=True, target_up=False) is None
    assert resync_transfer(TransferState.CONSULTING, target_present=True, target_up=True) is None


def test_resync_carries_on_when_the_target_answered_unseen() -> None:
    assert (
        resync_transfer(TransferState.INITIATED, target_present=True, target_up=True)
        == TargetAnswered()
    )


def test_resync_ends_a_transfer_whose_target_is_gone() -> None:
    for state in (TransferState.INITIATED, TransferState.CONSULTING):
        fact = resync_transfer(state, target_present=False, target_up=False)
        assert isinstance(fact, TargetLost)
        assert "ARI" in fact.reason
    assert resync_transfer(TransferState.COMPLETED, target_present=False, target_up=False) is None


def test_target_lost_returns_the_call_to_its_parties() -> None:
    lost = TargetLost("gone")
    assert decide_transfer(BLIND, TransferState.INITIATED, lost) == (
        Finish(TransferState.FAILED, "transfer.failed", "gone"),
    )
    assert decide_transfer(ATTENDED, TransferState.INITIATED, lost) == (
        UnholdCustomer(),
        Finish(TransferState.FAILED, "transfer.failed", "gone"),
    )
    assert decide_transfer(ATTENDED, TransferState.CONSULTING, lost, Leg.CUSTOMER) == (
        ReturnAgent(),
        DestroyConsult(),
        UnholdCustomer(),
        Finish(TransferState.FAILED, "transfer.failed", "gone"),
    )
    assert decide_transfer(ATTENDED, TransferState.CANCELED, lost) is None

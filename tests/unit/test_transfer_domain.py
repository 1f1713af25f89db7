"""The transfer decisions (pure) and how a transfer target's channel is routed."""

from __future__ import annotations

import types
import uuid
from typing import Any

import pytest

from engine.asterisk.stasis import _parse_target_channel_id, _route, parse_channel_id
from engine.asterisk.transfers import consult_bridge_id, target_channel_id
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
    HangupAgent,
    HangupTarget,
    HoldCustomer,
    OriginateTarget,
    ReturnAgent,
    SetState,
    TargetAnswered,
    TargetEnded,
    TransferState,
    TransferType,
    UnholdCustomer,
    decide_transfer,
    route_channel,
    start_transfer,
    state_for_unanswered,
)

T = TransferState
BLIND = TransferType.BLIND
ATTENDED = TransferType.ATTENDED


def test_start_blind_only_dials_the_target() -> None:
    assert start_transfer(BLIND) == (OriginateTarget(),)


def test_start_attended_holds_the_customer_first() -> None:
    assert start_transfer(ATTENDED) == (HoldCustomer(), OriginateTarget())


def test_blind_answer_bridges_target_releases_agent_and_adopts_target() -> None:
    steps = decide_transfer(BLIND, T.INITIATED, TargetAnswered())
    assert steps == (
        BridgeTarget(),
        HangupAgent(),
        AdoptTarget(),
        Finish(T.COMPLETED, "transfer.completed"),
    )


@pytest.mark.parametrize(
    ("cause", "outcome"),
    [
        (17, T.BUSY),
        (21, T.BUSY),
        (18, T.NO_ANSWER),
        (19, T.NO_ANSWER),
        (34, T.FAILED),
        (None, T.FAILED),
    ],
)
def test_blind_target_unanswered_keeps_the_call(cause: int | None, outcome: TransferState) -> None:
    assert state_for_unanswered(cause) is outcome
    steps = decide_transfer(BLIND, T.INITIATED, TargetEnded(cause, "x"))
    assert steps == (Finish(outcome, f"transfer.{outcome.value}", "x", cause),)
    # nothing touches the agent or the bridge
    assert steps is not None
    assert not any(isinstance(s, HangupAgent | BridgeTarget | AdoptTarget) for s in steps)


def test_attended_answer_moves_agent_to_consult() -> None:
    steps = decide_transfer(ATTENDED, T.INITIATED, TargetAnswered())
    assert steps == (ConsultBridge(), SetState(T.CONSULTING, "transfer.consulting"))


def test_attended_target_unanswered_takes_the_customer_off_hold() -> None:
    steps = decide_transfer(ATTENDED, T.INITIATED, TargetEnded(17))
    assert steps is not None
    assert steps[0] == UnholdCustomer()
    assert steps[-1] == Finish(T.BUSY, "transfer.busy", "target did not answer (busy)", 17)


def test_attended_complete() -> None:
    steps = decide_transfer(ATTENDED, T.CONSULTING, CompleteRequested())
    assert steps == (
        BridgeTarget(),
        DestroyConsult(),
        UnholdCustomer(),
        HangupAgent(),
        AdoptTarget(),
        Finish(T.COMPLETED, "transfer.completed"),
    )


def test_attended_cancel_while_consulting_returns_the_agent() -> None:
    steps = decide_transfer(ATTENDED, T.CONSULTING, CancelRequested())
    assert steps == (
        HangupTarget(),
        ReturnAgent(),
        DestroyConsult(),
        UnholdCustomer(),
        Finish(T.CANCELED, "transfer.canceled", "canceled by API"),
    )


def test_attended_cancel_while_ringing_releases_the_target() -> None:
    steps = decide_transfer(ATTENDED, T.INITIATED, CancelRequested())
    assert steps is not None
    assert HangupTarget() in steps
    assert ReturnAgent() not in steps
    assert steps[-1].state is T.CANCELED  # type: ignore[union-attr]


def test_target_hangup_during_consult_cancels() -> None:
    steps = decide_transfer(ATTENDED, T.CONSULTING, TargetEnded(16))
    assert steps == (
        ReturnAgent(),
        DestroyConsult(),
        UnholdCustomer(),
        Finish(T.CANCELED, "transfer.canceled", "target hung up", 16),
    )


@pytest.mark.parametrize(
    ("kind", "state", "fact"),
    [
        (ATTENDED, T.INITIATED, CompleteRequested()),  # nobody to complete to yet
        (BLIND, T.INITIATED, CompleteRequested()),
        (BLIND, T.INITIATED, CancelRequested()),
        (ATTENDED, T.COMPLETED, CancelRequested()),
        (BLIND, T.COMPLETED, TargetEnded(16)),
        (ATTENDED, T.CANCELED, TargetAnswered()),
    ],
)
def test_facts_that_do_not_apply(kind: TransferType, state: TransferState, fact: object) -> None:
    assert decide_transfer(kind, state, fact) is None  # type: ignore[arg-type]


def test_live_states() -> None:
    assert {s for s in TransferState if s.is_live} == {T.INITIATED, T.CONSULTING}


def test_route_channel_before_and_after_a_completed_transfer() -> None:
    assert route_channel("agent", target_is_agent=False) is ChannelRole.AGENT
    assert route_channel("target", target_is_agent=False) is ChannelRole.TARGET
    assert route_channel("customer", target_is_agent=False) is ChannelRole.CUSTOMER
    # once completed: the target is the agent, the replaced agent's events are stale
    assert route_channel("agent", target_is_agent=True) is ChannelRole.STALE
    assert route_channel("target", target_is_agent=True) is ChannelRole.AGENT
    assert route_channel("customer", target_is_agent=True) is ChannelRole.CUSTOMER
    assert route_channel("consult", target_is_agent=False) is None


def test_target_ids() -> None:
    sid = uuid.uuid4()
    assert target_channel_id(sid) == f"c2c-{sid}-target"
    assert consult_bridge_id(sid) == f"c2c-{sid}-consult"
    assert _parse_target_channel_id(target_channel_id(sid)) == sid
    assert parse_channel_id(target_channel_id(sid)) is None  # not an agent/customer leg
    assert _parse_target_channel_id(f"c2c-{sid}-agent") is None
    assert _parse_target_channel_id("c2c-nope-target") is None


def _session(sid: uuid.UUID, agent_channel: str) -> Any:
    return types.SimpleNamespace(id=sid, agent_channel_id=agent_channel)


def test_stasis_routes_leg_facts_by_who_is_the_agent_now() -> None:
    sid = uuid.uuid4()
    before = _session(sid, f"c2c-{sid}-agent")
    after = _session(sid, target_channel_id(sid))
    ended = LegEnded(Leg.AGENT, 16, "Normal Clearing")
    # before a completed transfer: facts pass through as they are
    assert _route(before, ended) == ended
    assert _route(before, TargetAnswered()) == TargetAnswered()
    assert _route(before, TargetEnded(17)) == TargetEnded(17)
    # after: the replaced agent is stale, the target's hangup is the agent's
    assert _route(after, ended) is None
    assert _route(after, Answered(Leg.AGENT)) is None
    assert _route(after, TargetEnded(16, "x")) == LegEnded(Leg.AGENT, 16, "x")
    assert _route(after, TargetAnswered()) is None
    customer = LegEnded(Leg.CUSTOMER, 16)
    assert _route(after, customer) == customer
    assert _route(after, CancelRequested()) == CancelRequested()

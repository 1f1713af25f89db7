"""Routing rules: the plan a transfer to a rule follows (engine/domain/routing.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from engine.domain.ivr import Digit as Key
from engine.domain.ivr import (
    Entered,
    IvrAction,
    IvrMenu,
    IvrOption,
    IvrState,
    Phase,
    Play,
    PromptFinished,
    StartInputTimer,
    TransferFailed,
    TransferredToMenu,
    TransferTargetType,
    step,
)
from engine.domain.routing import (
    MAX_RULES,
    PROVIDER_UNAVAILABLE,
    Attempt,
    RoutePlan,
    RoutingRule,
    Strategy,
    attempt_outcome,
    member_order,
    plan_route,
)
from engine.domain.transfer import TransferState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rule(strategy: Strategy, name: str = "r", **fields: object) -> RoutingRule:
    return RoutingRule(uuid.uuid4(), name, strategy, **fields)  # type: ignore[arg-type]


def book(*rules: RoutingRule) -> dict[uuid.UUID, RoutingRule]:
    return {r.id: r for r in rules}


def targets(plan: RoutePlan) -> list[tuple[str, ...]]:
    return [a.targets for a in plan.attempts]


# -- one rule, each strategy --------------------------------------------------------------


def test_ring_agent_rings_its_one_target_for_the_rule_timeout() -> None:
    r = rule(Strategy.RING_AGENT, target="agent1", ring_timeout_s=12)
    plan = plan_route(book(r), r.id)
    assert plan == RoutePlan((Attempt(r.id, ("agent1",), 12),), rules=(r.id,))


def test_simultaneous_group_is_one_attempt_ringing_every_member() -> None:
    r = rule(Strategy.RING_GROUP_SIMULTANEOUS, members=("agent1", "agent2", "+14155550100"))
    plan = plan_route(book(r), r.id)
    assert targets(plan) == [("agent1", "agent2", "+14155550100")]
    assert plan.menu is None
    assert plan.reason is None


@pytest.mark.parametrize(
    ("offers", "expected"),
    [(0, "abc"), (1, "bca"), (2, "cab"), (3, "abc"), (7, "bca")],
)
def test_round_robin_starts_at_the_offset_of_earlier_offers(offers: int, expected: str) -> None:
    r = rule(Strategy.RING_GROUP_ROUND_ROBIN, members=("a", "b", "c"), offers=offers)
    assert targets(plan_route(book(r), r.id)) == [(m,) for m in expected]


def test_round_robin_rotates_as_offers_accumulate() -> None:
    starts = [
        member_order(rule(Strategy.RING_GROUP_ROUND_ROBIN, members=("a", "b"), offers=n))[0]
        for n in range(4)
    ]
    assert starts == [("a",), ("b",), ("a",), ("b",)]


def test_least_recent_rings_never_offered_first_then_oldest() -> None:
    r = rule(
        Strategy.LEAST_RECENT,
        members=("a", "b", "c", "d"),
        last_offered={"a": T0 + timedelta(minutes=5), "c": T0, "d": T0 + timedelta(minutes=1)},
    )
    assert targets(plan_route(book(r), r.id)) == [("b",), ("c",), ("d",), ("a",)]


def test_least_recent_keeps_member_order_among_equals_and_drops_duplicates() -> None:
    r = rule(Strategy.LEAST_RECENT, members=("x", "y", "x", "z"))
    assert targets(plan_route(book(r), r.id)) == [("x",), ("y",), ("z",)]


def test_ivr_menu_rule_sends_the_caller_to_its_menu() -> None:
    r = rule(Strategy.IVR_MENU, ivr_menu="after-hours")
    plan = plan_route(book(r), r.id)
    assert (plan.attempts, plan.menu, plan.menu_rule_id) == ((), "after-hours", r.id)


def test_provider_rule_fails_with_a_clear_reason() -> None:
    r = rule(Strategy.PROVIDER, name="carrier")
    plan = plan_route(book(r), r.id)
    assert plan.menu is None
    assert [(a.targets, a.reason) for a in plan.attempts] == [
        ((), f"routing rule 'carrier': {PROVIDER_UNAVAILABLE}")
    ]
    assert plan.reason is not None
    assert PROVIDER_UNAVAILABLE in plan.reason


def test_inactive_rule_and_empty_group_ring_nobody() -> None:
    off = rule(Strategy.RING_AGENT, name="off", target="agent1", active=False)
    empty = rule(Strategy.RING_GROUP_SIMULTANEOUS, name="empty")
    for r, why in ((off, "is not active"), (empty, "has nobody to ring")):
        plan = plan_route(book(r), r.id)
        assert [a.targets for a in plan.attempts] == [()]
        assert plan.reason is not None
        assert why in plan.reason


def test_unknown_rule_is_a_reason_and_no_attempt() -> None:
    plan = plan_route({}, uuid.uuid4())
    assert plan == RoutePlan(reason="unknown routing rule")


# -- fallbacks ----------------------------------------------------------------------------


def test_fallback_chain_rings_each_rule_in_turn_with_its_own_timeout() -> None:
    last = rule(Strategy.RING_AGENT, name="last", target="operator", ring_timeout_s=5)
    group = rule(
        Strategy.RING_GROUP_ROUND_ROBIN,
        name="group",
        members=("a", "b"),
        ring_timeout_s=20,
        fallback_rule_id=last.id,
    )
    plan = plan_route(book(group, last), group.id)
    assert plan.attempts == (
        Attempt(group.id, ("a",), 20),
        Attempt(group.id, ("b",), 20),
        Attempt(last.id, ("operator",), 5),
    )
    assert plan.rules == (group.id, last.id)
    assert plan.reason is None


def test_fallback_to_a_menu_ends_the_chain_after_the_ringing() -> None:
    menu = rule(Strategy.IVR_MENU, name="voicemail", ivr_menu="vm")
    first = rule(Strategy.RING_AGENT, target="agent1", fallback_rule_id=menu.id)
    plan = plan_route(book(first, menu), first.id)
    assert targets(plan) == [("agent1",)]
    assert (plan.menu, plan.menu_rule_id) == ("vm", menu.id)


def test_provider_falls_back_to_the_next_rule() -> None:
    agent = rule(Strategy.RING_AGENT, name="agent", target="agent1")
    carrier = rule(Strategy.PROVIDER, name="carrier", fallback_rule_id=agent.id)
    plan = plan_route(book(carrier, agent), carrier.id)
    assert [(a.rule_id, a.targets) for a in plan.attempts] == [
        (carrier.id, ()),
        (agent.id, ("agent1",)),
    ]
    assert plan.reason is None  # the chain ended by ringing someone


def test_a_cycle_rings_each_rule_once() -> None:
    a_id, b_id = uuid.uuid4(), uuid.uuid4()
    a = RoutingRule(a_id, "a", Strategy.RING_AGENT, target="agent1", fallback_rule_id=b_id)
    b = RoutingRule(b_id, "b", Strategy.RING_AGENT, target="agent2", fallback_rule_id=a_id)
    plan = plan_route(book(a, b), a_id)
    assert targets(plan) == [("agent1",), ("agent2",)]
    assert plan.rules == (a_id, b_id)


def test_a_rule_that_falls_back_to_itself_rings_once() -> None:
    r_id = uuid.uuid4()
    r = RoutingRule(r_id, "self", Strategy.RING_AGENT, target="agent1", fallback_rule_id=r_id)
    assert targets(plan_route(book(r), r_id)) == [("agent1",)]


def test_the_chain_is_bounded() -> None:
    ids = [uuid.uuid4() for _ in range(MAX_RULES + 3)]
    rules = [
        RoutingRule(
            rid,
            f"r{i}",
            Strategy.RING_AGENT,
            target=f"agent{i}",
            fallback_rule_id=ids[i + 1] if i + 1 < len(ids) else None,
        )
        for i, rid in enumerate(ids)
    ]
    plan = plan_route(book(*rules), ids[0])
    assert targets(plan) == [(f"agent{i}",) for i in range(MAX_RULES)]
    assert len(plan.rules) == MAX_RULES
    assert targets(plan_route(book(*rules), ids[0], max_rules=2)) == [("agent0",), ("agent1",)]


def test_a_missing_fallback_ends_the_chain() -> None:
    r = rule(Strategy.RING_AGENT, target="agent1", fallback_rule_id=uuid.uuid4())
    plan = plan_route(book(r), r.id)
    assert targets(plan) == [("agent1",)]
    assert plan.reason == "unknown routing rule"


# -- outcomes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([TransferState.BUSY], TransferState.BUSY),
        ([TransferState.NO_ANSWER], TransferState.NO_ANSWER),
        ([TransferState.BUSY, TransferState.NO_ANSWER], TransferState.NO_ANSWER),
        ([TransferState.FAILED, TransferState.BUSY], TransferState.BUSY),
        ([TransferState.FAILED], TransferState.FAILED),
        ([], TransferState.FAILED),
    ],
)
def test_attempt_outcome(outcomes: list[TransferState], expected: TransferState) -> None:
    assert attempt_outcome(outcomes) is expected


# -- the interpreter: a rule that sends the caller to a menu ----------------------------------


MENUS = {
    "main": IvrMenu(
        "main",
        greeting="sound:main",
        options={
            "0": IvrOption(
                IvrAction.TRANSFER,
                target_type=TransferTargetType.ROUTING_RULE,
                target="support",
                failure_prompt="sound:sorry",
            )
        },
    ),
    "vm": IvrMenu("vm", greeting="sound:vm", options={"1": IvrOption(IvrAction.BACK)}),
}


def transferring() -> IvrState:
    state = IvrState()
    for event in (Entered("main"), PromptFinished(), Key("0", 10)):
        state = step(MENUS, state, event).state
    assert state.phase is Phase.TRANSFERRING
    return state


def test_transferred_to_menu_enters_it_like_a_submenu() -> None:
    done = step(MENUS, transferring(), TransferredToMenu("vm"))
    assert done.commands == (Play("sound:vm"),)
    assert done.state.stack == ("main", "vm")
    assert done.state.phase is Phase.PROMPTING
    assert done.state.active is None
    back = step(MENUS, step(MENUS, done.state, PromptFinished()).state, Key("1", 5))
    assert back.state.stack == ("main",)


def test_transferred_to_an_unknown_menu_is_a_failed_transfer() -> None:
    done = step(MENUS, transferring(), TransferredToMenu("nowhere"))
    assert done.commands == step(MENUS, transferring(), TransferFailed("x")).commands
    assert done.commands == (Play("sound:sorry"),)
    again = step(MENUS, done.state, PromptFinished())
    assert again.commands == (Play("sound:main"),)
    assert step(MENUS, again.state, PromptFinished()).commands == (StartInputTimer(5000),)


def test_transferred_to_menu_outside_a_transfer_changes_nothing() -> None:
    state = step(MENUS, IvrState(), Entered("main")).state
    assert step(MENUS, state, TransferredToMenu("vm")).state == state

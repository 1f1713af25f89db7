"""Routing rules (``call_routing_rule``) as data, and the plan a transfer to one follows.

Pure: the adapters load the rule, its fallback chain and what the plan needs from earlier
transfers (:class:`RoutingRule` ``offers`` / ``last_offered``, read from ``call_transfer``
rows), ask :func:`plan_route`, then ring the :class:`Attempt` values in order until one is
answered. Each attempt rings its targets at once (a simultaneous ring group is one attempt
of several targets; the sequential strategies are one attempt per member) for the rule's
``ring_timeout_s``.

Strategies:

* ``ring_agent``: the rule's ``target``.
* ``ring_group_simultaneous``: every member at once; the first to answer wins.
* ``ring_group_round_robin``: the members one after another, starting at a rotating offset:
  ``offers`` (how many times this rule has offered the call to a member before, one
  ``call_transfer`` row each) modulo the group size, like Asterisk's ``rrmemory``: the next
  transfer starts after the member offered last. Cross-process and deterministic.
* ``least_recent``: the members one after another, the one this rule offered a call to
  longest ago first (never offered: first of all, in member order).
* ``ivr_menu``: no ringing: the caller goes to that menu.
* ``provider``: unavailable: the engine has no carrier adapter to hand a call to.

Only *available* agents are offered a call (:mod:`engine.domain.agent_state`): a member
named in ``unavailable`` (ringing, on a call, in wrap-up, on a break, offline) is left
out of its rule's attempts and listed in the plan's ``skipped``; a rule left with nobody
to ring is unavailable. With ``at``, a rule whose schedule does not hold then
(:mod:`engine.domain.schedule`) is unavailable too, and so is a rule in ``skip`` (its
conditions do not hold for the call).

When every attempt of a rule fails (busy, no answer, failed) or the rule is unavailable,
its ``fallback_rule_id`` is followed: at most :data:`MAX_RULES` rules per transfer, and a
rule already followed ends the chain (a cycle never rings anyone twice for one rule).
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

from engine.domain.schedule import Schedule, schedule_problem
from engine.domain.transfer import TransferState

__all__ = [
    "MAX_RULES",
    "PROVIDER_UNAVAILABLE",
    "Attempt",
    "RoutePlan",
    "RoutingRule",
    "Strategy",
    "attempt_outcome",
    "member_order",
    "plan_route",
    "plan_summary",
]

MAX_RULES = 5
"""The most rules one transfer follows (the first and its fallbacks)."""

PROVIDER_UNAVAILABLE = "carrier adapters are not available yet"


class Strategy(enum.StrEnum):
    RING_AGENT = "ring_agent"
    RING_GROUP_ROUND_ROBIN = "ring_group_round_robin"
    RING_GROUP_SIMULTANEOUS = "ring_group_simultaneous"
    LEAST_RECENT = "least_recent"
    IVR_MENU = "ivr_menu"
    PROVIDER = "provider"


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingRule:
    """One ``call_routing_rule`` row, with what the plan needs from its history.

    ``members``/``target`` are agent names, endpoints or E.164 numbers. ``ivr_menu`` is
    the menu's name (``ivr_menu_id`` resolved). ``offers``: how many ``call_transfer`` rows
    this rule has (calls it offered to a member); ``last_offered``: member -> when this
    rule last offered it a call.
    """

    id: uuid.UUID
    name: str
    strategy: Strategy
    target: str | None = None
    members: tuple[str, ...] = ()
    ring_timeout_s: int = 30
    fallback_rule_id: uuid.UUID | None = None
    ivr_menu: str | None = None
    active: bool = True
    offers: int = 0
    last_offered: Mapping[str, datetime] = dataclasses.field(default_factory=dict)
    schedule: Schedule | None = None
    # what must hold of the call, by condition key (see engine.domain.routing_rules)
    conditions: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """Ring ``targets`` at once for ``ring_timeout_s``, offered by rule ``rule_id`` (None:
    a transfer straight to one target). No targets: the rule was unavailable for
    ``reason`` (provider, inactive, nobody to ring): nothing rings, the attempt failed."""

    rule_id: uuid.UUID | None
    targets: tuple[str, ...]
    ring_timeout_s: int
    reason: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RoutePlan:
    """What a transfer to a rule does.

    Ring ``attempts`` in order until one is answered. When none is: go to ``menu`` if
    set (``menu_rule_id``, an ``ivr_menu`` rule, ended the chain), else the transfer
    failed. ``reason``: why the chain ended without ringing anyone for its last rule
    (unknown, inactive, provider...), None when it just ran out of fallbacks.
    ``rules`` are the rule ids followed, in order; ``skipped``: the members left out as
    not available, with their state.
    """

    attempts: tuple[Attempt, ...] = ()
    menu: str | None = None
    menu_rule_id: uuid.UUID | None = None
    reason: str | None = None
    rules: tuple[uuid.UUID, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


def member_order(rule: RoutingRule) -> tuple[tuple[str, ...], ...]:
    """The groups of targets ``rule`` rings, one group per attempt (empty: rings none)."""
    members = rule.members
    match rule.strategy:
        case Strategy.RING_AGENT:
            return ((rule.target,),) if rule.target else ()
        case Strategy.RING_GROUP_SIMULTANEOUS:
            return (members,) if members else ()
        case Strategy.RING_GROUP_ROUND_ROBIN:
            if not members:
                return ()
            start = rule.offers % len(members)
            return tuple((m,) for m in members[start:] + members[:start])
        case Strategy.LEAST_RECENT:
            position = {m: i for i, m in reversed(list(enumerate(members)))}

            def key(member: str) -> tuple[bool, float, int]:  # never offered first
                when = rule.last_offered.get(member)
                return (when is not None, when.timestamp() if when else 0.0, position[member])

            return tuple((m,) for m in sorted(dict.fromkeys(members), key=key))
        case Strategy.IVR_MENU | Strategy.PROVIDER:
            return ()


def plan_route(
    rules: Mapping[uuid.UUID, RoutingRule],
    first: uuid.UUID,
    *,
    max_rules: int = MAX_RULES,
    unavailable: Mapping[str, str] | None = None,
    at: datetime | None = None,
    zone: str = "UTC",
    skip: Mapping[uuid.UUID, str] | None = None,
) -> RoutePlan:
    """The plan for a transfer to rule ``first``; ``rules`` holds it and its fallbacks
    (a fallback that is missing ends the chain). ``unavailable``: member -> its state, for
    the members that may not be offered a call; ``at``: when (schedules are checked, in
    ``zone`` where a schedule names none); ``skip``: rules that do not apply to the call,
    with why (their conditions, :func:`engine.domain.routing_rules.condition_skips`)."""
    busy = unavailable or {}
    attempts: list[Attempt] = []
    followed: list[uuid.UUID] = []
    skipped: dict[str, str] = {}
    reason: str | None = None
    rule_id: uuid.UUID | None = first
    while rule_id is not None and rule_id not in followed and len(followed) < max_rules:
        rule = rules.get(rule_id)
        if rule is None:
            reason = "unknown routing rule"
            break
        followed.append(rule_id)
        not_now = schedule_problem(rule.schedule, at, zone) if at is not None else None
        not_this = (skip or {}).get(rule.id)
        applies = rule.active and not_now is None and not_this is None
        ordered = member_order(rule) if applies else ()
        left_out = {m: busy[m] for group in ordered for m in group if m in busy}
        skipped.update(left_out)
        groups = tuple(g for g in (tuple(m for m in g if m not in busy) for g in ordered) if g)
        reason = None
        if not rule.active:
            reason = f"routing rule {rule.name!r} is not active"
        elif not_now is not None:
            reason = f"routing rule {rule.name!r} does not apply now: {not_now}"
        elif not_this is not None:
            reason = f"routing rule {rule.name!r} does not apply to this call: {not_this}"
        elif rule.strategy is Strategy.IVR_MENU:
            if rule.ivr_menu:
                return RoutePlan(
                    tuple(attempts),
                    rule.ivr_menu,
                    rule.id,
                    None,
                    tuple(followed),
                    tuple(skipped.items()),
                )
            reason = f"routing rule {rule.name!r}: its IVR menu is not active"
        elif rule.strategy is Strategy.PROVIDER:
            reason = f"routing rule {rule.name!r}: {PROVIDER_UNAVAILABLE}"
        elif not groups and left_out:
            states = ", ".join(f"{m} {state}" for m, state in left_out.items())
            reason = f"routing rule {rule.name!r} has nobody available to ring ({states})"
        elif not groups:
            reason = f"routing rule {rule.name!r} has nobody to ring"
        if reason is not None:
            attempts.append(Attempt(rule.id, (), rule.ring_timeout_s, reason))
        attempts.extend(Attempt(rule.id, group, rule.ring_timeout_s) for group in groups)
        rule_id = rule.fallback_rule_id
    return RoutePlan(
        tuple(attempts), reason=reason, rules=tuple(followed), skipped=tuple(skipped.items())
    )


def plan_summary(plan: RoutePlan) -> str:
    """What a plan does, in words: "rings agent3, then agent4; skipped agent5 (on_call)"."""
    rings = [" & ".join(a.targets) for a in plan.attempts if a.targets]
    parts = [f"rings {', then '.join(rings)}"] if rings else ["rings nobody"]
    if plan.skipped:
        parts.append("skipped " + ", ".join(f"{m} ({state})" for m, state in plan.skipped))
    if plan.menu is not None:
        parts.append(f"then IVR menu {plan.menu}")
    failed = [a.reason for a in plan.attempts if a.reason]
    if failed:
        parts.append("; ".join(failed))
    return "; ".join(parts)


_PRIORITY = (TransferState.NO_ANSWER, TransferState.BUSY, TransferState.FAILED)


def attempt_outcome(outcomes: Iterable[TransferState]) -> TransferState:
    """One attempt's outcome from its targets' (none answered): no_answer if anyone rang
    out, else busy if anyone was busy, else failed."""
    seen = set(outcomes)
    for state in _PRIORITY:
        if state in seen:
            return state
    return TransferState.FAILED

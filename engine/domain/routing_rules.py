"""Which routing rule a call follows, and why: rules as data, matched against a call.

A rule (:class:`RuleDefinition`, one ``call_routing_rule`` row) has *conditions* on the call
and a *schedule*; it applies to a call when every condition it sets holds (a condition with
several values holds when any of them does) and, with a schedule, the call's time falls in
one of its windows in the schedule's time zone (else the tenant's) on a day that is not
one of its holidays. :func:`select_rule` takes the tenant's active rules for the call's
direction in priority order (lower first, then by name) and the first that applies decides;
its :class:`RoutingDecision` says why in words ("rule 'sales-hours' matched: Mon–Fri
09:00–18:00 Europe/Berlin, caller +49 prefix") and why each rule before it did not.

Conditions: ``caller_prefix`` / ``callee_prefix`` (E.164 prefixes, ``+49``),
``caller_country`` / ``callee_country`` (ISO 3166 alpha-2 of the number, ``DE``),
``dialed_number`` (the DID or extension dialled, exactly), ``ivr_choice`` (the key the
caller pressed for the transfer), ``skill`` (a skill the call needs: the IVR variable
``skill``). A rule with none and no schedule is the tenant's catch-all for its direction.
An IVR transfer names its rule; :func:`condition_skips` then tells which rules of its
chain do not apply to the call, and the plan passes them to their fallbacks.

What the rule then does (strategy, members, fallback) is :mod:`engine.domain.routing`'s.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Final

import phonenumbers

from engine.domain.routing import RoutingRule, Strategy
from engine.domain.schedule import Schedule, schedule_problem, time_zone
from engine.errors import InvalidInput

__all__ = [
    "CONDITION_KEYS",
    "DIRECTIONS",
    "CallFacts",
    "Conditions",
    "RoutingDecision",
    "RoutingSettings",
    "RuleDefinition",
    "RuleVerdict",
    "condition_skips",
    "country_of",
    "describe_rule",
    "rule_applies",
    "select_rule",
]

DIRECTIONS: Final = ("inbound", "outbound", "click_to_call", "any")
CONDITION_KEYS: Final = (
    "caller_prefix",
    "callee_prefix",
    "caller_country",
    "callee_country",
    "dialed_number",
    "ivr_choice",
    "skill",
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_PREFIX = re.compile(r"\+[0-9]{1,15}")


def country_of(number: str | None) -> str | None:
    """The ISO 3166 alpha-2 region of an E.164 number, None when it has none."""
    if not number or not number.startswith("+"):
        return None
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    return region if region and region != "ZZ" else None


@dataclasses.dataclass(frozen=True, slots=True)
class Conditions:
    """What must hold of the call (each non-empty field: one of its values)."""

    caller_prefix: tuple[str, ...] = ()
    callee_prefix: tuple[str, ...] = ()
    caller_country: tuple[str, ...] = ()
    callee_country: tuple[str, ...] = ()
    dialed_number: tuple[str, ...] = ()
    ivr_choice: tuple[str, ...] = ()
    skill: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in ("caller_prefix", "callee_prefix"):
            for i, value in enumerate(getattr(self, key)):
                if not _PREFIX.fullmatch(value):
                    raise InvalidInput(f"{key}.{i}", "an E.164 prefix: '+' and 1-15 digits")
        for key in ("caller_country", "callee_country"):
            for i, value in enumerate(getattr(self, key)):
                if value not in phonenumbers.SUPPORTED_REGIONS:
                    raise InvalidInput(f"{key}.{i}", f"not an ISO 3166 country code: {value!r}")
        for key in ("dialed_number", "ivr_choice", "skill"):
            for i, value in enumerate(getattr(self, key)):
                if not value.strip():
                    raise InvalidInput(f"{key}.{i}", "must not be empty")

    def as_dict(self) -> dict[str, list[str]]:
        """The conditions set, by key (the stored and the YAML form)."""
        return {k: list(getattr(self, k)) for k in CONDITION_KEYS if getattr(self, k)}

    def as_tuples(self) -> dict[str, tuple[str, ...]]:
        """The conditions set, by key (what a plan-time RoutingRule carries)."""
        return {k: getattr(self, k) for k in CONDITION_KEYS if getattr(self, k)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Iterable[str]]) -> Conditions:
        return cls(**{k: tuple(str(v) for v in data[k]) for k in CONDITION_KEYS if k in data})


@dataclasses.dataclass(frozen=True, slots=True)
class RuleDefinition:
    """A routing rule as the tenant manages it (the API's body, a YAML entry, a row).

    ``ivr_menu``, ``provider`` and ``fallback`` are names (of a menu, a provider, another
    rule of the tenant); ``id`` is the stored row's, None before it is stored.
    """

    name: str
    strategy: Strategy
    priority: int = 100
    active: bool = True
    direction: str = "inbound"
    description: str = ""
    conditions: Conditions = Conditions()
    schedule: Schedule | None = None
    target: str | None = None
    members: tuple[str, ...] = ()
    ivr_menu: str | None = None
    provider: str | None = None
    ring_timeout_s: int = 30
    fallback: str | None = None
    id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise InvalidInput("name", "letters, digits, '_', '.', '-' (at most 63)")
        if not 0 <= self.priority <= 1_000_000:
            raise InvalidInput("priority", "must be between 0 and 1000000")
        if self.direction not in DIRECTIONS:
            raise InvalidInput("direction", "must be one of: " + ", ".join(DIRECTIONS))
        if not 1 <= self.ring_timeout_s <= 600:
            raise InvalidInput("ring_timeout_s", "must be between 1 and 600")
        if self.fallback == self.name:
            raise InvalidInput("fallback", "a rule cannot fall back to itself")
        uses = {
            "target": self.strategy is Strategy.RING_AGENT,
            "members": self.strategy
            in (
                Strategy.RING_GROUP_ROUND_ROBIN,
                Strategy.RING_GROUP_SIMULTANEOUS,
                Strategy.LEAST_RECENT,
            ),
            "ivr_menu": self.strategy is Strategy.IVR_MENU,
            "provider": self.strategy is Strategy.PROVIDER,
        }
        for key, used in uses.items():
            value = getattr(self, key)
            if used and not value:
                raise InvalidInput(key, f"required by strategy {self.strategy.value}")
            if not used and value:
                raise InvalidInput(key, f"not used by strategy {self.strategy.value}")
        if len(set(self.members)) != len(self.members):
            raise InvalidInput("members", "a member is listed twice")
        for i, member in enumerate(self.members):
            if not member.strip():
                raise InvalidInput(f"members.{i}", "must not be empty")

    @property
    def match_type(self) -> str:
        """The row's ``match_type``: the catch-all, a schedule alone, or conditions."""
        if self.conditions.as_dict():
            return "conditions"
        return "time_of_day" if self.schedule is not None else "tenant_default"


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingSettings:
    """A tenant's routing settings: the default zone of schedules, the agents' wrap-up."""

    time_zone: str = "UTC"
    wrap_up_s: int = 0

    def __post_init__(self) -> None:
        time_zone(self.time_zone, field="time_zone")
        if not 0 <= self.wrap_up_s <= 3600:
            raise InvalidInput("wrap_up_s", "must be between 0 and 3600 seconds")


@dataclasses.dataclass(frozen=True, slots=True)
class CallFacts:
    """What rules are matched against: the call, at ``at`` (aware)."""

    at: datetime
    direction: str = "inbound"
    caller: str | None = None
    callee: str | None = None
    dialed: str | None = None
    ivr_choice: str | None = None
    skills: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise InvalidInput("at", "a time with its zone or offset")
        if not 1900 <= self.at.year <= 2200:
            raise InvalidInput("at", "a year between 1900 and 2200")


def _condition_problems(conditions: Conditions, facts: CallFacts) -> list[str]:
    problems: list[str] = []

    def need(values: tuple[str, ...], ok: bool, what: str) -> None:
        if values and not ok:
            problems.append(f"{what} is not {' or '.join(values)}")

    caller, callee = facts.caller or "", facts.callee or ""
    need(
        conditions.caller_prefix,
        any(caller.startswith(p) for p in conditions.caller_prefix),
        f"caller {caller or '(none)'} prefix",
    )
    need(
        conditions.callee_prefix,
        any(callee.startswith(p) for p in conditions.callee_prefix),
        f"callee {callee or '(none)'} prefix",
    )
    caller_country, callee_country = country_of(facts.caller), country_of(facts.callee)
    need(
        conditions.caller_country,
        caller_country in conditions.caller_country,
        f"caller country {caller_country or '(unknown)'}",
    )
    need(
        conditions.callee_country,
        callee_country in conditions.callee_country,
        f"callee country {callee_country or '(unknown)'}",
    )
    need(
        conditions.dialed_number,
        facts.dialed in conditions.dialed_number,
        f"dialled number {facts.dialed or '(none)'}",
    )
    need(
        conditions.ivr_choice,
        facts.ivr_choice in conditions.ivr_choice,
        f"IVR choice {facts.ivr_choice or '(none)'}",
    )
    need(
        conditions.skill,
        bool(facts.skills & set(conditions.skill)),
        f"skill {', '.join(sorted(facts.skills)) or '(none)'}",
    )
    return problems


def condition_skips(rules: Iterable[RoutingRule], facts: CallFacts) -> dict[uuid.UUID, str]:
    """Of ``rules`` (a transfer's chain), those whose conditions do not hold for the call,
    with why (for :func:`~engine.domain.routing.plan_route`'s ``skip``)."""
    skips: dict[uuid.UUID, str] = {}
    for rule in rules:
        if rule.conditions:
            problems = _condition_problems(Conditions.from_dict(rule.conditions), facts)
            if problems:
                skips[rule.id] = "; ".join(problems)
    return skips


def rule_applies(rule: RuleDefinition, facts: CallFacts, default_zone: str) -> str | None:
    """Why ``rule`` does not apply to the call (None: it applies)."""
    if not rule.active:
        return "not active"
    if rule.direction not in ("any", facts.direction):
        return f"for {rule.direction} calls"
    problems = _condition_problems(rule.conditions, facts)
    when = schedule_problem(rule.schedule, facts.at, default_zone)
    if when is not None:
        problems.append(when)
    return "; ".join(problems) or None


def describe_rule(rule: RuleDefinition, default_zone: str) -> str:
    """What a rule matches, in words ("Mon–Fri 09:00–18:00 Europe/Berlin, +49 prefix")."""
    parts: list[str] = []
    schedule = rule.schedule
    if schedule is not None:
        zone = schedule.time_zone or default_zone
        if schedule.windows:
            parts.append(f"{'; '.join(w.describe() for w in schedule.windows)} {zone}")
        if schedule.holidays:
            parts.append(f"not on {len(schedule.holidays)} holiday(s)")
    c = rule.conditions
    labels = (
        ("caller_prefix", "caller {} prefix"),
        ("callee_prefix", "callee {} prefix"),
        ("caller_country", "caller in {}"),
        ("callee_country", "callee in {}"),
        ("dialed_number", "dialled {}"),
        ("ivr_choice", "IVR choice {}"),
        ("skill", "skill {}"),
    )
    for key, label in labels:
        values: tuple[str, ...] = getattr(c, key)
        if values:
            parts.append(label.format("/".join(values)))
    return ", ".join(parts) or "every call (catch-all)"


@dataclasses.dataclass(frozen=True, slots=True)
class RuleVerdict:
    rule: str
    priority: int
    applies: bool
    why: str  # what it matched, or why it did not apply


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingDecision:
    """The rule that decides (None: none applies) and the words that say why."""

    rule: RuleDefinition | None
    reason: str
    considered: tuple[RuleVerdict, ...]


def select_rule(
    rules: Iterable[RuleDefinition], facts: CallFacts, default_zone: str
) -> RoutingDecision:
    """The first rule, by priority then name, that applies to the call."""
    considered: list[RuleVerdict] = []
    for rule in sorted(rules, key=lambda r: (r.priority, r.name)):
        problem = rule_applies(rule, facts, default_zone)
        if problem is None:
            what = describe_rule(rule, default_zone)
            considered.append(RuleVerdict(rule.name, rule.priority, True, what))
            reason = f"rule {rule.name!r} matched: {what}"
            return RoutingDecision(rule, reason, tuple(considered))
        considered.append(RuleVerdict(rule.name, rule.priority, False, problem))
    return RoutingDecision(None, "no routing rule applies", tuple(considered))

"""Routing rules as data: conditions, schedules (time zones, past midnight, holidays),
selection by priority with its reasons, plans that skip agents who are not available, and
the YAML loader's line-numbered errors. Prefix and window matching are property-tested."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.routing import RoutingRule, Strategy, plan_route, plan_summary
from engine.domain.routing_rules import (
    CallFacts,
    Conditions,
    RoutingSettings,
    RuleDefinition,
    condition_skips,
    rule_applies,
    select_rule,
)
from engine.domain.schedule import Schedule, Window, at_local, schedule_problem
from engine.errors import ConfigError, InvalidInput
from engine.routing_yaml import dump_rules, load_rules, rule_entry
from tests.support.yaml_bombs import BILLION_LAUGHS

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = Schedule((Window((1, 2, 3, 4, 5), time(9), time(18)),), "Europe/Berlin")
TUESDAY_10_BERLIN = datetime(2026, 12, 1, 10, 0, tzinfo=BERLIN)  # 2026-12-01 is a Tuesday


def _rule(name: str, **kw: object) -> RuleDefinition:
    return RuleDefinition(name, Strategy.RING_AGENT, target="agent1", **kw)  # type: ignore[arg-type]


def _facts(**kw: object) -> CallFacts:
    return CallFacts(at=kw.pop("at", TUESDAY_10_BERLIN), **kw)  # type: ignore[arg-type]


# -- selection and its reasons ----------------------------------------------------------------


def test_the_first_rule_by_priority_that_applies_decides_and_says_why() -> None:
    rules = [
        _rule("after-hours", priority=50),
        _rule("sales-hours", priority=10, schedule=WEEKDAYS, conditions=Conditions(("+49",))),
        _rule("uk", priority=5, conditions=Conditions(caller_country=("GB",))),
    ]
    decision = select_rule(rules, _facts(caller="+4930123456"), "UTC")
    assert decision.rule is not None
    assert decision.rule.name == "sales-hours"
    assert decision.reason == (
        "rule 'sales-hours' matched: Mon–Fri 09:00–18:00 Europe/Berlin, caller +49 prefix"
    )
    assert [(v.rule, v.applies) for v in decision.considered] == [
        ("uk", False),
        ("sales-hours", True),
    ]
    assert decision.considered[0].why == "caller country DE is not GB"

    evening = select_rule(
        rules, _facts(caller="+4930123456", at=TUESDAY_10_BERLIN.replace(hour=19)), "UTC"
    )
    assert evening.rule is not None
    assert evening.rule.name == "after-hours"
    assert evening.considered[1].why == "Tue 19:00 Europe/Berlin is outside Mon–Fri 09:00–18:00"


def test_every_condition_must_hold_and_a_list_holds_when_any_value_does() -> None:
    rule = _rule(
        "de-support",
        conditions=Conditions(
            callee_country=("DE", "AT"),
            dialed_number=("5551000",),
            ivr_choice=("2",),
            skill=("german",),
        ),
    )
    facts = _facts(
        callee="+43123456789", dialed="5551000", ivr_choice="2", skills=frozenset({"german", "x"})
    )
    assert rule_applies(rule, facts, "UTC") is None
    assert (
        rule_applies(
            rule,
            _facts(
                callee="+43123456789",
                dialed="5551000",
                ivr_choice="3",
                skills=frozenset({"german"}),
            ),
            "UTC",
        )
        == "IVR choice 3 is not 2"
    )
    assert "skill (none)" in (
        rule_applies(rule, _facts(callee="+43123456789", dialed="5551000", ivr_choice="2"), "UTC")
        or ""
    )


def test_direction_and_inactive_rules_never_apply() -> None:
    assert rule_applies(_rule("x", active=False), _facts(), "UTC") == "not active"
    assert rule_applies(_rule("x", direction="outbound"), _facts(), "UTC") == "for outbound calls"
    assert rule_applies(_rule("x", direction="any"), _facts(direction="outbound"), "UTC") is None
    assert select_rule([], _facts(), "UTC").reason == "no routing rule applies"


def test_a_schedule_naming_no_zone_is_read_in_the_tenants() -> None:
    rule = _rule("x", schedule=Schedule((Window((2,), time(9), time(10)),)))
    at = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)  # 09:30 in Berlin, 08:30 in UTC
    assert rule_applies(rule, _facts(at=at), "Europe/Berlin") is None
    assert rule_applies(rule, _facts(at=at), "UTC") == "Tue 08:30 UTC is outside Tue 09:00–10:00"


def test_holidays_are_dated_exceptions_in_the_rules_zone() -> None:
    schedule = Schedule(WEEKDAYS.windows, "Europe/Berlin", (date(2026, 12, 25),))
    christmas = datetime(2026, 12, 25, 10, tzinfo=BERLIN)  # a Friday
    assert schedule_problem(schedule, christmas, "UTC") == "2026-12-25 is a holiday (Europe/Berlin)"
    assert schedule_problem(schedule, christmas - timedelta(days=1), "UTC") is None
    # 23:30 UTC on the 24th is already the 25th in Berlin
    assert (
        schedule_problem(
            Schedule((), "Europe/Berlin", (date(2026, 12, 25),)),
            datetime(2026, 12, 24, 23, 30, tzinfo=UTC),
            "UTC",
        )
        == "2026-12-25 is a holiday (Europe/Berlin)"
    )


def test_a_window_past_midnight_belongs_to_the_day_it_starts() -> None:
    night = Window((5,), time(22), time(6))  # Friday 22:00 to Saturday 06:00
    assert night.holds(datetime(2026, 12, 4, 23, 0))  # Friday
    assert night.holds(datetime(2026, 12, 5, 5, 59))  # Saturday morning
    assert not night.holds(datetime(2026, 12, 5, 23, 0))  # Saturday evening
    assert not night.holds(datetime(2026, 12, 4, 5, 0))  # Friday morning (after Thursday)


def test_explain_reads_a_time_without_offset_as_the_tenants_local_time() -> None:
    assert at_local(datetime(2026, 12, 1, 10), "Europe/Berlin") == TUESDAY_10_BERLIN
    assert at_local(datetime(2026, 12, 1, 9, tzinfo=UTC), "Europe/Berlin").hour == 10


@given(
    number=st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    prefix=st.from_regex(r"\+[0-9]{1,15}", fullmatch=True),
)
def test_a_caller_prefix_holds_exactly_when_the_number_starts_with_it(
    number: str, prefix: str
) -> None:
    rule = _rule("p", conditions=Conditions(caller_prefix=(prefix,)))
    applies = rule_applies(rule, _facts(caller=number), "UTC") is None
    assert applies == number.startswith(prefix)
    # every prefix of a number holds for it
    for end in range(2, len(number) + 1):
        own = _rule("p", conditions=Conditions(caller_prefix=(number[:end],)))
        assert rule_applies(own, _facts(caller=number), "UTC") is None


@given(
    days=st.sets(st.integers(1, 7), min_size=1).map(lambda d: tuple(sorted(d))),
    start=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    end=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    moment=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
)
def test_a_window_holds_as_its_plain_definition_says(
    days: tuple[int, ...], start: time, end: time, moment: datetime
) -> None:
    if start == end:
        with pytest.raises(InvalidInput):
            Window(days, start, end)
        return
    window = Window(days, start, end)
    clock = moment.time()
    if start < end:
        expected = moment.isoweekday() in days and start <= clock < end
    else:  # past midnight: the evening of a listed day, or the morning after one
        yesterday = (moment - timedelta(days=1)).isoweekday()
        expected = (moment.isoweekday() in days and clock >= start) or (
            yesterday in days and clock < end
        )
    assert window.holds(moment) == expected


def test_rule_definitions_refuse_what_a_strategy_cannot_use() -> None:
    with pytest.raises(InvalidInput, match="target: required by strategy ring_agent"):
        RuleDefinition("x", Strategy.RING_AGENT)
    with pytest.raises(InvalidInput, match="members: not used by strategy ring_agent"):
        RuleDefinition("x", Strategy.RING_AGENT, target="a", members=("b",))
    with pytest.raises(InvalidInput, match=r"caller_prefix\.0"):
        Conditions(caller_prefix=("49",))
    with pytest.raises(InvalidInput, match=r"caller_country\.0"):
        Conditions(caller_country=("XX",))
    with pytest.raises(InvalidInput, match="fallback"):
        RuleDefinition("x", Strategy.RING_AGENT, target="a", fallback="x")
    with pytest.raises(InvalidInput, match="time_zone"):
        RoutingSettings(time_zone="Mars/Olympus")
    with pytest.raises(InvalidInput, match="wrap_up_s"):
        RoutingSettings(wrap_up_s=-1)


# -- plans: only available agents are offered --------------------------------------------------


def _group(strategy: Strategy, members: tuple[str, ...], **kw: object) -> RoutingRule:
    return RoutingRule(uuid.uuid4(), "group", strategy, members=members, **kw)  # type: ignore[arg-type]


def test_a_group_skips_agents_that_are_not_available() -> None:
    rule = _group(Strategy.RING_GROUP_ROUND_ROBIN, ("a", "b", "c"))
    plan = plan_route({rule.id: rule}, rule.id, unavailable={"a": "on_call"})
    assert [a.targets for a in plan.attempts] == [("b",), ("c",)]
    assert plan.skipped == (("a", "on_call"),)
    assert plan_summary(plan) == "rings b, then c; skipped a (on_call)"

    together = _group(Strategy.RING_GROUP_SIMULTANEOUS, ("a", "b"))
    plan = plan_route({together.id: together}, together.id, unavailable={"b": "wrap_up"})
    assert [a.targets for a in plan.attempts] == [("a",)]


def test_a_rule_with_nobody_available_falls_back_and_says_who_was_busy() -> None:
    fallback = RoutingRule(uuid.uuid4(), "operator", Strategy.RING_AGENT, target="op")
    rule = _group(Strategy.LEAST_RECENT, ("a", "b"), fallback_rule_id=fallback.id)
    rules = {rule.id: rule, fallback.id: fallback}
    plan = plan_route(rules, rule.id, unavailable={"a": "ringing", "b": "break"})
    assert plan.attempts[0].targets == ()
    assert plan.attempts[0].reason == (
        "routing rule 'group' has nobody available to ring (a ringing, b break)"
    )
    assert plan.attempts[1].targets == ("op",)


def test_a_rule_out_of_schedule_is_passed_over_for_its_fallback() -> None:
    fallback = RoutingRule(uuid.uuid4(), "closed", Strategy.IVR_MENU, ivr_menu="closed")
    rule = RoutingRule(
        uuid.uuid4(),
        "sales",
        Strategy.RING_AGENT,
        target="a",
        schedule=WEEKDAYS,
        fallback_rule_id=fallback.id,
    )
    rules = {rule.id: rule, fallback.id: fallback}
    saturday = datetime(2026, 12, 5, 10, tzinfo=BERLIN)
    plan = plan_route(rules, rule.id, at=saturday)
    assert plan.menu == "closed"
    assert plan.attempts[0].reason == (
        "routing rule 'sales' does not apply now: "
        "Sat 10:00 Europe/Berlin is outside Mon–Fri 09:00–18:00"
    )
    assert plan_route(rules, rule.id, at=TUESDAY_10_BERLIN).attempts[0].targets == ("a",)


# -- YAML --------------------------------------------------------------------------------------

AGENT_X = "rules:\n  x:\n    strategy: ring_agent\n    target: a\n"

DOC = """\
settings:
  time_zone: Europe/Berlin
  wrap_up_s: 30
rules:
  sales-hours:
    priority: 10
    description: Sales, office hours
    match:
      caller_prefix: "+49"
      ivr_choice: [1, 2]
    schedule:
      windows:
        - {days: [1, 2, 3, 4, 5], start: 09:00, end: "18:00"}
      holidays: [2026-12-25]
    strategy: ring_group_simultaneous
    members: [agent3, 1001]
    ring_timeout_s: 20
    fallback: closed
  closed:
    strategy: ivr_menu
    ivr_menu: closed
"""


def test_a_document_loads_and_dumps_back_to_the_same_rules() -> None:
    doc = load_rules(DOC, file="r.yaml")
    assert doc.settings == RoutingSettings("Europe/Berlin", 30)
    sales = doc.rules["sales-hours"]
    assert sales.conditions == Conditions(caller_prefix=("+49",), ivr_choice=("1", "2"))
    assert sales.schedule == Schedule(
        (Window((1, 2, 3, 4, 5), time(9), time(18)),), None, (date(2026, 12, 25),)
    )
    assert sales.members == ("agent3", "1001")
    assert sales.match_type == "conditions"
    assert doc.rules["closed"].match_type == "tenant_default"
    assert load_rules(dump_rules(doc.rules, doc.settings)) == doc
    assert rule_entry(doc.rules["closed"]) == {"strategy": "ivr_menu", "ivr_menu": "closed"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "rules:\n  x:\n    strategy: ring_agent\n",
            "r.yaml:2: rules.x.target: required by strategy ring_agent",
        ),
        ("rules:\n  x:\n    strategy: ring\n", "r.yaml:3: rules.x.strategy: must be one of: "),
        ("rules:\n  x:\n    target: a\n", "r.yaml:2: rules.x.strategy: required"),
        (
            AGENT_X + "    match:\n      caller_prefix: ['+49', '49']\n",
            "r.yaml:6: rules.x.match.caller_prefix.1: an E.164 prefix",
        ),
        (
            AGENT_X + "    match:\n      caller_prefix: +49\n",
            "r.yaml:6: rules.x.match.caller_prefix: quote the prefix ('+49')",
        ),
        (
            AGENT_X + "    match: {area: 1}\n",
            "r.yaml:5: rules.x.match.area: unknown key",
        ),
        (
            AGENT_X
            + "    schedule:\n      windows:\n        - {days: [8], start: '9:00', end: '10:00'}\n",
            "r.yaml:7: rules.x.schedule.windows.0.days: ISO weekdays",
        ),
        (
            AGENT_X
            + "    schedule:\n      windows:\n        - {days: [1], start: 'nine', end: '10:00'}\n",
            "r.yaml:7: rules.x.schedule.windows.0.start: expected a time HH:MM",
        ),
        (
            AGENT_X + "    schedule:\n      holidays: [christmas]\n",
            "r.yaml:6: rules.x.schedule.holidays.0: expected a date YYYY-MM-DD",
        ),
        (
            AGENT_X + "    schedule: {time_zone: Mars/Base, holidays: [2026-01-01]}\n",
            "r.yaml:5: rules.x.schedule.time_zone: unknown time zone 'Mars/Base'",
        ),
        (
            "rules:\n  'a b':\n    strategy: ring_agent\n    target: a\n",
            "r.yaml:2: rules.a b: letters, digits",
        ),
        (
            AGENT_X + "    priority: high\n",
            "r.yaml:5: rules.x.priority: expected an integer",
        ),
        (
            "settings: {wrap_up_s: 7200}\n",
            "r.yaml:1: settings.wrap_up_s: must be between 0 and 3600",
        ),
        ("rulez: {}\n", "r.yaml:1: rulez: unknown key"),
        ("{}\n", "r.yaml:1: rules: required"),
    ],
)
def test_every_problem_names_the_file_line_and_field(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_rules(text, file="r.yaml")
    assert str(caught.value).startswith(error), str(caught.value)


def test_hostile_yaml_is_refused() -> None:
    with pytest.raises(ConfigError, match="aliases"):
        load_rules(BILLION_LAUGHS, file="r.yaml")


def test_a_rule_whose_conditions_do_not_hold_for_the_call_passes_it_to_its_fallback() -> None:
    intl = RoutingRule(uuid.uuid4(), "sales-intl", Strategy.RING_AGENT, target="intl")
    german = RoutingRule(
        uuid.uuid4(),
        "sales-de",
        Strategy.RING_AGENT,
        target="de",
        fallback_rule_id=intl.id,
        conditions={"caller_prefix": ("+49",), "ivr_choice": ("1",)},
    )
    rules = {german.id: german, intl.id: intl}
    berlin = _facts(caller="+4930123456", ivr_choice="1")
    assert condition_skips(rules.values(), berlin) == {}
    assert plan_route(rules, german.id, skip={}).attempts[0].targets == ("de",)
    paris = _facts(caller="+33123456789", ivr_choice="1")
    skip = condition_skips(rules.values(), paris)
    assert skip == {german.id: "caller +33123456789 prefix is not +49"}
    plan = plan_route(rules, german.id, skip=skip)
    assert plan.attempts[0].reason == (
        "routing rule 'sales-de' does not apply to this call: caller +33123456789 prefix is not +49"
    )
    assert plan.attempts[1].targets == ("intl",)

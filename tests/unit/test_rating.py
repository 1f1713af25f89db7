"""Rating: pulse rounding, money rounding, which card wins, validity dates, charged legs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.rating import (
    NO_CURRENCY,
    ChargedLeg,
    LegDirection,
    PulseRule,
    Rate,
    billable_seconds,
    charged_legs,
    choose_rate,
    leg_seconds,
    number_prefixes,
    rate_leg,
    usage_minor,
)
from engine.errors import DomainError

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
UK = "+442071234567"


def card(prefix: str, per_minute: int = 100, **kw: object) -> Rate:
    return Rate(
        id=uuid.uuid4(),
        destination_prefix=prefix,
        rate_per_minute_minor=per_minute,
        currency="USD",
        **kw,
    )  # type: ignore[arg-type]


def leg(
    number: str = UK, seconds: float = 61, *, provider: uuid.UUID | None = None, at: datetime = T0
) -> ChargedLeg:
    return ChargedLeg(
        "customer", number, LegDirection.OUTBOUND, at, at + timedelta(seconds=seconds), provider
    )


# -- pulses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pulse", "duration", "billed"),
    [
        ("1/1", 0, 1),
        ("1/1", 1, 1),
        ("1/1", 61, 61),
        ("30/6", 0, 30),
        ("30/6", 29, 30),
        ("30/6", 31, 36),
        ("30/6", 36, 36),
        ("60/60", 1, 60),
        ("60/60", 61, 120),
        ("60", 125, 180),
        ("0/60", 0, 0),
    ],
)
def test_pulse_rules(pulse: str, duration: int, billed: int) -> None:
    assert billable_seconds(duration, PulseRule.parse(pulse)) == billed


@given(
    duration=st.integers(min_value=0, max_value=100_000),
    minimum=st.integers(min_value=0, max_value=600),
    increment=st.integers(min_value=1, max_value=3600),
)
def test_pulse_rounding_never_undercharges_nor_overcharges_by_a_pulse(
    duration: int, minimum: int, increment: int
) -> None:
    billed = billable_seconds(duration, PulseRule(minimum, increment))
    counted = max(minimum, duration)
    assert billed >= counted  # never less than talked (or the minimum)
    assert billed - counted < increment  # never a whole pulse more
    assert billed % increment == 0


@given(
    seconds=st.integers(min_value=0, max_value=100_000),
    rate=st.integers(min_value=0, max_value=10**9),
    scale=st.integers(min_value=0, max_value=6),
)
def test_money_rounds_up_to_less_than_one_minor_unit(seconds: int, rate: int, scale: int) -> None:
    exact_times_denominator = seconds * rate  # exact cost x 60 x 10^scale
    denominator = 60 * 10**scale
    amount = usage_minor(seconds, rate, scale)
    assert amount * denominator >= exact_times_denominator
    assert (amount - 1) * denominator < exact_times_denominator or amount == 0


@given(micros=st.integers(min_value=0, max_value=10**11))
def test_talk_time_counts_started_seconds(micros: int) -> None:
    seconds = leg_seconds(T0, T0 + timedelta(microseconds=micros))
    assert seconds * 1_000_000 >= micros > (seconds - 1) * 1_000_000 or seconds == 0 == micros


def test_bad_pulses_are_refused() -> None:
    for text in ("", "a/b", "30/0", "30/3601", "-1/6"):
        with pytest.raises(DomainError):
            PulseRule.parse(text)


# -- amounts ------------------------------------------------------------------------------------


def test_amount_with_sub_unit_rate_fee_and_minimum() -> None:
    # 0.85 cents/min, 30/6 pulse, 61 s talked -> 66 s billed -> 0.935 -> 1 cent; +5 fee
    rate = card("+44", 85, rate_scale=2, pulse=PulseRule(30, 6), connection_fee_minor=5)
    line = rate_leg([rate], leg(seconds=60.2))
    assert (line.duration_s, line.billable_seconds, line.amount_minor) == (61, 66, 6)
    assert line.currency == "USD"
    assert line.matched_prefix == "+44"
    # a minimum charge raises the usage, the fee comes on top
    rate = card("+44", 85, rate_scale=2, minimum_charge_minor=10, connection_fee_minor=5)
    assert rate_leg([rate], leg(seconds=10)).amount_minor == 15


def test_a_leg_answered_for_zero_seconds_costs_its_minimum_and_fee() -> None:
    rate = card("+44", 120, pulse=PulseRule(60, 60), connection_fee_minor=3)
    line = rate_leg([rate], leg(seconds=0))
    assert (line.duration_s, line.billable_seconds, line.amount_minor) == (0, 60, 123)


# -- which card -----------------------------------------------------------------------------------


def test_longest_prefix_wins() -> None:
    rates = [card("+"), card("+4"), card("+44"), card("+4420"), card("+4421"), card("+1")]
    assert choose_rate(rates, leg()) is rates[3]
    assert choose_rate(rates, leg("+14155550100")) is rates[5]
    assert choose_rate(rates, leg("+33612345678")) is rates[0]


@given(st.lists(st.text("0123456789", max_size=6), max_size=12))
def test_the_chosen_card_is_a_longest_matching_prefix(prefixes: list[str]) -> None:
    rates = [card("+" + p) for p in prefixes]
    chosen = choose_rate(rates, leg())
    matching = [r for r in rates if UK.startswith(r.destination_prefix)]
    if not matching:
        assert chosen is None
    else:
        assert chosen is not None
        assert len(chosen.destination_prefix) == max(len(r.destination_prefix) for r in matching)


def test_provider_card_beats_any_provider_card_then_priority() -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    anyone = card("+44", priority=1)
    own = card("+44", provider_id=mine, priority=50)
    theirs = card("+4420", provider_id=other)  # longer, but not this leg's provider
    assert choose_rate([anyone, own, theirs], leg(provider=mine)) is own
    assert choose_rate([anyone, own, theirs], leg(provider=None)) is anyone
    cheap, dear = card("+44", priority=10), card("+44", priority=20)
    assert choose_rate([dear, cheap], leg()) is cheap


def test_validity_dates_and_the_newest_card() -> None:
    old = card("+44", 100, effective_from=T0 - timedelta(days=30), effective_to=T0)
    new = card("+44", 200, effective_from=T0)
    later = card("+44", 300, effective_from=T0 + timedelta(days=1))
    rates = [old, new, later]
    assert choose_rate(rates, leg(at=T0 - timedelta(seconds=1))) is old
    assert choose_rate(rates, leg(at=T0)) is new  # effective_to is exclusive
    assert choose_rate(rates, leg(at=T0 + timedelta(days=2))) is later
    assert choose_rate(rates, leg(at=T0 - timedelta(days=31))) is None
    # two open cards on one prefix: the later effective_from supersedes
    superseded = card("+44", 1, effective_from=T0 - timedelta(days=2))
    assert choose_rate([superseded, new], leg(at=T0 + timedelta(hours=1))) is new


def test_direction_must_match() -> None:
    inbound = card("+44", direction=LegDirection.INBOUND)
    assert choose_rate([inbound], leg()) is None


def test_unrated_legs_get_a_zero_line_with_a_reason() -> None:
    line = rate_leg([card("+1")], leg())
    assert (line.amount_minor, line.currency, line.rate) == (0, NO_CURRENCY, None)
    assert line.unrated_reason is not None
    assert UK in line.unrated_reason
    endpoint = rate_leg([card("+")], leg("PJSIP/1001"))
    assert endpoint.amount_minor == 0
    assert endpoint.unrated_reason is not None
    assert "not a phone number" in endpoint.unrated_reason


def test_number_prefixes() -> None:
    assert number_prefixes("+4420123") == [
        "+",
        "+4",
        "+44",
        "+442",
        "+4420",
        "+44201",
        "+442012",
        "+4420123",
    ]
    assert number_prefixes("PJSIP/1001") == []


# -- charged legs ---------------------------------------------------------------------------------


def test_charged_legs_of_a_bridged_call_and_of_an_agent_only_call() -> None:
    provider = uuid.uuid4()
    common = {"agent_number": "+441000000001", "customer_number": UK, "provider_id": provider}
    end = T0 + timedelta(seconds=90)
    both = charged_legs(
        agent_answered_at=T0, connected_at=T0 + timedelta(seconds=10), ended_at=end, **common
    )
    assert [(x.leg, x.number, x.answered_at, x.ended_at) for x in both] == [
        ("agent", "+441000000001", T0, end),
        ("customer", UK, T0 + timedelta(seconds=10), end),
    ]
    assert all(x.provider_id == provider and x.direction is LegDirection.OUTBOUND for x in both)
    agent_only = charged_legs(agent_answered_at=T0, connected_at=None, ended_at=end, **common)
    assert [x.leg for x in agent_only] == ["agent"]
    assert charged_legs(agent_answered_at=None, connected_at=None, ended_at=end, **common) == []
    assert charged_legs(agent_answered_at=T0, connected_at=None, ended_at=None, **common) == []


def test_an_inbound_call_charges_the_caller_by_did_and_an_answered_target() -> None:
    from engine.domain.rating import inbound_legs

    end = T0 + timedelta(seconds=90)
    caller, target = inbound_legs(
        dialed_number="+18005550100",
        connected_at=T0,
        ended_at=end,
        target_number="+14155550111",
        target_answered_at=T0 + timedelta(seconds=30),
    )
    assert (caller.leg, caller.number, caller.direction) == (
        "caller",
        "+18005550100",
        LegDirection.INBOUND,
    )
    assert (target.leg, target.number, target.direction) == (
        "target",
        "+14155550111",
        LegDirection.OUTBOUND,
    )
    assert leg_seconds(target.answered_at, target.ended_at) == 60
    toll_free = Rate(uuid.uuid4(), "+1800", 12, "USD", direction=LegDirection.INBOUND)
    outbound_only = Rate(uuid.uuid4(), "+1", 60, "USD")
    assert rate_leg([outbound_only, toll_free], caller).rate == toll_free
    assert rate_leg([outbound_only, toll_free], target).rate == outbound_only
    # no answer, or not ended: nothing to charge; no answered transfer: the caller only
    assert inbound_legs(dialed_number="+18005550100", connected_at=None, ended_at=end) == []
    assert inbound_legs(dialed_number="+18005550100", connected_at=T0, ended_at=None) == []
    (only,) = inbound_legs(dialed_number="5551000", connected_at=T0, ended_at=end)
    line = rate_leg([toll_free], only)
    assert (line.amount_minor, line.currency) == (0, NO_CURRENCY)
    assert "'5551000' is not a phone number" in (line.unrated_reason or "")

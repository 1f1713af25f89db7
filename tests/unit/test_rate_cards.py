"""Rate cards as CSV: parsed with defaults, bad cells named by file:line: column, dumped
in the format that parses back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.domain.rating import LegDirection, PulseRule
from engine.errors import ConfigError
from engine.rate_cards import dump_rates, parse_rates

GOOD = (
    "prefix,rate_per_minute_minor,currency,pulse,connection_fee_minor,minimum_charge_minor,"
    "direction,provider,priority,effective_from,effective_to,name\n"
    "+44,1.25,GBP,30/6,2,3,outbound,,10,2026-01-01T00:00:00Z,,UK\n"
    "\n"
    "+4420,0.85,GBP,,,,,trunk-a,,,2027-01-01T00:00:00+00:00,London\n"
)


def test_parse_with_defaults() -> None:
    uk, london = parse_rates(GOOD)
    assert uk.line == 2
    assert london.line == 4
    r = uk.rate
    assert (r.destination_prefix, r.rate_per_minute_minor, r.rate_scale, r.currency) == (
        "+44",
        125,
        2,
        "GBP",
    )
    assert r.pulse == PulseRule(30, 6)
    assert (r.connection_fee_minor, r.minimum_charge_minor, r.priority) == (2, 3, 10)
    assert r.effective_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert r.effective_to is None
    assert uk.provider is None
    r = london.rate
    assert (r.rate_per_minute_minor, r.rate_scale, r.pulse) == (85, 2, PulseRule(60, 60))
    assert r.direction is LegDirection.OUTBOUND
    assert r.priority == 100
    assert r.effective_from is None
    assert london.provider == "trunk-a"


def test_only_the_required_columns() -> None:
    (row,) = parse_rates("currency,prefix,rate_per_minute_minor\nINR,+91,50\n")
    assert (row.rate.destination_prefix, row.rate.rate_per_minute_minor, row.rate.rate_scale) == (
        "+91",
        50,
        0,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "rates.csv: empty file"),
        (
            "prefix,rate_per_minute_minor\n",
            "rates.csv:1: the header lacks the required column 'currency'",
        ),
        ("prefix,rate,currency\n", "rates.csv:1: unknown column 'rate'"),
        ("prefix,rate_per_minute_minor,currency\n", "rates.csv: no rate cards"),
        (
            "prefix,rate_per_minute_minor,currency\n44,1,USD\n",
            "rates.csv:2: prefix: '44': must be +",
        ),
        (
            "prefix,rate_per_minute_minor,currency\n+44,,USD\n",
            "rates.csv:2: rate_per_minute_minor: required",
        ),
        (
            "prefix,rate_per_minute_minor,currency\n+44,-1,USD\n",
            "rates.csv:2: rate_per_minute_minor: '-1' must be",
        ),
        ("prefix,rate_per_minute_minor,currency\n+44,0.0000001,USD\n", "more than 6 decimals"),
        (
            "prefix,rate_per_minute_minor,currency\n+44,1,usd\n",
            "rates.csv:2: currency: 'usd' is not",
        ),
        ("prefix,rate_per_minute_minor,currency,pulse\n+44,1,USD,30/0\n", "rates.csv:2: pulse:"),
        (
            "prefix,rate_per_minute_minor,currency\n+44,1,USD\n+1,1\n",
            "rates.csv:3: 2 cells, the header has 3",
        ),
        (
            "prefix,rate_per_minute_minor,currency,effective_from\n+44,1,USD,2026-01-01\n",
            "rates.csv:2: effective_from: '2026-01-01' has no zone",
        ),
        (
            "prefix,rate_per_minute_minor,currency,effective_from,effective_to\n"
            "+44,1,USD,2026-02-01T00:00Z,2026-01-01T00:00Z\n",
            "rates.csv:2: effective_to: must be later than effective_from",
        ),
        (
            "prefix,rate_per_minute_minor,currency,direction\n+44,1,USD,sideways\n",
            "rates.csv:2: direction:",
        ),
        (
            "prefix,rate_per_minute_minor,currency,connection_fee_minor\n+44,1,USD,0.5\n",
            "connection_fee_minor",
        ),
    ],
)
def test_bad_documents_name_line_and_column(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_rates(text)
    assert message in str(err.value)


def test_dump_parses_back() -> None:
    rows = parse_rates(GOOD)
    rates = [r.rate for r in rows]
    again = parse_rates(dump_rates(rates, {}))
    for before, after in zip(rates, (r.rate for r in again), strict=True):
        assert (before.destination_prefix, before.rate_per_minute_minor, before.rate_scale) == (
            after.destination_prefix,
            after.rate_per_minute_minor,
            after.rate_scale,
        )
        assert (before.pulse, before.effective_from, before.effective_to, before.name) == (
            after.pulse,
            after.effective_from,
            after.effective_to,
            after.name,
        )


def test_a_stored_card_is_changed_by_its_columns_and_bad_cells_name_them() -> None:
    import dataclasses

    from engine.errors import InvalidInput
    from engine.rate_cards import changed_rate

    (uk, _) = parse_rates(GOOD)
    card = uk.rate
    changed = changed_rate(
        card,
        {
            "rate_per_minute_minor": "0.85",
            "pulse": "1/1",
            "connection_fee_minor": "",
            "name": "UK fixed",
            "effective_to": "2027-01-01T00:00:00Z",
        },
    )
    assert (changed.rate_per_minute_minor, changed.rate_scale) == (85, 2)
    assert changed.pulse == PulseRule(1, 1)
    assert changed.connection_fee_minor == 0  # empty: the column's default
    assert changed.name == "UK fixed"
    assert changed.effective_to == datetime(2027, 1, 1, tzinfo=UTC)
    assert (
        dataclasses.replace(
            changed,
            rate_per_minute_minor=card.rate_per_minute_minor,
            rate_scale=card.rate_scale,
            pulse=card.pulse,
            connection_fee_minor=card.connection_fee_minor,
            name=card.name,
            effective_to=None,
        )
        == card
    )  # nothing else moved
    for changes, field in (
        ({"prefix": "+33"}, "prefix"),
        ({"direction": "inbound"}, "direction"),
        ({"colour": "red"}, "colour"),
        ({"currency": "gbp"}, "currency"),
        ({"currency": ""}, "currency"),
        ({"pulse": "30/0"}, "pulse"),
        ({"rate_per_minute_minor": "0.0000001"}, "rate_per_minute_minor"),
        ({"effective_from": ""}, "effective_from"),
        ({"effective_to": "2025-01-01T00:00:00Z"}, "effective_to"),
        ({"effective_to": "2027-01-01"}, "effective_to"),  # no zone
    ):
        with pytest.raises(InvalidInput) as caught:
            changed_rate(card, changes)
        assert caught.value.field == field, changes

from __future__ import annotations

import pytest

from engine.domain.phone import e164_or_none, to_e164
from engine.errors import InvalidInput


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155550100", "+14155550100"),
        ("+1 (415) 555-0100", "+14155550100"),
        (" +44 20 7946 0958 ", "+442079460958"),
        ("+91 98765 43210", "+919876543210"),
    ],
)
def test_valid_numbers_become_e164(raw: str, expected: str) -> None:
    assert to_e164(raw, field="customer_number") == expected


def test_national_number_needs_a_region() -> None:
    with pytest.raises(InvalidInput) as info:
        to_e164("020 7946 0958", field="customer_number")
    assert info.value.field == "customer_number"
    assert to_e164("020 7946 0958", field="x", default_region="GB") == "+442079460958"


@pytest.mark.parametrize(
    "raw", ["", "   ", "hello", "+1415", "+999123456789", "+1 415 555 0100 999 999"]
)
def test_rejected_numbers_name_the_field(raw: str) -> None:
    with pytest.raises(InvalidInput) as info:
        to_e164(raw, field="agent_number")
    assert str(info.value).startswith("agent_number: ")


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("+14155550100", "+14155550100"),
        (" +44 20 7946 0958 ", "+442079460958"),
        ("anonymous", None),
        ("1001", None),
        ("020 7946 0958", None),  # national: no country to read it in
        ("+999", None),  # a + and still not a number
    ],
)
def test_a_caller_id_is_kept_as_e164_only_when_it_is_a_valid_international_number(
    caller: str, expected: str | None
) -> None:
    assert e164_or_none(caller) == expected

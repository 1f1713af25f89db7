"""A sip_trunk provider's config: validation by field and the prefix rules
(engine.domain.sip_trunk)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.sip_trunk import SipTrunkConfig, parse_sip_trunk_config
from engine.errors import InvalidInput


def test_the_smallest_config_names_the_endpoint_and_dials_the_number_as_it_is() -> None:
    config = parse_sip_trunk_config({"endpoint": "trunk-a"})
    assert config == SipTrunkConfig("trunk-a")
    assert config.dial_string("+14155550100") == "PJSIP/+14155550100@trunk-a"


@pytest.mark.parametrize(
    ("rules", "number", "dialled"),
    [
        ({"strip_digits": 3, "add_prefix": "0"}, "+919812345678", "09812345678"),
        ({"strip_digits": 1}, "+14155550100", "14155550100"),
        ({"add_prefix": "00", "strip_digits": 1}, "+442071234567", "00442071234567"),
        ({"add_prefix": "1010#"}, "+14155550100", "1010#+14155550100"),
        ({"match_prefixes": ["+91", "+1"]}, "+14155550100", "+14155550100"),
    ],
)
def test_prefix_rules_rewrite_the_number_for_the_carrier(
    rules: dict[str, Any], number: str, dialled: str
) -> None:
    config = parse_sip_trunk_config({"endpoint": "trunk", **rules})
    assert config.carries(number)
    assert config.dialled_number(number) == dialled
    assert config.dial_string(number) == f"PJSIP/{dialled}@trunk"


def test_a_trunk_does_not_carry_numbers_its_prefixes_do_not_match() -> None:
    config = parse_sip_trunk_config({"endpoint": "in", "match_prefixes": ["+91"]})
    assert config.carries("+919812345678")
    assert not config.carries("+14155550100")
    with pytest.raises(ValueError, match=r"trunk in does not carry \+14155550100"):
        config.dial_string("+14155550100")


def test_a_number_shorter_than_what_is_stripped_is_not_carried() -> None:
    config = parse_sip_trunk_config({"endpoint": "t", "strip_digits": 5})
    assert not config.carries("+1234")
    assert config.carries("+12345")


@given(
    number=st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    strip=st.integers(0, 4),
    prefix=st.from_regex(r"[0-9]{0,4}", fullmatch=True),
)
def test_the_dialled_number_is_the_prefix_then_the_number_less_what_is_stripped(
    number: str, strip: int, prefix: str
) -> None:
    config = parse_sip_trunk_config({"endpoint": "t", "strip_digits": strip, "add_prefix": prefix})
    dialled = config.dialled_number(number)
    assert dialled.startswith(prefix)
    assert dialled[len(prefix) :] == number[strip:]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "config.endpoint"),
        ({"endpoint": ""}, "config.endpoint"),
        ({"endpoint": "PJSIP/{number}@trunk"}, "config.endpoint"),
        ({"endpoint": 7}, "config.endpoint"),
        ({"endpoint": "t", "strip_digits": -1}, "config.strip_digits"),
        ({"endpoint": "t", "strip_digits": 16}, "config.strip_digits"),
        ({"endpoint": "t", "strip_digits": True}, "config.strip_digits"),
        ({"endpoint": "t", "strip_digits": "3"}, "config.strip_digits"),
        ({"endpoint": "t", "add_prefix": "0a"}, "config.add_prefix"),
        ({"endpoint": "t", "add_prefix": 0}, "config.add_prefix"),
        ({"endpoint": "t", "match_prefixes": "+91"}, "config.match_prefixes"),
        ({"endpoint": "t", "match_prefixes": ["+91", ""]}, "config.match_prefixes"),
        ({"endpoint": "t", "match_prefixes": [91]}, "config.match_prefixes"),
        ({"endpoint": "t", "caller_id": "Sales"}, "config.caller_id"),
        ({"endpoint": "t", "caller_id": 14155550100}, "config.caller_id"),
        ({"endpoint": "t", "strip": 1}, "config.strip"),  # a misspelt key
    ],
)
def test_a_bad_config_is_refused_naming_its_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_sip_trunk_config(config)
    assert caught.value.field == field


def test_a_full_config_is_read_whole() -> None:
    config = parse_sip_trunk_config(
        {
            "endpoint": "carrier.in_1",
            "strip_digits": 3,
            "add_prefix": "0",
            "match_prefixes": ["+91"],
            "caller_id": "+919800000000",
        }
    )
    assert config == SipTrunkConfig("carrier.in_1", 3, "0", ("+91",), "+919800000000")

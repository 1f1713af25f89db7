"""Caller-ID choice (engine.domain.caller_id): profile selection, local presence,
round-robin fairness, daily caps."""

from __future__ import annotations

import uuid
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from engine.domain.caller_id import (
    Profile,
    Rotation,
    area_key,
    choose,
    local_candidates,
    select_profile,
)

SF_CALLEE = "+14155550100"
POOL = ("+12125550111", "+14155550122", "+14155550133", "+442079460044")


def test_profile_selection_priority_prefix_provider_default() -> None:
    trunk = uuid.uuid4()
    default = Profile("default", "+12125550199", is_default=True, priority=500)
    us = Profile("us", "+12125550198", match_prefix="+1", priority=100)
    sf = Profile("sf", "+14155550197", match_prefix="+1415", priority=100)
    other_trunk = Profile("trunk-only", "+14155550196", provider_id=trunk, priority=1)
    off = Profile("off", "+14155550195", priority=0, is_active=False)
    profiles = [default, us, sf, other_trunk, off]
    chosen = select_profile(profiles, SF_CALLEE)
    assert chosen is not None
    assert chosen.name == "sf"  # same priority: the longer prefix
    chosen = select_profile(profiles, SF_CALLEE, trunk)
    assert chosen is not None
    assert chosen.name == "trunk-only"
    chosen = select_profile(profiles, "+442079460000")
    assert chosen is not None
    assert chosen.name == "default"
    assert select_profile([us], "+442079460000") is None


def test_local_presence_prefers_the_area_code_then_the_country() -> None:
    profile = Profile("lp", "+12125550199", Rotation.LOCAL_PRESENCE, POOL)
    picks = {choose(profile, SF_CALLEE, cursor=c).number for c in range(4)}
    assert picks == {"+14155550122", "+14155550133"}
    nyc = choose(profile, "+12125550100")
    assert nyc.number == "+12125550111"
    assert "212" in nyc.reason
    # Los Angeles (213): no pool number there, so one in the US
    la = choose(profile, "+12135550100")
    assert area_key(la.number) is not None
    assert la.number.startswith("+1")
    assert "country US" in la.reason
    india = choose(profile, "+919876543210")
    assert india.number == "+12125550199"  # none in India: the profile's own
    assert "India" in india.reason or "IN" in india.reason


def test_local_candidates_reason() -> None:
    found, why = local_candidates(POOL, "+442071234567")
    assert found == ("+442079460044",)
    assert "20" in why


def test_fixed_presents_the_profiles_number() -> None:
    profile = Profile("f", "+12125550199", Rotation.FIXED, POOL)
    assert choose(profile, SF_CALLEE, cursor=7).number == "+12125550199"


def test_daily_cap_skips_numbers_and_falls_back_to_the_profiles_number() -> None:
    profile = Profile("rr", "+12125550199", Rotation.ROUND_ROBIN, POOL[:2], daily_cap=2)
    assert choose(profile, SF_CALLEE, cursor=0, used_today={POOL[0]: 2}).number == POOL[1]
    full = {POOL[0]: 2, POOL[1]: 5}
    chosen = choose(profile, SF_CALLEE, cursor=0, used_today=full)
    assert chosen.number == "+12125550199"
    assert "daily cap of 2" in chosen.reason


@given(
    size=st.integers(min_value=1, max_value=8),
    rounds=st.integers(min_value=1, max_value=20),
    start=st.integers(min_value=0, max_value=10_000),
)
def test_property_round_robin_is_fair(size: int, rounds: int, start: int) -> None:
    pool = tuple(f"+1212555{i:04d}" for i in range(size))
    profile = Profile("rr", "+12125550199", Rotation.ROUND_ROBIN, pool)
    seen = Counter(
        choose(profile, SF_CALLEE, cursor=c).number for c in range(start, start + size * rounds)
    )
    assert set(seen) == set(pool)
    assert set(seen.values()) == {rounds}


@given(
    size=st.integers(min_value=1, max_value=6),
    cap=st.integers(min_value=1, max_value=5),
    legs=st.integers(min_value=0, max_value=60),
)
def test_property_no_pool_number_exceeds_its_daily_cap(size: int, cap: int, legs: int) -> None:
    pool = tuple(f"+1212555{i:04d}" for i in range(size))
    profile = Profile("rr", "+12125550199", Rotation.ROUND_ROBIN, pool, daily_cap=cap)
    used: Counter[str] = Counter()
    for cursor in range(legs):
        used[choose(profile, SF_CALLEE, cursor=cursor, used_today=used).number] += 1
    assert all(used[n] <= cap for n in pool)
    # only when the whole pool is used up does the profile's own number appear
    fallback = used["+12125550199"]
    assert fallback == max(0, legs - size * cap)

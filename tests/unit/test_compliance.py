"""The pre-dial compliance decision (engine.domain.compliance): lists with prefixes and
expiry, rules by priority, calling hours in the callee's zone across DST, attempts, and
recording consent."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.compliance import (
    ListEntry,
    ListType,
    Rule,
    RuleAction,
    RuleType,
    evaluate,
    local_day_start,
    matching_entries,
    number_prefixes,
    number_zones,
    recording_consent,
    within_hours,
)

SF = "+14155550100"  # America/Los_Angeles
NYC = "+12125550100"  # America/New_York
NOW = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)  # 10:00 in San Francisco, 13:00 in New York


def hours(start: str, end: str, **kw: object) -> Rule:
    return Rule(
        "hours",
        RuleType.CALLING_HOURS,
        allowed_start=time.fromisoformat(start),
        allowed_end=time.fromisoformat(end),
        **kw,  # type: ignore[arg-type]
    )


# -- lists -------------------------------------------------------------------------------------


def test_a_blocklisted_number_is_refused_naming_the_list() -> None:
    entry = ListEntry(ListType.BLOCKLIST, SF, reason="asked us to stop")
    verdict = evaluate(SF, NOW, entries=[entry])
    assert verdict.refusal is not None
    assert verdict.refusal.rule == "blocklist"
    assert SF in verdict.refusal.reason
    assert "asked us to stop" in verdict.refusal.reason


def test_a_prefix_entry_covers_every_number_under_it() -> None:
    entry = ListEntry(ListType.BLOCKLIST, "+1415", is_prefix=True)
    assert not evaluate(SF, NOW, entries=[entry]).allowed
    assert evaluate(NYC, NOW, entries=[entry]).allowed


def test_an_expired_entry_is_ignored() -> None:
    entry = ListEntry(ListType.BLOCKLIST, SF, expires_at=NOW - timedelta(seconds=1))
    assert evaluate(SF, NOW, entries=[entry]).allowed
    entry = ListEntry(ListType.BLOCKLIST, SF, expires_at=NOW + timedelta(seconds=1))
    assert not evaluate(SF, NOW, entries=[entry]).allowed


def test_the_allowlist_beats_the_blocklist_and_dnc() -> None:
    entries = [
        ListEntry(ListType.BLOCKLIST, "+1", is_prefix=True),
        ListEntry(ListType.DNC, SF),
        ListEntry(ListType.ALLOWLIST, SF),
    ]
    dnc = Rule("dnc", RuleType.DNC_CHECK)
    assert evaluate(SF, NOW, entries=entries, rules=[dnc]).allowed
    assert not evaluate(NYC, NOW, entries=entries, rules=[dnc]).allowed


def test_dnc_refuses_only_through_a_dnc_rule_and_its_lists() -> None:
    entries = [ListEntry(ListType.DNC, SF), ListEntry(ListType.VIP, NYC)]
    assert evaluate(SF, NOW, entries=entries).allowed  # no rule: a list is only data
    verdict = evaluate(SF, NOW, entries=entries, rules=[Rule("dnc", RuleType.DNC_CHECK)])
    assert verdict.refusal is not None
    assert verdict.refusal.rule_type == "dnc_check"
    vip_rule = Rule("no-vips", RuleType.DNC_CHECK, params={"lists": ["vip"]})
    assert not evaluate(NYC, NOW, entries=entries, rules=[vip_rule]).allowed
    assert evaluate(SF, NOW, entries=entries, rules=[vip_rule]).allowed


digits = st.text(alphabet="0123456789", min_size=7, max_size=13)


@given(body=digits, cut=st.integers(min_value=2, max_value=14), other=digits)
def test_property_a_prefix_matches_exactly_the_numbers_starting_with_it(
    body: str, cut: int, other: str
) -> None:
    number = "+1" + body
    prefix = number[: min(cut, len(number))]
    entry = ListEntry(ListType.BLOCKLIST, prefix, is_prefix=True)
    assert entry.matches(number, NOW)
    assert prefix in number_prefixes(number)
    candidate = "+1" + other
    assert entry.matches(candidate, NOW) == candidate.startswith(prefix)
    exact = ListEntry(ListType.BLOCKLIST, number)
    assert exact.matches(candidate, NOW) == (candidate == number)


@given(body=digits, cuts=st.lists(st.integers(min_value=2, max_value=15), min_size=1))
def test_property_the_most_specific_entry_comes_first(body: str, cuts: list[int]) -> None:
    number = "+4" + body
    entries = [ListEntry(ListType.DNC, number[:c], is_prefix=True) for c in cuts]
    found = matching_entries(entries, number, NOW)
    assert len(found) == len(entries)
    assert [len(e.number) for e in found] == sorted((len(e.number) for e in found), reverse=True)


# -- rules -------------------------------------------------------------------------------------


def test_the_first_refusing_rule_by_priority_decides_and_warnings_are_kept() -> None:
    rules = [
        Rule("late", RuleType.COUNTRY_BLOCK, priority=50, country_code="US"),
        Rule(
            "early-warn",
            RuleType.COUNTRY_BLOCK,
            priority=10,
            country_code="US",
            action=RuleAction.WARN,
        ),
        Rule("other-country", RuleType.COUNTRY_BLOCK, priority=1, country_code="IN"),
    ]
    verdict = evaluate(SF, NOW, rules=rules)
    assert verdict.refusal is not None
    assert verdict.refusal.rule == "late"
    assert [w.rule for w in verdict.warnings] == ["early-warn"]
    assert evaluate("+919876543210", NOW, rules=rules[:2]).allowed


def test_max_attempts_counts_today() -> None:
    rule = Rule("three", RuleType.MAX_ATTEMPTS, max_attempts_per_day=3)
    assert evaluate(SF, NOW, rules=[rule], attempts_today=2).allowed
    verdict = evaluate(SF, NOW, rules=[rule], attempts_today=3)
    assert verdict.refusal is not None
    assert "at most 3" in verdict.refusal.reason


def test_calling_hours_are_the_callees_local_time() -> None:
    nine_to_noon = hours("09:00", "12:00")
    assert evaluate(SF, NOW, rules=[nine_to_noon]).allowed  # 10:00 in San Francisco
    verdict = evaluate(NYC, NOW, rules=[nine_to_noon])  # 13:00 in New York
    assert verdict.refusal is not None
    assert "America/New_York" in verdict.refusal.reason
    # the rule's own zone, when it names one
    assert not evaluate(SF, NOW, rules=[hours("09:00", "12:00", timezone="Asia/Kolkata")]).allowed


def test_a_number_in_several_zones_must_be_inside_the_window_in_all() -> None:
    toll_free = "+18005550100"
    assert len(number_zones(toll_free)) > 3
    assert not evaluate(toll_free, NOW, rules=[hours("09:00", "12:00")]).allowed
    assert evaluate(toll_free, NOW, rules=[hours("00:00", "23:59")]).allowed


def test_a_window_past_midnight_belongs_to_the_day_it_starts() -> None:
    # Friday 22:00 to Saturday 02:00, Fridays only
    friday_night = (time(22), time(2), (5,))
    saturday_1am = datetime(2026, 12, 5, 1, 0)
    assert saturday_1am.isoweekday() == 6
    assert within_hours(saturday_1am, *friday_night)
    assert not within_hours(saturday_1am + timedelta(days=1), *friday_night)  # Sunday 01:00
    assert not within_hours(datetime(2026, 12, 4, 21, 59), *friday_night)


def test_calling_hours_follow_dst() -> None:
    rule = hours("09:00", "17:00")
    # 16:30 UTC is 09:30 PDT in summer, 08:30 PST in winter
    summer = datetime(2026, 7, 1, 16, 30, tzinfo=UTC)
    winter = datetime(2026, 12, 1, 16, 30, tzinfo=UTC)
    assert evaluate(SF, summer, rules=[rule]).allowed
    assert not evaluate(SF, winter, rules=[rule]).allowed


instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)
zones = st.sampled_from(
    [
        "America/Los_Angeles",
        "Europe/London",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "America/Santiago",
        "Pacific/Chatham",
    ]
)
clock = st.times()


@given(now=instants, zone=zones, start=clock, end=clock)
def test_property_calling_hours_are_the_wall_clock_in_the_rules_zone(
    now: datetime, zone: str, start: time, end: time
) -> None:
    if start == end:
        return
    local = now.astimezone(ZoneInfo(zone))
    wall = local.time().replace(tzinfo=None)
    inside = start <= wall < end if start < end else (wall >= start or wall < end)
    rule = Rule("h", RuleType.CALLING_HOURS, timezone=zone, allowed_start=start, allowed_end=end)
    assert evaluate(SF, now, rules=[rule]).allowed == inside


@given(now=instants, zone=zones)
def test_property_the_local_day_starts_at_most_a_day_before_now(now: datetime, zone: str) -> None:
    start = local_day_start(now, ZoneInfo(zone))
    assert start <= now
    assert now - start < timedelta(hours=26)  # a day is 23-25 h around DST changes
    assert start.astimezone(ZoneInfo(zone)).date() <= now.astimezone(ZoneInfo(zone)).date()


# -- consent -----------------------------------------------------------------------------------


def test_consent_announcement_and_refusal() -> None:
    assert recording_consent(SF, [], {}).announcement is None
    plain = Rule("consent", RuleType.CONSENT_REQUIRED)
    assert recording_consent(SF, [plain], {}).announcement == "sound:conf-now-recording"
    keyed = Rule(
        "consent",
        RuleType.CONSENT_REQUIRED,
        params={"metadata_key": "recording_ok", "announcement": "sound:beep"},
    )
    refused = recording_consent(SF, [keyed], {})
    assert refused.refused is not None
    assert refused.announcement is None
    assert "recording_ok" in refused.refused.reason
    given_ = recording_consent(SF, [keyed], {"recording_ok": True})
    assert given_.announcement == "sound:beep"
    assert given_.refused is None
    elsewhere = Rule("consent-in", RuleType.CONSENT_REQUIRED, country_code="IN")
    assert recording_consent(SF, [elsewhere], {}).announcement is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (True, True),
        ("yes", True),
        ("true", True),
        (1, True),
        (False, False),
        ("no", False),
        (0, False),
        (None, False),
    ],
)
def test_consent_values(value: object, ok: bool) -> None:
    rule = Rule("c", RuleType.CONSENT_REQUIRED, params={"metadata_key": "k"})
    assert (recording_consent(SF, [rule], {"k": value}).refused is None) == ok


# -- consent in the click-to-call steps --------------------------------------------------------


def test_a_consent_announcement_plays_before_the_recording_starts() -> None:
    from engine.domain.call import CallStatus
    from engine.domain.click_to_call import (
        Answered,
        ConsentPlayed,
        Leg,
        Note,
        PlayConsent,
        StartRecording,
        decide,
    )

    answered = decide(
        CallStatus.DIALING_CUSTOMER, Answered(Leg.CUSTOMER), record=True, announce="sound:x"
    )
    assert PlayConsent("sound:x") in answered.steps
    assert not any(isinstance(s, StartRecording) for s in answered.steps)
    played = decide(CallStatus.CONNECTED, ConsentPlayed("sound:x"), record=True)
    assert [type(s) for s in played.steps] == [Note, StartRecording]
    # the call ended during the announcement, or a recording already runs: nothing
    assert decide(CallStatus.COMPLETED, ConsentPlayed(), record=True).steps == ()
    running = decide(CallStatus.CONNECTED, ConsentPlayed(), record=True, recording_open=True)
    assert running.steps == ()
    # consent required and absent: bridged, never recorded
    refused = decide(
        CallStatus.DIALING_CUSTOMER,
        Answered(Leg.CUSTOMER),
        record=True,
        recording_refused={"rule": "consent", "reason": "no consent"},
    )
    kinds = [type(s).__name__ for s in refused.steps]
    assert kinds == ["BridgeLegs", "SetStatus", "Note"]
    # without a consent rule the recording starts at once, as before
    plain = decide(CallStatus.DIALING_CUSTOMER, Answered(Leg.CUSTOMER), record=True)
    assert isinstance(plain.steps[-1], StartRecording)


@pytest.mark.parametrize(
    ("media", "ok"),
    [
        ("sound:conf-now-recording", True),
        ("sound:en/custom_consent", True),
        ("sound:/var/spool/asterisk/recording/other-tenant", False),
        ("recording:c2c-other-tenant", False),
        ("sound:../../etc/passwd", False),
    ],
)
def test_a_consent_announcement_is_a_sound_name_never_a_path_or_a_recording(
    media: str, ok: bool
) -> None:
    from engine.app.compliance import rule_of
    from engine.errors import InvalidInput

    fields = {"rule_type": "consent_required", "name": "c", "params": {"announcement": media}}
    if ok:
        assert rule_of(fields).params["announcement"] == media
    else:
        with pytest.raises(InvalidInput, match=r"params\.announcement"):
            rule_of(fields)


def test_a_consent_announcement_that_could_not_play_leaves_the_call_unrecorded() -> None:
    from engine.domain.call import CallStatus
    from engine.domain.click_to_call import ConsentPlayed, Note, StartRecording, decide
    from engine.domain.event_types import CallEventType

    failed = decide(CallStatus.CONNECTED, ConsentPlayed("sound:x", failed=True), record=True)
    assert not any(isinstance(s, StartRecording) for s in failed.steps)
    assert [s.event_type for s in failed.steps if isinstance(s, Note)] == [
        CallEventType.RECORDING_REFUSED
    ]

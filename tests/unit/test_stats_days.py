"""Which whole days of a stats period the daily rollup answers (engine/store/stats.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from engine.store.records import StatsPeriod
from engine.store.stats import rollup_days

NY = ZoneInfo("America/New_York")


def test_whole_local_days_only() -> None:
    start = datetime(2026, 3, 1, tzinfo=NY)
    # midnight to midnight: every day; one minute later: the first day is ragged
    assert rollup_days(
        StatsPeriod(start, start + timedelta(days=3), timezone="America/New_York")
    ) == (
        date(2026, 3, 1),
        date(2026, 3, 3),
    )
    late = start + timedelta(minutes=1)
    assert rollup_days(
        StatsPeriod(late, start + timedelta(days=3, hours=5), timezone="America/New_York")
    ) == (date(2026, 3, 2), date(2026, 3, 3))
    # across the spring-forward night (2026-03-08, a 23-hour day) midnights stay midnights
    spring = StatsPeriod(
        datetime(2026, 3, 8, tzinfo=NY),
        datetime(2026, 3, 9, tzinfo=NY),
        timezone="America/New_York",
    )
    assert rollup_days(spring) == (date(2026, 3, 8), date(2026, 3, 8))
    # the same instants in UTC are not UTC midnights: no whole day
    assert rollup_days(StatsPeriod(spring.created_after, spring.created_before)) is None


def test_open_ends_and_what_the_rollup_does_not_serve() -> None:
    assert rollup_days(StatsPeriod()) == (None, None)
    day = datetime(2026, 3, 1, tzinfo=UTC)
    assert rollup_days(StatsPeriod(day)) == (date(2026, 3, 1), None)
    assert rollup_days(StatsPeriod(None, day + timedelta(hours=1))) == (None, date(2026, 2, 28))
    assert rollup_days(StatsPeriod(day, day + timedelta(hours=23))) is None
    assert rollup_days(StatsPeriod(day, day + timedelta(days=2), bucket="hour")) is None
    assert rollup_days(StatsPeriod(day, day + timedelta(days=2), agent_id="alice")) is None

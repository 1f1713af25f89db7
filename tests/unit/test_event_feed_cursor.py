"""The event feed's cursor: every committed id published once, late commits included."""

from __future__ import annotations

from engine.store.event_feed import FeedCursor


def test_ids_read_in_order_are_fresh_and_leave_no_gap() -> None:
    cursor = FeedCursor(10, gap_timeout=10)
    assert cursor.fresh([11, 12, 13], now=0) == [11, 12, 13]
    assert (cursor.after, cursor.gaps) == (13, {})


def test_an_id_skipped_over_is_waited_for_and_fresh_when_it_commits_late() -> None:
    cursor = FeedCursor(10, gap_timeout=10)
    assert cursor.fresh([11, 13], now=0) == [11, 13]
    assert set(cursor.gaps) == {12}
    assert cursor.fresh([12, 14], now=1) == [12, 14]
    assert (cursor.after, cursor.gaps) == (14, {})


def test_an_id_read_again_is_not_fresh_again() -> None:
    cursor = FeedCursor(10, gap_timeout=10)
    cursor.fresh([11, 12], now=0)
    assert cursor.fresh([11, 12], now=1) == []


def test_a_gap_that_stays_empty_past_the_timeout_is_given_up() -> None:
    cursor = FeedCursor(0, gap_timeout=10)
    cursor.fresh([3], now=0)
    assert set(cursor.gaps) == {1, 2}
    cursor.fresh([], now=10)
    assert set(cursor.gaps) == {1, 2}
    cursor.fresh([], now=10.5)
    assert cursor.gaps == {}
    assert cursor.fresh([1], now=11) == []  # too late: given up, never published


def test_the_number_of_gaps_waited_for_is_bounded_oldest_given_up_first() -> None:
    cursor = FeedCursor(0, gap_timeout=10)
    cursor.fresh([20_002], now=0)  # a sequence jump: 20,001 ids skipped at once
    assert len(cursor.gaps) == 10_000
    assert min(cursor.gaps) == 10_002


def test_a_far_sequence_jump_costs_no_more_than_the_bound() -> None:
    cursor = FeedCursor(0, gap_timeout=10)
    assert cursor.fresh([10**12], now=0) == [10**12]
    assert len(cursor.gaps) == 10_000

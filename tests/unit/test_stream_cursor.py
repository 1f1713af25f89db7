"""The SSE stream cursor: what a resume replays, so a late commit below a sent id is not
lost and nothing is sent twice (pure)."""

from __future__ import annotations

import pytest

from engine.domain.stream_cursor import MAX_RECENT, SETTLE, StreamCursor


def test_a_plain_event_id_is_a_cursor_with_nothing_recent() -> None:
    cursor = StreamCursor.parse("1209", 0.0)
    assert (cursor.floor, cursor.recent) == (1209, {})
    assert cursor.seen(1209)
    assert not cursor.seen(1210)


def test_ids_sent_recently_stay_listed_so_a_lower_late_commit_is_replayed() -> None:
    cursor = StreamCursor(100)
    assert cursor.sent(103, 0.0) == "100,3"
    assert cursor.sent(105, 1.0) == "100,3,5"
    resumed = StreamCursor.parse(cursor.token(), 2.0)
    # 101, 102 and 104 were not sent: a resume asks for them (id > floor but the recent)
    assert [i for i in range(100, 107) if not resumed.seen(i)] == [101, 102, 104, 106]


def test_ids_settle_into_the_floor_after_the_settle_time() -> None:
    cursor = StreamCursor(100)
    cursor.sent(103, 0.0)
    assert cursor.sent(110, SETTLE + 1) == "103,7"
    assert cursor.sent(104, SETTLE + 2) == "103,1,7"  # a late commit, sent live


def test_the_list_is_bounded_the_oldest_settle_early() -> None:
    cursor = StreamCursor(0)
    for i in range(1, MAX_RECENT + 11):
        token = cursor.sent(i, 0.0)
    assert len(cursor.recent) == MAX_RECENT
    assert cursor.floor == 10
    assert StreamCursor.parse(token, 0.0).recent == cursor.recent


@pytest.mark.parametrize("raw", ["", "x", "-1", "1,0", "1,,2", "1,a", "1" * 19, "1," * 70 + "1"])
def test_a_malformed_token_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        StreamCursor.parse(raw, 0.0)

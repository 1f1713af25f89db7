"""The retention policy's cut-offs (engine/domain/retention.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.domain.retention import RetentionPolicy
from engine.errors import InvalidInput

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_each_kind_is_cut_off_its_own_number_of_days_before_now() -> None:
    cutoffs = RetentionPolicy(365, 30, 90).cutoffs(NOW)
    assert cutoffs.call_events == datetime(2025, 11, 30, 12, 0, tzinfo=UTC)
    assert cutoffs.delivered_callbacks == datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    assert cutoffs.recordings == datetime(2026, 9, 1, 12, 0, tzinfo=UTC)


def test_a_kind_without_days_is_kept_forever() -> None:
    policy = RetentionPolicy(call_events_days=None, delivered_callbacks_days=30)
    cutoffs = policy.cutoffs(NOW)
    assert (cutoffs.call_events, cutoffs.recordings) == (None, None)
    assert not policy.keeps_everything
    assert RetentionPolicy().keeps_everything


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(InvalidInput, match="timezone-aware"):
        RetentionPolicy(30).cutoffs(datetime(2026, 11, 30, 12, 0))

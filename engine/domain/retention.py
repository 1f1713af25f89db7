"""How long call history, delivered callbacks and recordings are kept: the cut-offs.

The policy is a number of days per kind (``None`` keeps that kind forever), read from the
``retention:`` settings. A run of the prune takes one ``now`` and derives every cut-off
from it, so the dry run and the prune it announces agree, and a prune that takes an hour
does not chase a moving boundary.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from engine.errors import InvalidInput

__all__ = ["Cutoffs", "RetentionPolicy"]


@dataclasses.dataclass(frozen=True, slots=True)
class Cutoffs:
    """What is older than these instants goes; ``None``: that kind is kept forever."""

    call_events: datetime | None
    delivered_callbacks: datetime | None
    recordings: datetime | None
    # number-list entries that expired before this are deleted (every run: an expired entry
    # already counts for nothing); None: none are
    expired_entries: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days each kind is kept (``None``: forever)."""

    call_events_days: int | None = None
    delivered_callbacks_days: int | None = None
    recordings_days: int | None = None

    @property
    def keeps_everything(self) -> bool:
        kinds = (self.call_events_days, self.delivered_callbacks_days, self.recordings_days)
        return all(days is None for days in kinds)

    def cutoffs(self, now: datetime) -> Cutoffs:
        """The cut-offs of a run starting at ``now`` (an aware datetime)."""
        if now.tzinfo is None:
            raise InvalidInput("now", "retention cut-offs need a timezone-aware instant")
        return Cutoffs(
            call_events=_before(now, self.call_events_days),
            delivered_callbacks=_before(now, self.delivered_callbacks_days),
            recordings=_before(now, self.recordings_days),
            expired_entries=now,
        )


def _before(now: datetime, days: int | None) -> datetime | None:
    return None if days is None else now - timedelta(days=days)

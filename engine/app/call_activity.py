"""What the console plots: calls per minute, the answer rate and how long calls rang, over
the last minutes of a tenant's sessions.

The figures come from the session rows (their ``created_at``, ``connected_at``, ``ring_ms``
and status), so they lag live calls as the listing does (see
:mod:`engine.store.session_queries`). A call is *answered* once the customer answered
(``connected_at`` set); the answer rate is answered over *decided* (answered, or ended
without an answer), so calls still ringing count neither way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from engine.errors import InvalidInput
from engine.store.records import CallsInMinute, RingTimeCount, Tenant
from engine.store.repositories import Store

__all__ = [
    "MAX_WINDOW_MINUTES",
    "RING_TIME_BOUNDS_MS",
    "CallActivity",
    "CallActivityService",
    "every_minute",
]

# A day of minutes: a bar per minute stays readable, the query stays one index range.
MAX_WINDOW_MINUTES: Final = 1440
# Where the ring-time buckets start: a phone answered within 2 s, 5 s, ... or rang 45 s+.
RING_TIME_BOUNDS_MS: Final = (0, 2000, 5000, 10_000, 15_000, 20_000, 30_000, 45_000)


@dataclasses.dataclass(frozen=True, slots=True)
class CallActivity:
    since: datetime  # the first minute shown (UTC, on the minute)
    until: datetime  # the end of the last minute
    minutes: list[CallsInMinute]  # every minute of the window, oldest first
    placed: int
    answered: int
    decided: int  # answered, or ended without an answer
    answer_rate: float | None  # answered / decided; None before any call was decided
    ring_times: list[RingTimeCount]


def every_minute(
    counted: Sequence[CallsInMinute], since: datetime, until: datetime
) -> list[CallsInMinute]:
    """``counted`` (the minutes that had calls) with the minutes between them filled with
    zeros, from ``since`` up to ``until`` (both on the minute)."""
    by_minute = {row.minute: row for row in counted}
    out: list[CallsInMinute] = []
    minute = since
    while minute < until:
        out.append(by_minute.get(minute) or CallsInMinute(minute, 0, 0, 0))
        minute += timedelta(minutes=1)
    return out


class CallActivityService:
    def __init__(self, store: Store, clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._clock = clock or (lambda: datetime.now(UTC))

    async def last_minutes(self, tenant: Tenant, minutes: int) -> CallActivity:
        """The tenant's calls of the last ``minutes`` minutes, the current one included."""
        if not 1 <= minutes <= MAX_WINDOW_MINUTES:
            raise InvalidInput("minutes", f"must be 1-{MAX_WINDOW_MINUTES}")
        until = self._clock().astimezone(UTC).replace(second=0, microsecond=0)
        until += timedelta(minutes=1)
        since = until - timedelta(minutes=minutes)
        sessions = self._store.sessions
        counted = await sessions.calls_by_minute(tenant.id, since, until)
        ring_times = await sessions.ring_times(tenant.id, since, until, list(RING_TIME_BOUNDS_MS))
        answered = sum(row.answered for row in counted)
        decided = sum(row.decided for row in counted)
        return CallActivity(
            since=since,
            until=until,
            minutes=every_minute(counted, since, until),
            placed=sum(row.placed for row in counted),
            answered=answered,
            decided=decided,
            answer_rate=round(answered / decided, 4) if decided else None,
            ring_times=ring_times,
        )

"""The manager's statistics (``GET /api/v1/click-to-call/stats``, ``ctc stats``): what a
contact-centre manager asks of a period — how many calls, how they ended, the answer rate
(ASR) and average call duration (ACD), by agent, provider, direction and hour or day in
the tenant's time zone, what they cost and how they sounded (MOS).

The figures are computed in SQL (:mod:`engine.store.stats`: a daily rollup for whole
days, the sessions themselves for the rest); this use case checks the request and picks
the time zone: the request's, else the tenant's (``tenant.timezone``).
:class:`StatsCompactor` folds the rollup's new rows every ``stats.compact_interval``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from engine.errors import InvalidInput, describe
from engine.periodic import Periodic
from engine.store.records import StatsPeriod, StatsReport, Tenant
from engine.store.repositories import Store

__all__ = ["BUCKETS", "StatsCompactor", "StatsService", "check_timezone"]

log = structlog.get_logger(__name__)

BUCKETS: Final = ("hour", "day")


def check_timezone(name: str, *, field: str = "timezone") -> str:
    """``name`` if it is an IANA time zone this host knows; InvalidInput naming ``field``."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            field, f"{name!r} is not an IANA time zone such as Asia/Kolkata"
        ) from None
    return name


class StatsService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def report(
        self,
        tenant: Tenant,
        *,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        agent_id: str | None = None,
        timezone: str | None = None,
        bucket: str = "day",
    ) -> StatsReport:
        if bucket not in BUCKETS:
            raise InvalidInput("bucket", f"{bucket!r}: must be hour or day")
        if (
            created_after is not None
            and created_before is not None
            and (created_before <= created_after)
        ):
            raise InvalidInput("created_before", "must be later than created_after")
        zone = (
            check_timezone(timezone)
            if timezone is not None
            else await self._store.stats.tenant_timezone(tenant.id)
        )
        period = StatsPeriod(created_after, created_before, agent_id, zone, bucket)
        return await self._store.stats.report(tenant.id, period)


class StatsCompactor(Periodic):
    """Folds the stats rollup's appended rows every ``interval`` seconds, the first an
    interval after start (one run at a time; several engines on one database take turns:
    the fold holds an advisory lock). A failed run is logged and the next one catches up:
    the rollup stays exact, it only holds more rows meanwhile. Close cancels a fold in
    progress."""

    def __init__(self, store: Store, *, interval: float) -> None:
        super().__init__("stats_compactor", interval=interval)
        self._store = store
        self.runs = 0

    async def run_once(self) -> int | None:
        """One fold now; how many tenant-days it folded (None: it failed, logged)."""
        try:
            folded = await self._store.stats.compact()
        except Exception as exc:  # the database away, a bug: the next run catches up
            log.warning("stats.compact_failed", error=describe(exc))
            return None
        finally:
            self.runs += 1
        if folded:
            log.debug("stats.compacted", tenant_days=folded)
        return folded

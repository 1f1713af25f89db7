"""The manager's statistics over a tenant's sessions: counts by status, answer rate,
ring and talk times, by agent, provider, direction and time bucket, cost and MOS.

Two ways to the same answer, both in SQL:

- **raw**: one scan of the period's sessions with ``GROUPING SETS`` (every breakdown from
  the same rows, hashed), over the range of ``click_to_call_session_list_idx`` (tenant,
  created_at); the cost sums ``call_usage_billing`` and the MOS ``call_quality_metric`` of
  the sessions of that period. Its cost grows with the period: a year of a million
  sessions took seconds (``bench/stats.py``).
- **rollup**: ``call_stats_daily`` (sql/0023) holds the same sums per tenant and day (in the
  tenant's zone), kept exact by triggers in the transactions that change the facts. A
  period's whole days are read from it (a few hundred rows a day, whatever the calls);
  its ragged ends (a period that does not start or end at the zone's midnight) and the
  sessions still live in its days (the rollup counts ended sessions) are read raw.

The rollup serves day buckets in the tenant's own zone without an agent filter (one
agent's period is a small range of ``click_to_call_session_agent_idx``: raw is fast);
anything else is raw. Both ways return sums and counts, and the averages and rates are
computed here from them, once, so the two answers are equal to the unit (the integration
tests compare them on the same data).

Like :mod:`engine.store.session_queries`, these read PostgreSQL only: calls in progress
reach them once the journal has written them (within its interval).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

import asyncpg

from engine.domain.call import LIVE_STATUSES
from engine.store.database import Connection, Database
from engine.store.records import CostTotal, StatsGroup, StatsPeriod, StatsReport

__all__ = ["StatsQueries", "rollup_days", "statements"]

_LIVE: Final = [s.value for s in LIVE_STATUSES]


def _period(
    after: datetime | None, before: datetime | None, agent_id: str | None, *, live_only: bool
) -> tuple[str, list[Any]]:
    """The WHERE clause of a range's sessions (``$1`` the tenant, then only the bounds
    given: a ``$n IS NULL OR ...`` would keep a generic plan off the index) and its
    arguments after the tenant."""
    where = ["tenant_id = $1"]
    args: list[Any] = []
    for sql, value in (
        ("created_at >= {}", after),
        ("created_at < {}", before),
        ("agent_id = {}", agent_id),
        ("status = ANY({}::text[])", _LIVE if live_only else None),
    ):
        if value is not None:
            args.append(value)
            where.append(sql.format(f"${len(args) + 1}"))
    return " AND ".join(where), args


# GROUPING(...) bits, first argument highest: status 16, agent 8, provider 4, direction 2,
# bucket 1; a row's grouping value is 31 minus the bit of the set it belongs to.
# @zone@, @unit@, @live@: the parameters after the period's ({where}).
_GROUPS: Final = """
SELECT GROUPING(status, agent, provider_id, direction, bucket) AS g,
       status, agent, provider_id, direction, bucket,
       count(*) AS total,
       count(*) FILTER (WHERE status = ANY(@live@::text[])) AS live,
       count(connected_at) AS connected,
       count(connected_at) FILTER (WHERE NOT status = ANY(@live@::text[]))
         AS connected_finished,
       coalesce(sum(ring_ms), 0)::bigint AS ring_ms_sum, count(ring_ms) AS ring_ms_n,
       coalesce(sum(talk_ms), 0)::bigint AS talk_ms_sum, count(talk_ms) AS talk_ms_n
FROM (SELECT status, direction, provider_id, connected_at, ring_ms, talk_ms,
             coalesce(agent_id, agent_number) AS agent,
             date_trunc(@unit@, created_at AT TIME ZONE @zone@) AT TIME ZONE @zone@ AS bucket
      FROM click_to_call_session WHERE {where}) s
GROUP BY GROUPING SETS ((), (status), (agent), (provider_id), (direction), (bucket))
"""

# Cost of the legs of the range's sessions. A leg ends after its session was created, so
# billed_at >= the range's start narrows the lines by (tenant_id, billed_at) first.
_COST: Final = """
SELECT b.currency, count(*) AS legs, coalesce(sum(b.billable_seconds), 0)::bigint AS seconds,
       coalesce(sum(b.amount_minor), 0)::bigint AS amount
FROM call_usage_billing b
WHERE b.tenant_id = $1 {since}
  AND b.session_id IN (SELECT id FROM click_to_call_session WHERE {where})
GROUP BY b.currency ORDER BY b.currency
"""

# MOS of the range's sessions' legs: the end-of-call summary of each leg
# (call_quality_metric.mos where is_final), sampled after its session was created.
_MOS: Final = """
SELECT coalesce(sum(q.mos), 0) AS mos_sum, count(q.mos) AS mos_n
FROM call_quality_metric q
WHERE q.tenant_id = $1 AND q.is_final {since}
  AND q.session_id IN (SELECT id FROM click_to_call_session WHERE {where})
"""

_SUMS: Final = (
    "sum(sessions)::bigint AS total, sum(connected)::bigint AS connected, "
    "sum(ring_ms_sum)::bigint AS ring_ms_sum, sum(ring_ms_n)::bigint AS ring_ms_n, "
    "sum(talk_ms_sum)::bigint AS talk_ms_sum, sum(talk_ms_n)::bigint AS talk_ms_n, "
    "sum(legs)::bigint AS legs, sum(seconds)::bigint AS seconds, "
    "sum(amount)::bigint AS amount, sum(mos_sum) AS mos_sum, sum(mos_n)::bigint AS mos_n"
)
# The rollup of whole days [$2, $3] (NULL: open): per breakdown and key, and the day buckets (from
# the status rows: every ended session has exactly one).
_ROLLUP_KEYS: Final = (
    f"SELECT dim, key, {_SUMS} FROM call_stats_daily "
    "WHERE tenant_id = $1 AND ($2::date IS NULL OR day >= $2) "
    "AND ($3::date IS NULL OR day <= $3) GROUP BY dim, key"
)
_ROLLUP_DAYS: Final = (
    f"SELECT day, {_SUMS} FROM call_stats_daily "
    "WHERE tenant_id = $1 AND ($2::date IS NULL OR day >= $2) "
    "AND ($3::date IS NULL OR day <= $3) AND dim = 'status' GROUP BY day"
)


def _range_statements(
    after: datetime | None,
    before: datetime | None,
    agent_id: str | None,
    zone: str,
    bucket: str,
    *,
    live_only: bool = False,
) -> dict[str, tuple[str, list[Any]]]:
    where, args = _period(after, before, agent_id, live_only=live_only)
    n = len(args) + 1  # the last range parameter
    groups = _GROUPS.format(where=where).replace("@zone@", f"${n + 1}")
    groups = groups.replace("@unit@", f"${n + 2}").replace("@live@", f"${n + 3}")
    since = "" if after is None else "AND {col} >= $2"
    return {
        "groups": (groups, [*args, zone, bucket, _LIVE]),
        "cost": (_COST.format(where=where, since=since.format(col="b.billed_at")), args),
        "mos": (_MOS.format(where=where, since=since.format(col="q.sampled_at")), args),
    }


def statements(period: StatsPeriod) -> dict[str, tuple[str, list[Any]]]:
    """The three raw statements of the period's report and their arguments (tenant
    first): what the report runs when the rollup cannot serve it."""
    return _range_statements(
        period.created_after,
        period.created_before,
        period.agent_id,
        period.timezone,
        period.bucket,
    )


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def rollup_days(period: StatsPeriod) -> tuple[date | None, date | None] | None:
    """The whole days (first, last, in the period's zone; None: that end is open) of the
    period that the rollup can answer, or None (no whole day, or a request the rollup does
    not serve: hour buckets, one agent)."""
    if period.bucket != "day" or period.agent_id is not None:
        return None
    zone = ZoneInfo(period.timezone)
    first: date | None = None
    if period.created_after is not None:
        first = period.created_after.astimezone(zone).date()
        if _midnight(first, zone) != period.created_after:
            first += timedelta(days=1)
    last: date | None = None
    if period.created_before is not None:
        last = period.created_before.astimezone(zone).date() - timedelta(days=1)
    if first is not None and last is not None and first > last:
        return None
    return first, last


@dataclasses.dataclass(slots=True)
class _Sums:
    """One group's sums, from raw rows or the rollup; merged, then made a StatsGroup."""

    total: int = 0
    live: int = 0
    connected: int = 0
    connected_finished: int = 0
    ring_ms_sum: int = 0
    ring_ms_n: int = 0
    talk_ms_sum: int = 0
    talk_ms_n: int = 0

    def add(self, row: asyncpg.Record, *, ended_only: bool) -> None:
        self.total += int(row["total"])
        connected = int(row["connected"])
        self.connected += connected
        if ended_only:
            self.connected_finished += connected
        else:
            self.live += int(row["live"])
            self.connected_finished += int(row["connected_finished"])
        self.ring_ms_sum += int(row["ring_ms_sum"])
        self.ring_ms_n += int(row["ring_ms_n"])
        self.talk_ms_sum += int(row["talk_ms_sum"])
        self.talk_ms_n += int(row["talk_ms_n"])

    def group(self, key: str | None) -> StatsGroup:
        finished = self.total - self.live
        return StatsGroup(
            key=key,
            total=self.total,
            live=self.live,
            connected=self.connected,
            # a live connected call is not decided yet
            connect_rate=round(self.connected_finished / finished, 4) if finished else None,
            avg_ring_ms=_average(self.ring_ms_sum, self.ring_ms_n),
            avg_talk_ms=_average(self.talk_ms_sum, self.talk_ms_n),
            total_talk_ms=self.talk_ms_sum,
        )


def _average(total: int, n: int) -> int | None:
    """As PostgreSQL's ``avg(x)::bigint``: halves away from zero."""
    if n == 0:
        return None
    return int((Decimal(total) / Decimal(n)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


_WORK_MEM: Final = "256MB"
_SETS: Final = {15: "status", 23: "agent", 27: "provider", 29: "direction", 30: "bucket"}


@dataclasses.dataclass(slots=True)
class _Report:
    """A report being summed up from its parts."""

    zone: ZoneInfo
    groups: dict[tuple[str, Any], _Sums] = dataclasses.field(default_factory=dict)
    cost: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    mos_sum: Decimal = Decimal(0)
    mos_n: int = 0

    def sums(self, kind: str, key: Any) -> _Sums:
        found = self.groups.get((kind, key))
        if found is None:
            found = self.groups[(kind, key)] = _Sums()
        return found

    def add_raw(self, rows: Iterable[asyncpg.Record]) -> None:
        for row in rows:
            g = int(row["g"])
            if g == 31:
                self.sums("total", None).add(row, ended_only=False)
                continue
            kind = _SETS[g]
            key: Any
            match kind:
                case "provider":
                    key = str(row["provider_id"]) if row["provider_id"] else None
                case "bucket":
                    key = row["bucket"]
                case "status" | "agent" | "direction":
                    key = row[kind]
            self.sums(kind, key).add(row, ended_only=False)

    def add_cost(self, currency: str, legs: int, seconds: int, amount: int) -> None:
        found = self.cost.setdefault(currency, [0, 0, 0])
        found[0] += legs
        found[1] += seconds
        found[2] += amount

    def add_rollup(self, keys: Iterable[asyncpg.Record], days: Iterable[asyncpg.Record]) -> None:
        for row in keys:
            dim, key = row["dim"], row["key"]
            if dim == "cost":
                self.add_cost(key, int(row["legs"]), int(row["seconds"]), int(row["amount"]))
            elif dim == "mos":
                self.mos_sum += Decimal(row["mos_sum"])
                self.mos_n += int(row["mos_n"])
            else:
                if dim == "status":
                    self.sums("total", None).add(row, ended_only=True)
                self.sums(dim, key).add(row, ended_only=True)
        for row in days:
            start = _midnight(row["day"], self.zone)
            self.sums("bucket", start).add(row, ended_only=True)

    def of(self, kind: str) -> list[tuple[Any, _Sums]]:
        """The groups of one breakdown that have sessions (a rollup key whose sessions
        all moved to another key sums to none: raw rows would not show it)."""
        return [(key, sums) for (k, key), sums in self.groups.items() if k == kind and sums.total]

    def report(self, zone_name: str) -> StatsReport:
        total = self.groups.get(("total", None), _Sums())

        def ranked(kind: str) -> list[StatsGroup]:
            return sorted(
                (sums.group(key) for key, sums in self.of(kind)),
                key=lambda g: (-g.total, g.key or ""),
            )

        mos = float((self.mos_sum / self.mos_n).quantize(Decimal("0.01"))) if self.mos_n else None
        return StatsReport(
            timezone=zone_name,
            totals=total.group(None),
            by_status={key: sums.total for key, sums in self.of("status")},
            by_agent=ranked("agent"),
            by_provider=ranked("provider"),
            by_direction=sorted(
                (sums.group(key) for key, sums in self.of("direction")),
                key=lambda g: g.key or "",
            ),
            buckets=[
                sums.group(start.astimezone(self.zone).isoformat())
                for start, sums in sorted(self.of("bucket"), key=lambda item: item[0])
            ],
            cost=[CostTotal(c, *sums) for c, sums in sorted(self.cost.items()) if sums[0]],
            avg_mos=mos,
            mos_legs=self.mos_n,
        )


class StatsQueries:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def tenant_timezone(self, tenant_id: uuid.UUID) -> str:
        """The zone the tenant's buckets are in (``tenant.timezone``, 'UTC' by default)."""
        async with self._db.connection() as conn:
            return await _tenant_zone(conn, tenant_id)

    async def compact(self) -> int:
        """Fold the rollup rows appended since the last time (``ctc_stats_compact()``);
        how many tenant-days were folded. Idempotent."""
        return int(await self._db.fetchval("SELECT ctc_stats_compact()") or 0)

    async def report(
        self, tenant_id: uuid.UUID, period: StatsPeriod, *, rollup: bool = True
    ) -> StatsReport:
        """The period's report; ``rollup=False`` reads only the raw rows (the same answer,
        slower over long periods: for comparisons and benches)."""
        report = _Report(ZoneInfo(period.timezone))
        # one snapshot for every part; memory enough to hash every grouping set of a long
        # raw period in one pass (at the default 4 MB PostgreSQL sorts a million rows for
        # some of them instead: 2.7x slower in bench/stats.py)
        async with self._db.transaction() as conn:
            await conn.execute(f"SET LOCAL work_mem = '{_WORK_MEM}'")
            days = rollup_days(period) if rollup else None
            if days is not None and period.timezone != await _tenant_zone(conn, tenant_id):
                days = None  # the rollup's days are the tenant's zone's
            if days is None:
                await self._raw(conn, tenant_id, report, statements(period))
            else:
                await self._by_rollup(conn, tenant_id, period, days, report)
        return report.report(period.timezone)

    async def _by_rollup(
        self,
        conn: Connection,
        tenant_id: uuid.UUID,
        period: StatsPeriod,
        days: tuple[date | None, date | None],
        report: _Report,
    ) -> None:
        first, last = days
        keys = await conn.fetch(_ROLLUP_KEYS, tenant_id, first, last)
        by_day = await conn.fetch(_ROLLUP_DAYS, tenant_id, first, last)
        report.add_rollup(keys, by_day)
        # the ragged ends, whole; the whole days' live sessions (their cost and MOS so
        # far are in the rollup already)
        start = None if first is None else _midnight(first, report.zone)
        end = None if last is None else _midnight(last + timedelta(days=1), report.zone)
        zone, bucket = period.timezone, period.bucket
        after, before = period.created_after, period.created_before
        if after is not None and start is not None and after < start:
            head = _range_statements(after, start, None, zone, bucket)
            await self._raw(conn, tenant_id, report, head)
        if before is not None and end is not None and end < before:
            tail = _range_statements(end, before, None, zone, bucket)
            await self._raw(conn, tenant_id, report, tail)
        live = _range_statements(start, end, None, zone, bucket, live_only=True)
        await self._raw(conn, tenant_id, report, {"groups": live["groups"]})

    @staticmethod
    async def _raw(
        conn: Connection,
        tenant_id: uuid.UUID,
        report: _Report,
        sql: dict[str, tuple[str, list[Any]]],
    ) -> None:
        groups, groups_args = sql["groups"]
        report.add_raw(await conn.fetch(groups, tenant_id, *groups_args))
        if "cost" in sql:
            cost_sql, args = sql["cost"]
            for r in await conn.fetch(cost_sql, tenant_id, *args):
                report.add_cost(r["currency"], int(r["legs"]), int(r["seconds"]), int(r["amount"]))
        if "mos" in sql:
            mos_sql, args = sql["mos"]
            mos = await conn.fetchrow(mos_sql, tenant_id, *args)
            if mos is not None:
                report.mos_sum += Decimal(mos["mos_sum"])
                report.mos_n += int(mos["mos_n"])


async def _tenant_zone(conn: Connection, tenant_id: uuid.UUID) -> str:
    zone = await conn.fetchval("SELECT timezone FROM tenant WHERE id = $1", tenant_id)
    return str(zone) if zone else "UTC"

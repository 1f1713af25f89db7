"""The manager's statistics over a tenant's sessions: counts by status, answer rate,
ring and talk times, by agent, provider, direction and time bucket, cost and MOS.

Computed in SQL, in three statements over one period: the session figures are one scan
of the period with ``GROUPING SETS`` (every breakdown from the same rows, hashed), over
the range of ``click_to_call_session_list_idx`` (tenant, created_at); the cost totals sum
``call_usage_billing`` and the MOS averages ``call_quality_metric`` for the sessions of
that period. ``bench/stats.py`` times them over a million sessions (figures in its
docstring).

Like :mod:`engine.store.session_queries`, these read PostgreSQL only: calls in progress
reach them once the journal has written them (within its interval).
"""

from __future__ import annotations

import uuid
from typing import Any, Final
from zoneinfo import ZoneInfo

import asyncpg

from engine.domain.call import LIVE_STATUSES
from engine.store.database import Database
from engine.store.records import CostTotal, StatsGroup, StatsPeriod, StatsReport

__all__ = ["StatsQueries", "statements"]


def _period(period: StatsPeriod) -> tuple[str, list[Any]]:
    """The WHERE clause of the period's sessions (``$1`` the tenant, then only the bounds
    given: a ``$n IS NULL OR ...`` would keep a generic plan off the index) and its
    arguments after the tenant."""
    where = ["tenant_id = $1"]
    args: list[Any] = []
    for sql, value in (
        ("created_at >= {}", period.created_after),
        ("created_at < {}", period.created_before),
        ("agent_id = {}", period.agent_id),
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
       avg(ring_ms)::bigint AS avg_ring_ms,
       avg(talk_ms)::bigint AS avg_talk_ms,
       coalesce(sum(talk_ms), 0)::bigint AS total_talk_ms
FROM (SELECT status, direction, provider_id, connected_at, ring_ms, talk_ms,
             coalesce(agent_id, agent_number) AS agent,
             date_trunc(@unit@, created_at AT TIME ZONE @zone@) AT TIME ZONE @zone@ AS bucket
      FROM click_to_call_session WHERE {where}) s
GROUP BY GROUPING SETS ((), (status), (agent), (provider_id), (direction), (bucket))
"""

# Cost of the legs of the period's sessions. A leg ends after its session was created, so
# billed_at >= the period's start narrows the lines by (tenant_id, billed_at) first.
_COST: Final = """
SELECT b.currency, count(*) AS legs, coalesce(sum(b.billable_seconds), 0)::bigint AS seconds,
       coalesce(sum(b.amount_minor), 0)::bigint AS amount
FROM call_usage_billing b
WHERE b.tenant_id = $1 {since}
  AND b.session_id IN (SELECT id FROM click_to_call_session WHERE {where})
GROUP BY b.currency ORDER BY b.currency
"""

# Average MOS of the period's sessions' legs: the end-of-call summary of each leg
# (call_quality_metric.mos where is_final), sampled after its session was created.
_MOS: Final = """
SELECT avg(q.mos)::float8 AS avg_mos, count(q.mos) AS legs
FROM call_quality_metric q
WHERE q.tenant_id = $1 AND q.is_final {since}
  AND q.session_id IN (SELECT id FROM click_to_call_session WHERE {where})
"""


def statements(period: StatsPeriod) -> dict[str, tuple[str, list[Any]]]:
    """The three statements of the period's report and their arguments (tenant first)."""
    where, args = _period(period)
    n = len(args) + 1  # the last period parameter
    groups = _GROUPS.format(where=where).replace("@zone@", f"${n + 1}")
    groups = groups.replace("@unit@", f"${n + 2}").replace("@live@", f"${n + 3}")
    since = "" if period.created_after is None else "AND {col} >= $2"
    return {
        "groups": (
            groups,
            [*args, period.timezone, period.bucket, [s.value for s in LIVE_STATUSES]],
        ),
        "cost": (_COST.format(where=where, since=since.format(col="b.billed_at")), args),
        "mos": (_MOS.format(where=where, since=since.format(col="q.sampled_at")), args),
    }


_WORK_MEM: Final = "256MB"
_BIT: Final = {"status": 16, "agent": 8, "provider_id": 4, "direction": 2, "bucket": 1}


def _group(row: asyncpg.Record, key: str | None) -> StatsGroup:
    total, live, connected = int(row["total"]), int(row["live"]), int(row["connected"])
    finished = total - live
    answered = int(row["connected_finished"])  # a live connected call is not decided yet
    return StatsGroup(
        key=key,
        total=total,
        live=live,
        connected=connected,
        connect_rate=round(answered / finished, 4) if finished else None,
        avg_ring_ms=row["avg_ring_ms"],
        avg_talk_ms=row["avg_talk_ms"],
        total_talk_ms=int(row["total_talk_ms"]),
    )


def _of(rows: list[asyncpg.Record], column: str) -> list[asyncpg.Record]:
    g = 31 - _BIT[column]
    return [r for r in rows if r["g"] == g]


class StatsQueries:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def tenant_timezone(self, tenant_id: uuid.UUID) -> str:
        """The zone the tenant's buckets are in (``tenant.timezone``, 'UTC' by default)."""
        zone = await self._db.fetchval("SELECT timezone FROM tenant WHERE id = $1", tenant_id)
        return str(zone) if zone else "UTC"

    async def report(self, tenant_id: uuid.UUID, period: StatsPeriod) -> StatsReport:
        sql = statements(period)
        groups, groups_args = sql["groups"]
        cost_sql, args = sql["cost"]
        mos_sql, _ = sql["mos"]
        # one snapshot for the three; memory enough to hash every grouping set of a long
        # period in one pass (at the default 4 MB PostgreSQL sorts a million rows for some
        # of them instead: 2.7x slower in bench/stats.py); only what is used is allocated
        async with self._db.transaction() as conn:
            await conn.execute(f"SET LOCAL work_mem = '{_WORK_MEM}'")
            rows = await conn.fetch(groups, tenant_id, *groups_args)
            cost = await conn.fetch(cost_sql, tenant_id, *args)
            mos = await conn.fetchrow(mos_sql, tenant_id, *args)
        overall = [r for r in rows if r["g"] == 31]
        totals = (
            _group(overall[0], None) if overall else StatsGroup(None, 0, 0, 0, None, None, None, 0)
        )
        by_agent = sorted(
            (_group(r, r["agent"]) for r in _of(rows, "agent")),
            key=lambda g: (-g.total, g.key or ""),
        )
        by_provider = sorted(
            (
                _group(r, str(r["provider_id"]) if r["provider_id"] else None)
                for r in _of(rows, "provider_id")
            ),
            key=lambda g: (-g.total, g.key or ""),
        )
        by_direction = sorted(
            (_group(r, r["direction"]) for r in _of(rows, "direction")),
            key=lambda g: g.key or "",
        )
        buckets = [
            _group(r, r["bucket"].astimezone(ZoneInfo(period.timezone)).isoformat())
            for r in sorted(_of(rows, "bucket"), key=lambda r: r["bucket"])
        ]
        return StatsReport(
            timezone=period.timezone,
            totals=totals,
            by_status={r["status"]: int(r["total"]) for r in _of(rows, "status")},
            by_agent=by_agent,
            by_provider=by_provider,
            by_direction=by_direction,
            buckets=buckets,
            cost=[
                CostTotal(r["currency"], int(r["legs"]), int(r["seconds"]), int(r["amount"]))
                for r in cost
            ],
            avg_mos=round(mos["avg_mos"], 2) if mos and mos["avg_mos"] is not None else None,
            mos_legs=int(mos["legs"]) if mos else 0,
        )

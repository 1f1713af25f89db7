"""The manager's stats over a million sessions: how long each statement takes, beside the
floor of a bare ``count(*)`` over the same sessions. Not part of the test run.

    .venv/bin/python -m bench.stats --sessions 1000000

On a scratch database (``ctc_stats_bench_<hex>``, created, migrated and dropped):

1. Seeds ``--sessions`` sessions of one tenant over a year (``generate_series``, one
   statement per 100 000), 200 agents, three providers (one "none"), 1 in 7 inbound,
   statuses as a contact centre sees them; a billing line per answered leg; an end-of-call
   quality row (MOS) per connected leg. Then ``VACUUM ANALYZE``, as autovacuum would.
2. Times :meth:`StatsQueries.report` (the API's answer: the daily rollup of sql/0023 for
   whole days in the tenant's zone, the sessions for the rest) and the same report read
   only from the sessions (``rollup=False``: three statements, each also timed alone)
   over a day (hour buckets), a month, the month of one agent, and the whole year, best
   of ``--repeat`` runs, with the scan the plan chose (``EXPLAIN ANALYZE``), and the bare
   count of the period's sessions as the floor.
3. Times what the rollup's triggers cost a call's end (10 000 sessions ended in batches
   of 100, as the journal writes them, with and without the triggers) and a full rebuild.

Prints one table. Measured 2026-11-30 on the shared 2-core box under a load average of
7-8 (other builds running: every figure is inflated several times; the ratio to the
floor travels better), ``--repeat 3``:

    period               sessions   floor   report (API)   raw report   raw groups/cost/mos
    a day (hour buckets)    2 739   0.8 ms      24 ms          26 ms    6 / 7 / 6 ms (raw)
    a month                82 191    16 ms      31 ms         500 ms    205 / 121 / 85 ms
    a month, one agent        410   0.5 ms      13 ms           9 ms    1 / 2 / 4 ms (raw)
    the whole year      1 000 000   158 ms      71 ms        5.6 s     2.8 / 1.2 / 1.3 s

Before the rollup (the same raw statements, load 8-10) the report took 59 ms, 784 ms,
28 ms and 9.6 s. The rollup holds 77 380 rows for the year (about 212 a day: one per
status, agent, provider, direction and currency of the day); a full rebuild took 23 s.
A call's end cost 332 us per session with its triggers, 188 us without (+144 us).

The raw groups statement costs about 0.6 us per session per grouping set over the bare
scan (six sets: the total, status, agent, provider, direction, bucket). A covering index
(every column the stats read, for index-only scans) measured no faster, so 0012 builds none.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from engine.devtools.databases import create_database, drop_database
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.records import StatsPeriod
from engine.store.stats import StatsQueries, rollup_days, statements

_CHUNK = 100_000
_START = datetime(2025, 12, 1, tzinfo=UTC)
_SPAN = timedelta(days=365)

_SESSIONS = """
INSERT INTO click_to_call_session (id, tenant_id, provider_id, direction, status,
    agent_number, customer_number, agent_id, created_at, dialing_agent_at, agent_answered_at,
    connected_at, ended_at, ring_ms, talk_ms, updated_at, version)
SELECT md5('s' || k)::uuid, $1,
       (ARRAY[$2::uuid, $3::uuid, NULL])[1 + k % 3],
       CASE WHEN k % 7 = 0 THEN 'inbound' ELSE 'click_to_call' END,
       st, '2' || lpad((k % 200)::text, 3, '0'), '+1415555' || lpad((k % 10000)::text, 4, '0'),
       'agent' || (k % 200), at, at,
       CASE WHEN st IN ('completed', 'canceled') THEN at + ring END,
       CASE WHEN st = 'completed' THEN at + ring + interval '2 s' END,
       at + ring + talk + interval '3 s',
       (extract(epoch FROM ring) * 1000)::int,
       CASE WHEN st = 'completed' THEN (extract(epoch FROM talk) * 1000)::int END,
       at, 5
FROM generate_series($4::int, $5::int) k,
     LATERAL (SELECT $6::timestamptz + k * $7::interval AS at,
                     (ARRAY['completed', 'completed', 'completed', 'completed', 'completed',
                            'completed', 'no_answer', 'busy', 'failed', 'canceled'])[1 + k % 10]
                       AS st,
                     ((k::bigint * 7919) % 30000) * interval '1 ms' AS ring,
                     ((k::bigint * 104729) % 600000) * interval '1 ms' AS talk) v
"""

_LINES = """
INSERT INTO call_usage_billing (tenant_id, session_id, leg, provider_id, destination_number,
    duration_s, billable_seconds, rate_per_minute_minor, amount_minor, currency, billed_at)
SELECT s.tenant_id, s.id, l.leg, s.provider_id, s.customer_number, d, d, 100,
       d * 100 / 60 + 1, 'USD', s.ended_at
FROM click_to_call_session s
CROSS JOIN (VALUES ('agent'), ('customer')) l(leg)
CROSS JOIN LATERAL (SELECT ceil(extract(epoch FROM s.ended_at - coalesce(
    CASE WHEN l.leg = 'agent' THEN s.agent_answered_at ELSE s.connected_at END,
    s.ended_at)))::int AS d) x
WHERE s.tenant_id = $1 AND s.direction = 'click_to_call'
  AND (s.connected_at IS NOT NULL OR (l.leg = 'agent' AND s.agent_answered_at IS NOT NULL))
"""

_QUALITY = """
INSERT INTO call_quality_metric (tenant_id, session_id, channel_id, leg, sampled_at, is_final,
    mos)
SELECT s.tenant_id, s.id, s.id::text || l.leg, l.leg, s.ended_at, true,
       1 + (abs(hashtext(s.id::text || l.leg)) % 400) / 100.0
FROM click_to_call_session s CROSS JOIN (VALUES ('agent'), ('customer')) l(leg)
WHERE s.tenant_id = $1 AND s.connected_at IS NOT NULL
"""


async def _seed(conn: asyncpg.Connection, tenant: uuid.UUID, sessions: int) -> dict[str, float]:
    providers = [
        await conn.fetchval(
            "INSERT INTO voip_provider (tenant_id, name, provider_type) "
            "VALUES ($1, $2, 'asterisk') RETURNING id",
            tenant,
            name,
        )
        for name in ("pbx-a", "pbx-b")
    ]
    took: dict[str, float] = {}
    began = time.monotonic()
    await conn.execute("SET session_replication_role = replica")  # no FK checks while seeding
    step = _SPAN / sessions
    for first in range(0, sessions, _CHUNK):
        last = min(sessions, first + _CHUNK) - 1
        await conn.execute(_SESSIONS, tenant, *providers, first, last, _START, step)
    took["sessions"] = time.monotonic() - began
    began = time.monotonic()
    await conn.execute(_LINES, tenant)
    took["billing lines"] = time.monotonic() - began
    began = time.monotonic()
    await conn.execute(_QUALITY, tenant)
    took["quality rows"] = time.monotonic() - began
    await conn.execute("RESET session_replication_role")
    began = time.monotonic()  # the triggers did not run while seeding: build the rollup
    await conn.execute("SELECT call_stats_rebuild(NULL)")
    took["stats rollup"] = time.monotonic() - began
    began = time.monotonic()
    await conn.execute("VACUUM ANALYZE")
    took["vacuum analyze"] = time.monotonic() - began
    return took


async def _best(repeat: int, work: Any) -> float:
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        await work()
        best = min(best, time.perf_counter() - began)
    return best


async def _plan(conn: asyncpg.Connection, sql: str, args: list[Any]) -> str:
    """The scan the plan chose for click_to_call_session, and its time."""
    raw = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    plan = (raw if isinstance(raw, list) else json.loads(raw))[0]
    scans: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Relation Name") == "click_to_call_session" or (
            "Index Name" in node and "session" in node.get("Index Name", "")
        ):
            scans.append(f"{node['Node Type']}({node.get('Index Name', 'heap')})")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    return ", ".join(dict.fromkeys(scans)) or plan["Plan"]["Node Type"]


async def _measure(
    db: Database, tenant: uuid.UUID, repeat: int
) -> list[tuple[str, int, float, float, float, float, float, float, str]]:
    queries = StatsQueries(db)
    end = _START + _SPAN
    periods = [
        ("a day", StatsPeriod(end - timedelta(days=1), end, bucket="hour")),
        ("a month", StatsPeriod(end - timedelta(days=30), end)),
        ("a month, one agent", StatsPeriod(end - timedelta(days=30), end, agent_id="agent7")),
        ("the whole year", StatsPeriod(None, None)),
    ]
    rows = []
    async with db.connection() as conn:
        await conn.execute("SET work_mem = '256MB'")  # as StatsQueries.report runs them
        for name, period in periods:
            sql = statements(period)
            where = sql["cost"][0].split("FROM click_to_call_session WHERE ")[1].split(")")[0]
            floor_sql = f"SELECT count(*) FROM click_to_call_session WHERE {where}"

            async def report(p: StatsPeriod = period) -> None:
                await queries.report(tenant, p)

            async def raw(p: StatsPeriod = period) -> None:
                await queries.report(tenant, p, rollup=False)

            async def one(statement: tuple[str, list[Any]]) -> None:
                await conn.fetch(statement[0], tenant, *statement[1])

            floor_args = sql["cost"][1]
            count = int(await conn.fetchval(floor_sql, tenant, *floor_args))
            floor = await _best(repeat, lambda q=floor_sql, a=floor_args: one((q, a)))
            total = await _best(repeat, report)
            raw_total = await _best(repeat, raw)
            groups = await _best(repeat, lambda q=sql["groups"]: one(q))
            cost = await _best(repeat, lambda q=sql["cost"]: one(q))
            mos = await _best(repeat, lambda q=sql["mos"]: one(q))
            plan = await _plan(conn, sql["groups"][0], [tenant, *sql["groups"][1]])
            plan = ("rollup + " if rollup_days(period) else "") + plan
            rows.append((name, count, floor, total, raw_total, groups, cost, mos, plan))
            print(f"  measured {name}", flush=True)
    return rows


async def _write_cost(
    conn: asyncpg.Connection, tenant: uuid.UUID, n: int = 10_000
) -> tuple[float, float]:
    """What the rollup's triggers cost a call's end: ``n`` live sessions ended in batches
    of 100 (as the journal writes them), with the triggers and without them (replica
    mode); microseconds per session each way. The sessions are deleted after."""
    await conn.execute("SET session_replication_role = replica")
    ids = await conn.fetch(
        "INSERT INTO click_to_call_session (tenant_id, status, agent_number, customer_number, "
        "agent_id, created_at) SELECT $1, 'connected', '2001', '+14155550100', "
        "'agent' || (k % 200), now() - k * interval '1 s' FROM generate_series(1, $2) k "
        "RETURNING id",
        tenant,
        n,
    )
    await conn.execute("RESET session_replication_role")
    batches = [[r["id"] for r in ids[i : i + 100]] for i in range(0, n, 100)]
    end = (
        "UPDATE click_to_call_session SET status = 'completed', ended_at = now(), "
        "talk_ms = 60000, ring_ms = 3000 WHERE id = ANY($1::uuid[])"
    )
    took: list[float] = []
    for replica in (False, True):
        if replica:  # back to live without the triggers, then end them without
            await conn.execute("SET session_replication_role = replica")
            await conn.execute(
                "UPDATE click_to_call_session SET status = 'connected' WHERE id = ANY($1::uuid[])",
                [r["id"] for r in ids],
            )
        began = time.perf_counter()
        for batch in batches:
            await conn.execute(end, batch)
        took.append((time.perf_counter() - began) / n * 1e6)
    await conn.execute(
        "DELETE FROM click_to_call_session WHERE id = ANY($1::uuid[])", [r["id"] for r in ids]
    )
    await conn.execute("RESET session_replication_role")
    await conn.execute("SELECT call_stats_rebuild($1)", tenant)  # the seeded ones are out
    return took[0], took[1]


async def main(sessions: int, repeat: int, keep: bool, reuse: str | None) -> None:
    url = reuse or await create_database("ctc_stats_bench")
    keep = keep or reuse is not None
    try:
        if reuse is None:
            await migrate(url, default_migrations_dir())
        conn = await asyncpg.connect(url)
        try:
            tenant = await conn.fetchval("SELECT id FROM tenant WHERE slug = 'default'")
            took = {} if reuse else await _seed(conn, tenant, sessions)
            await conn.execute("DROP INDEX IF EXISTS click_to_call_session_stats_idx")
            await conn.execute("VACUUM ANALYZE click_to_call_session")
            counts = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM click_to_call_session) AS s, "
                "(SELECT count(*) FROM call_usage_billing) AS b, "
                "(SELECT count(*) FROM call_quality_metric) AS q"
            )
        finally:
            await conn.close()
        print(
            f"seeded {counts['s']} sessions, {counts['b']} billing lines, "
            f"{counts['q']} quality rows: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
        )
        async with Database(url, min_size=1, max_size=2, command_timeout=600) as db:
            rows = await _measure(db, tenant, repeat)
            async with db.connection() as conn:
                with_triggers, without = await _write_cost(conn, tenant)
            async with db.connection() as conn:
                began = time.perf_counter()
                await conn.execute("SELECT call_stats_rebuild(NULL)")
                rebuild = time.perf_counter() - began
                rollup_rows = await conn.fetchval("SELECT count(*) FROM call_stats_daily")
        print(
            f"{'period':<20} {'sessions':>9} {'floor':>9} {'report':>9} {'raw':>9} "
            f"{'groups':>9} {'cost':>9} {'mos':>9}  read by"
        )
        for name, count, floor, total, raw_total, groups, cost, mos, plan in rows:
            print(
                f"{name:<20} {count:>9} {floor * 1e3:7.1f}ms {total * 1e3:7.1f}ms "
                f"{raw_total * 1e3:7.1f}ms {groups * 1e3:7.1f}ms {cost * 1e3:7.1f}ms "
                f"{mos * 1e3:7.1f}ms  {plan}"
            )
        print(
            f"a call's end: {with_triggers:.0f} us per session with the rollup's triggers, "
            f"{without:.0f} us without; rollup: {rollup_rows} rows, rebuilt in {rebuild:.1f} s"
        )
    finally:
        if keep:
            print(f"kept {url}")
        else:
            await drop_database(url)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="Best of this many runs.")
    parser.add_argument("--keep", action="store_true", help="Keep the database (say its URL).")
    parser.add_argument("--reuse", metavar="URL", help="Measure a database a --keep run seeded.")
    return parser.parse_args()


if __name__ == "__main__":
    a = _args()
    asyncio.run(main(a.sessions, a.repeat, a.keep, a.reuse))

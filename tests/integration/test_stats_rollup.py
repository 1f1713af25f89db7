"""The stats' daily rollup (sql/0023) against the raw query on the same data: every report
read through the rollup equals the one read from the sessions themselves, whatever
happened to the facts since — sessions ending days after they were created, live
calls, a rerate rewriting lines, quality rows, deleted sessions, a tenant changing its
time zone, compaction (twice: the second changes nothing)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from engine.daemon import Engine
from engine.store.records import StatsPeriod, StatsReport, Tenant
from engine.store.stats import rollup_days
from tests.support.tenants import new_tenant

ZONE = "Asia/Kolkata"  # +05:30: local midnights are not whole UTC hours
T0 = datetime(2026, 3, 1, tzinfo=UTC)
STATUSES = ["completed"] * 5 + ["no_answer", "busy", "failed", "canceled", "rejected"]


async def seed(engine: Engine, tenant: Tenant, rng: random.Random) -> list[uuid.UUID]:
    """300 sessions over 40 days: agents, a provider, both directions, every terminal status,
    a few still live; a billing line per connected leg, a final quality row per leg."""
    db = engine.store.db
    provider = await db.fetchval(
        "INSERT INTO voip_provider (tenant_id, name, provider_type) "
        "VALUES ($1, 'pbx', 'asterisk') RETURNING id",
        tenant.id,
    )
    ids: list[uuid.UUID] = []
    for i in range(300):
        created = T0 + timedelta(minutes=rng.randrange(40 * 24 * 60), seconds=rng.randrange(60))
        live = i % 29 == 0
        status = "connected" if live else rng.choice(STATUSES)
        connected = created + timedelta(seconds=5) if status in ("completed", "connected") else None
        talk = rng.randrange(1, 900_000) if status == "completed" else None
        ring = rng.randrange(0, 40_000) if rng.random() < 0.9 else None
        direction = rng.choice(["click_to_call", "inbound", "outbound"])
        agent_number = rng.choice(["2001", "2002"])
        if direction == "inbound" and rng.random() < 0.5:
            agent_number = None  # an inbound call no agent took
        sid = await db.fetchval(
            "INSERT INTO click_to_call_session (tenant_id, agent_id, agent_number, provider_id, "
            "direction, status, customer_number, created_at, connected_at, ring_ms, talk_ms, "
            "ended_at) VALUES ($1, $2, $3, $4, $5, $6, '+14155550100', $7, $8, $9, $10, $11) "
            "RETURNING id",
            tenant.id,
            None if agent_number is None else rng.choice(["alice", "bob", "carol", None]),
            agent_number,
            provider if rng.random() < 0.5 else None,
            direction,
            status,
            created,
            connected,
            ring,
            talk,
            None if live else created + timedelta(minutes=5),
        )
        ids.append(sid)
        if connected is not None:
            for leg in ("agent", "customer"):
                await db.execute(
                    "INSERT INTO call_usage_billing (tenant_id, session_id, leg, duration_s, "
                    "billable_seconds, rate_per_minute_minor, amount_minor, currency, "
                    "billed_at) VALUES ($1, $2, $3, 60, 60, 10, $4, $5, $6)",
                    tenant.id,
                    sid,
                    leg,
                    rng.randrange(0, 500),
                    rng.choice(["USD", "EUR"]),
                    connected + timedelta(minutes=1),
                )
                await db.execute(
                    "INSERT INTO call_quality_metric (tenant_id, session_id, channel_id, leg, "
                    "sampled_at, is_final, mos) VALUES ($1, $2, 'c', $3, $4, true, $5)",
                    tenant.id,
                    sid,
                    leg,
                    connected + timedelta(minutes=1),
                    round(rng.uniform(1.0, 4.41), 2),
                )
    return ids


def periods() -> list[StatsPeriod]:
    """Whole local days, ragged ends, open ends, a single day, one agent, hour buckets."""
    midnight = datetime(2026, 3, 5, tzinfo=UTC) - timedelta(hours=5, minutes=30)  # 03-05 IST
    return [
        StatsPeriod(None, None, None, ZONE, "day"),
        StatsPeriod(midnight, midnight + timedelta(days=20), None, ZONE, "day"),
        StatsPeriod(
            midnight + timedelta(hours=7, minutes=13),
            midnight + timedelta(days=25, hours=3),
            None,
            ZONE,
            "day",
        ),
        StatsPeriod(midnight + timedelta(days=3), None, None, ZONE, "day"),
        StatsPeriod(None, midnight + timedelta(days=9, minutes=1), None, ZONE, "day"),
        StatsPeriod(midnight, midnight + timedelta(days=1), None, ZONE, "day"),
        StatsPeriod(midnight, midnight + timedelta(days=30), "alice", ZONE, "day"),
        StatsPeriod(midnight, midnight + timedelta(days=2), None, ZONE, "hour"),
        StatsPeriod(midnight, midnight + timedelta(days=20), None, "UTC", "day"),
    ]


async def assert_rollup_equals_raw(engine: Engine, tenant: Tenant, zone: str = ZONE) -> None:
    for period in periods():
        if period.timezone == ZONE:
            period = StatsPeriod(
                period.created_after, period.created_before, period.agent_id, zone, period.bucket
            )
        rolled: StatsReport = await engine.store.stats.report(tenant.id, period)
        raw = await engine.store.stats.report(tenant.id, period, rollup=False)
        assert rolled == raw, period
        assert raw.totals.total > 0, period


async def test_the_rollup_answers_what_the_raw_query_answers(api_engine: Engine) -> None:
    store, db = api_engine.store, api_engine.store.db
    tenant = await new_tenant(store)
    await db.execute("UPDATE tenant SET timezone = $2 WHERE id = $1", tenant.id, ZONE)
    rng = random.Random(14)
    ids = await seed(api_engine, tenant, rng)
    # the rollup is used where it can be: whole local days in the tenant's zone
    assert rollup_days(periods()[1]) == (datetime(2026, 3, 5).date(), datetime(2026, 3, 24).date())
    assert rollup_days(periods()[5]) == (datetime(2026, 3, 5).date(),) * 2
    assert rollup_days(periods()[6]) is None  # one agent: raw
    assert rollup_days(periods()[7]) is None  # hour buckets: raw
    await assert_rollup_equals_raw(api_engine, tenant)

    # calls ending late (live ones end days after they were created), a rerate rewriting
    # lines and currencies, a status corrected, a session deleted, a quality row added
    live = [sid for i, sid in enumerate(ids) if i % 29 == 0]
    for sid in live:
        await db.execute(
            "UPDATE click_to_call_session SET status = 'completed', talk_ms = 61000, "
            "ended_at = created_at + interval '3 days' WHERE id = $1",
            sid,
        )
    await db.execute(
        "UPDATE call_usage_billing SET amount_minor = amount_minor * 3 + 1, currency = 'GBP' "
        "WHERE tenant_id = $1 AND leg = 'customer' AND amount_minor % 2 = 0",
        tenant.id,
    )
    await db.execute(
        "UPDATE click_to_call_session SET status = 'failed', connected_at = NULL "
        "WHERE id = ANY($1::uuid[]) AND status = 'completed'",
        ids[1:40:3],
    )
    await db.execute("DELETE FROM call_usage_billing WHERE session_id = $1", ids[7])
    await db.execute("DELETE FROM call_quality_metric WHERE session_id = $1", ids[7])
    await db.execute("DELETE FROM click_to_call_session WHERE id = $1", ids[7])
    await db.execute(
        "INSERT INTO call_quality_metric (tenant_id, session_id, channel_id, leg, is_final, "
        "mos) VALUES ($1, $2, 'c', 'target', true, 2.5)",
        tenant.id,
        ids[2],
    )
    await assert_rollup_equals_raw(api_engine, tenant)

    # compaction folds the appended rows and changes no answer; again, it folds nothing
    fresh = await db.fetchval(
        "SELECT count(*) FROM call_stats_daily WHERE tenant_id = $1 AND NOT compacted", tenant.id
    )
    assert fresh > 0
    assert await store.stats.compact() > 0
    assert await store.stats.compact() == 0
    rows = await db.fetch(
        "SELECT day, dim, key, count(*) AS n, bool_and(compacted) AS compacted "
        "FROM call_stats_daily WHERE tenant_id = $1 GROUP BY day, dim, key",
        tenant.id,
    )
    assert all(r["n"] == 1 and r["compacted"] for r in rows)
    await assert_rollup_equals_raw(api_engine, tenant)

    # a new zone moves every day boundary: the tenant's rollup is rebuilt in it
    await db.execute("UPDATE tenant SET timezone = 'America/New_York' WHERE id = $1", tenant.id)
    await assert_rollup_equals_raw(api_engine, tenant, zone="America/New_York")

    # and it is the rollup that answered: a change the triggers do not see (replica mode)
    # shows in the raw answer only
    period = StatsPeriod(None, None, None, "America/New_York", "day")
    async with db.transaction() as conn:
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE click_to_call_session SET status = 'busy' WHERE id = $1", ids[0])
    rolled = await store.stats.report(tenant.id, period)
    raw = await store.stats.report(tenant.id, period, rollup=False)
    assert rolled.totals.total == raw.totals.total
    assert rolled.by_status != raw.by_status

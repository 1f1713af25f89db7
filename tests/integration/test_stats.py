"""The manager's stats over seeded sessions, billing lines and quality rows, checked
against figures worked out by hand (in the comments)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from engine.daemon import Engine
from engine.store.records import Tenant
from tests.support.calls import C2C
from tests.support.http import Api
from tests.support.tenants import new_tenant, tenant_headers


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def seed(engine: Engine, tenant: Tenant) -> dict[str, uuid.UUID]:
    db = engine.store.db
    provider = await db.fetchval(
        "INSERT INTO voip_provider (tenant_id, name, provider_type) "
        "VALUES ($1, 'pbx', 'asterisk') RETURNING id",
        tenant.id,
    )
    # name: agent_id, agent_number, provider, direction, status, created (UTC), connected,
    # ring_ms, talk_ms. Created times in Asia/Kolkata (+05:30) in the comments.
    rows: list[tuple[Any, ...]] = [
        (
            "s1",
            "alice",
            "2001",
            provider,
            "click_to_call",
            "completed",
            "2026-10-05 03:20",
            True,
            4000,
            60000,
        ),  # 08:50
        (
            "s2",
            "alice",
            "2001",
            provider,
            "click_to_call",
            "completed",
            "2026-10-05 03:40",
            True,
            6000,
            120000,
        ),  # 09:10
        (
            "s3",
            "bob",
            "2002",
            None,
            "click_to_call",
            "no_answer",
            "2026-10-05 04:10",
            False,
            30000,
            None,
        ),  # 09:40
        (
            "s4",
            "bob",
            "2002",
            None,
            "click_to_call",
            "busy",
            "2026-10-05 19:00",
            False,
            2000,
            None,
        ),  # 00:30 +1d
        (
            "s5",
            "alice",
            "2001",
            provider,
            "click_to_call",
            "connected",
            "2026-10-05 20:00",
            True,
            1000,
            None,
        ),  # 01:30 +1d
        (
            "s6",
            None,
            "1001",
            None,
            "inbound",
            "completed",
            "2026-10-05 04:20",
            True,
            500,
            30000,
        ),  # 09:50
        (
            "out",
            "alice",
            "2001",
            provider,
            "click_to_call",
            "completed",
            "2026-10-08 10:00",
            True,
            1,
            1,
        ),
    ]
    ids: dict[str, uuid.UUID] = {}
    for name, agent_id, agent_no, prov, direction, status, created, connected, ring, talk in rows:
        created_at = at(created)
        ids[name] = await db.fetchval(
            "INSERT INTO click_to_call_session (tenant_id, agent_id, agent_number, "
            "customer_number, provider_id, direction, status, created_at, connected_at, "
            "ring_ms, talk_ms) VALUES ($1, $2, $3, '+14155550100', $4, $5, $6, $7, $8, $9, $10) "
            "RETURNING id",
            tenant.id,
            agent_id,
            agent_no,
            prov,
            direction,
            status,
            created_at,
            created_at if connected else None,
            ring,
            talk,
        )
    billed = at("2026-10-05 12:00")
    for name, leg, seconds, amount, currency in [
        ("s1", "agent", 60, 100, "USD"),
        ("s1", "customer", 60, 50, "USD"),
        ("s2", "customer", 120, 70, "USD"),
        ("s6", "caller", 30, 0, "XXX"),
        ("out", "agent", 60, 999, "USD"),  # another period
    ]:
        await db.execute(
            "INSERT INTO call_usage_billing (tenant_id, session_id, leg, duration_s, "
            "billable_seconds, rate_per_minute_minor, amount_minor, currency, billed_at) "
            "VALUES ($1, $2, $3, $4, $4, 0, $5, $6, $7)",
            tenant.id,
            ids[name],
            leg,
            seconds,
            amount,
            currency,
            at("2026-10-09 00:00") if name == "out" else billed,
        )
    for name, leg, final, mos in [
        ("s1", "agent", True, 4.2),
        ("s1", "customer", True, 3.8),
        ("s2", "agent", False, 1.0),  # a sample during the call, not the summary
        ("s2", "customer", True, None),  # too little data: no MOS
        ("out", "agent", True, 1.5),
    ]:
        await db.execute(
            "INSERT INTO call_quality_metric (tenant_id, session_id, channel_id, leg, "
            "sampled_at, is_final, mos) VALUES ($1, $2, 'c', $3, $4, $5, $6)",
            tenant.id,
            ids[name],
            leg,
            at("2026-10-05 12:00") if name != "out" else at("2026-10-08 11:00"),
            final,
            mos,
        )
    return ids


def group(key: str | None, total: int, live: int, connected: int, rate: float | None,
          ring: int | None, talk: int | None, talk_total: int) -> dict[str, Any]:  # fmt: skip
    return {
        "key": key,
        "total": total,
        "live": live,
        "connected": connected,
        "connect_rate": rate,
        "avg_ring_ms": ring,
        "avg_talk_ms": talk,
        "total_talk_ms": talk_total,
    }


async def test_stats_against_a_hand_computed_answer(api_engine: Engine, unix_api: Api) -> None:
    tenant = await new_tenant(api_engine.store)
    await api_engine.store.db.execute(
        "UPDATE tenant SET timezone = 'Asia/Kolkata' WHERE id = $1", tenant.id
    )
    ids = await seed(api_engine, tenant)
    provider = str(
        await api_engine.store.db.fetchval(
            "SELECT provider_id FROM click_to_call_session WHERE id = $1", ids["s1"]
        )
    )
    period = {"created_after": "2026-10-05T00:00:00Z", "created_before": "2026-10-07T00:00:00Z"}
    status, stats, _ = await unix_api.call(
        "GET",
        f"{C2C}/stats",
        params={**period, "bucket": "hour"},
        headers=tenant_headers(tenant.slug),
    )
    assert status == 200, stats
    # six sessions, s5 live; connected: s1 s2 s5 s6; finished five, of which s1 s2 s6
    # connected: ASR 3/5; ring (4000+6000+30000+2000+1000+500)/6 = 7250; talk of the
    # three with talk (60000+120000+30000)/3 = 70000
    assert stats["total"] == 6
    assert stats["live"] == 1
    assert stats["connected"] == 4
    assert stats["connect_rate"] == 0.6
    assert (stats["avg_ring_ms"], stats["avg_talk_ms"], stats["total_talk_ms"]) == (
        7250,
        70000,
        210000,
    )
    assert stats["by_status"] == {"completed": 3, "no_answer": 1, "busy": 1, "connected": 1}
    assert stats["timezone"] == "Asia/Kolkata"
    assert stats["bucket"] == "hour"
    assert stats["by_agent"] == [
        group("alice", 3, 1, 3, 1.0, 3667, 90000, 180000),  # ring (4000+6000+1000)/3
        group("bob", 2, 0, 0, 0.0, 16000, None, 0),
        group("1001", 1, 0, 1, 1.0, 500, 30000, 30000),  # no agent_id: its number
    ]
    assert stats["by_provider"] == [
        group(None, 3, 0, 1, 0.3333, 10833, 30000, 30000),  # s3 s4 s6
        group(provider, 3, 1, 3, 1.0, 3667, 90000, 180000),
    ]
    assert stats["by_direction"] == [
        group("click_to_call", 5, 1, 3, 0.5, 8600, 90000, 180000),
        group("inbound", 1, 0, 1, 1.0, 500, 30000, 30000),
    ]
    assert stats["buckets"] == [
        group("2026-10-05T08:00:00+05:30", 1, 0, 1, 1.0, 4000, 60000, 60000),  # s1
        group("2026-10-05T09:00:00+05:30", 3, 0, 2, 0.6667, 12167, 75000, 150000),  # s2 s3 s6
        group("2026-10-06T00:00:00+05:30", 1, 0, 0, 0.0, 2000, None, 0),  # s4
        group("2026-10-06T01:00:00+05:30", 1, 1, 1, None, 1000, None, 0),  # s5, live
    ]
    assert stats["cost"] == [
        {"currency": "USD", "legs": 3, "billable_seconds": 240, "amount_minor": 220},
        {"currency": "XXX", "legs": 1, "billable_seconds": 30, "amount_minor": 0},
    ]
    assert (stats["avg_mos"], stats["mos_legs"]) == (4.0, 2)

    # one agent, day buckets in UTC
    status, bob, _ = await unix_api.call(
        "GET",
        f"{C2C}/stats",
        params={**period, "agent_id": "bob", "timezone": "UTC"},
        headers=tenant_headers(tenant.slug),
    )
    assert status == 200, bob
    assert (bob["total"], bob["connect_rate"], bob["cost"], bob["avg_mos"]) == (2, 0.0, [], None)
    assert [b["key"] for b in bob["buckets"]] == ["2026-10-05T00:00:00+00:00"]


async def test_stats_refuses_bad_parameters(api_engine: Engine, unix_api: Api) -> None:
    t = (await new_tenant(api_engine.store)).slug
    for params, field in [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"bucket": "week"}, "bucket"),
        (
            {"created_after": "2026-10-05T00:00:00Z", "created_before": "2026-10-04T00:00:00Z"},
            "created_before",
        ),
    ]:
        status, err, _ = await unix_api.call(
            "GET", f"{C2C}/stats", params=params, headers=tenant_headers(t)
        )
        assert status == 422, err
        assert field in str(err["error"]), err
    # an empty tenant: zeros, no breakdowns
    status, empty, _ = await unix_api.call("GET", f"{C2C}/stats", headers=tenant_headers(t))
    assert status == 200
    assert (empty["total"], empty["by_agent"], empty["buckets"], empty["cost"]) == (0, [], [], [])

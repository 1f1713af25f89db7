"""What a new call decides in its own insert, against the real PostgreSQL, under
concurrency: a refused call is one row stored ``rejected`` (never a queued one), two
initiates cannot both pass a per-day attempt limit, and two offers (IVR ring groups and
click-to-calls) never take one agent twice; click-to-calls log their agent's states, and
a busy agent named by ``agent_id`` is refused 409 ``agent_busy``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.app.agent_states import AgentStateService
from engine.daemon import Engine
from engine.domain.agent_state import LoggedState, occupancy
from engine.domain.call import Direction
from engine.domain.routing_rules import RoutingSettings
from engine.store.records import NewSession, Tenant
from tests.support.calls import C2C, CONNECT, initiate_body, move_call
from tests.support.http import Api
from tests.support.metrics import sample
from tests.support.tenants import new_tenant, tenant_headers

API = "/api/v1"


async def _initiate(api: Api, slug: str, **body: Any) -> tuple[int, Any]:
    status, data, _ = await api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(**body), headers=tenant_headers(slug)
    )
    return status, data


@pytest.fixture
async def audited(api_engine: Engine) -> AsyncIterator[Tenant]:
    """A new tenant whose every session row written (insert or update) is noted, with its
    status, in ``guard_audit``: what a reader could ever have seen."""
    tenant = await new_tenant(api_engine.store)
    db = api_engine.store.db
    await db.execute(
        "CREATE TABLE IF NOT EXISTS guard_audit (session_id uuid, op text, status text, "
        "at timestamptz DEFAULT clock_timestamp())"
    )
    await db.execute(
        f"CREATE OR REPLACE FUNCTION guard_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN IF NEW.tenant_id = '{tenant.id}' THEN "
        f"INSERT INTO guard_audit (session_id, op, status) VALUES (NEW.id, TG_OP, NEW.status); "
        f"END IF; RETURN NEW; END $$"
    )
    await db.execute(
        "CREATE TRIGGER guard_audit AFTER INSERT OR UPDATE ON click_to_call_session "
        "FOR EACH ROW EXECUTE FUNCTION guard_audit_row()"
    )
    try:
        yield tenant
    finally:
        await db.execute("DROP TRIGGER guard_audit ON click_to_call_session")
        await db.execute("DROP FUNCTION guard_audit_row()")
        await db.execute("DROP TABLE guard_audit")


async def _audit(engine: Engine, session_id: str) -> list[tuple[str, str]]:
    rows = await engine.store.db.fetch(
        "SELECT op, status FROM guard_audit WHERE session_id = $1 ORDER BY at",
        uuid.UUID(session_id),
    )
    return [(r["op"], r["status"]) for r in rows]


async def test_a_refused_call_is_one_insert_already_rejected_never_a_queued_row(
    api_engine: Engine, unix_api: Api, audited: Tenant
) -> None:
    slug = audited.slug
    number = "+14155550177"
    entries = {"entries": [{"list_type": "blocklist", "number": number}]}
    status, data, _ = await unix_api.call(
        "POST", f"{API}/compliance/lists", json=entries, headers=tenant_headers(slug)
    )
    assert status == 201, data
    door = {"door": "click_to_call"}
    active = sample(api_engine, "ctc_calls_active", **door)
    rejected = sample(api_engine, "ctc_calls_total", status="rejected", **door)
    status, data = await _initiate(unix_api, slug, customer_number=number)
    assert status == 403, data
    refused = data["error"]["details"][0]["session_id"]
    # counted as a call that ended rejected, never as a live one
    assert sample(api_engine, "ctc_calls_active", **door) == active
    assert sample(api_engine, "ctc_calls_total", status="rejected", **door) == rejected + 1
    assert await _audit(api_engine, refused) == [("INSERT", "rejected")]
    # the timeline and its callbacks read as any call's: created (queued), then rejected
    events = await api_engine.store.sessions.events(audited.id, uuid.UUID(refused))
    assert [(e.seq, e.event_type, e.status_from, e.status_to) for e in events] == [
        (1, "session.created", None, "queued"),
        (2, "session.rejected", "queued", "rejected"),
    ]
    session = await api_engine.store.sessions.get(audited.id, uuid.UUID(refused))
    assert session.ended_at is not None
    assert session.version == 2
    # the audit sees what it should: an allowed call is inserted queued
    status, placed = await _initiate(unix_api, slug, customer_number="+14155550178")
    assert status == 202, placed
    assert await _audit(api_engine, placed["id"]) == [("INSERT", "queued")]


async def test_concurrent_initiates_to_one_number_cannot_both_pass_max_attempts(
    api_engine: Engine, unix_api: Api
) -> None:
    slug = (await new_tenant(api_engine.store)).slug
    rule = {"name": "once", "rule_type": "max_attempts", "max_attempts_per_day": 1}
    status, data, _ = await unix_api.call(
        "POST", f"{API}/compliance/rules", json=rule, headers=tenant_headers(slug)
    )
    assert status == 201, data
    number = "+919876543211"
    answers = await asyncio.gather(
        *(
            _initiate(unix_api, slug, customer_number=number, agent_number=f"10{i:02}")
            for i in range(8)
        )
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [202] + [403] * 7, answers
    for status, data in answers:
        if status == 403:
            assert data["error"]["details"][0]["rule"] == "once"
    tenant = await api_engine.store.tenants.by_slug(slug)
    placed = await api_engine.store.db.fetchval(
        "SELECT count(*) FROM click_to_call_session WHERE tenant_id = $1 "
        "AND customer_number = $2 AND status <> 'rejected'",
        tenant.id,
        number,
    )
    assert placed == 1


async def test_concurrent_offers_never_take_one_agent_twice(
    api_engine: Engine, unix_api: Api
) -> None:
    tenant = await new_tenant(api_engine.store)
    store = api_engine.store
    inbound = []
    for _ in range(6):
        session, _ = await store.sessions.create(
            NewSession(
                tenant_id=tenant.id,
                direction=Direction.INBOUND,
                agent_number=None,
                customer_number=None,
                caller_number="100",
                dialed_number="200",
            )
        )
        inbound.append(session.id)
    agents = AgentStateService(store)
    offers = [agents.offered(tenant.id, ["ana"], sid) for sid in inbound]
    calls = [
        _initiate(unix_api, tenant.slug, agent_id="ana", customer_number=f"+1415555020{i}")
        for i in range(6)
    ]
    results = await asyncio.gather(*offers, *calls)
    ivr_won = [taken for taken, _ in results[:6] if taken == ["ana"]]
    c2c = results[6:]
    c2c_won = [data for status, data in c2c if status == 202]
    assert len(ivr_won) + len(c2c_won) == 1, results
    for status, data in c2c:
        if status != 202:
            assert status == 409, data
            assert data["error"]["code"] == "agent_busy"
            assert data["error"]["details"][0]["state"] in ("ringing", "on_call", "wrap_up")
    for taken, kept in results[:6]:
        assert taken == ["ana"] or kept == {"ana": "ringing"}
    rows = await store.db.fetchval(
        "SELECT count(*) FROM agent_activity_log WHERE tenant_id = $1 AND agent_id = 'ana' "
        "AND activity = 'ringing'",
        tenant.id,
    )
    assert rows == 1


async def test_a_click_to_call_logs_its_agents_states_and_a_busy_agent_is_refused(
    api_engine: Engine, unix_api: Api
) -> None:
    tenant = await new_tenant(api_engine.store)
    slug = tenant.slug
    await api_engine.store.routing.save_settings(
        tenant.id, RoutingSettings(time_zone="UTC", wrap_up_s=600)
    )
    status, first = await _initiate(unix_api, slug, agent_id="bo")
    assert status == 202, first
    # ringing: a second call for bo is refused, nothing stored
    status, busy = await _initiate(unix_api, slug, agent_id="bo")
    assert status == 409, busy
    assert busy["error"]["code"] == "agent_busy"
    assert busy["error"]["details"][0] == {
        "field": "agent_id",
        "message": busy["error"]["message"],
        "state": "ringing",
    }
    await move_call(unix_api, slug, first["id"], *CONNECT, "completed")
    await api_engine.agent_calls.idle()
    rows = await api_engine.store.db.fetch(
        "SELECT activity, session_id, details, occurred_at FROM agent_activity_log "
        "WHERE tenant_id = $1 AND agent_id = 'bo' ORDER BY occurred_at, id",
        tenant.id,
    )
    assert [r["activity"] for r in rows] == ["ringing", "on_call", "wrap_up"]
    assert {str(r["session_id"]) for r in rows} == {first["id"]}
    assert all(r["details"]["by"] == "engine" for r in rows)
    # in wrap-up for 600 s: refused again, the state says why
    status, busy = await _initiate(unix_api, slug, agent_id="bo")
    assert status == 409, busy
    assert busy["error"]["details"][0]["state"] == "wrap_up", busy
    # occupancy from the log alone counts the call
    start = rows[0]["occurred_at"] - timedelta(seconds=1)
    log = [LoggedState(r["activity"], r["occurred_at"], r["details"], True) for r in rows]
    share = occupancy(log, start, datetime.now(UTC), wrap_up=timedelta(seconds=600))
    assert share is not None
    assert share > 0.5
    # an agent named only by its number is logged too, and never refused
    for _ in range(2):
        status, placed = await _initiate(unix_api, slug, agent_number="1777")
        assert status == 202, placed
    # the first found the number free (ringing logged), the second found it ringing
    ringing = await api_engine.store.db.fetch(
        "SELECT activity FROM agent_activity_log WHERE tenant_id = $1 AND agent_id = '1777'",
        tenant.id,
    )
    assert [r["activity"] for r in ringing] == ["ringing"]

"""Billing over PostgreSQL: rate cards over the API, a line per charged leg when a call
ends, rerate (idempotent, invoiced lines kept), the monthly export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp

from engine.daemon import Engine
from engine.store.records import Tenant
from tests.support.calls import C2C, CONNECT, initiate_body, move_call
from tests.support.http import Api
from tests.support.tenants import new_tenant, tenant_headers

BILLING = "/api/v1/billing"
CSV = {"Content-Type": "text/csv"}
T0 = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
# cards effective long before the seeded calls (a card imported without a date starts now)
ANY_60_EUR = "prefix,rate_per_minute_minor,currency,effective_from\n+,60,EUR,2026-01-01T00:00Z\n"


async def import_csv(api: Api, slug: str, text: str) -> tuple[int, object]:
    status, body, _ = await api.call(
        "POST", f"{BILLING}/rates", data=text.encode(), headers=tenant_headers(slug, **CSV)
    )
    return status, body


async def seed_session(
    engine: Engine,
    tenant: Tenant,
    *,
    agent: str = "+441000000001",
    customer: str = "+14155550100",
    answered: datetime | None = T0,
    connected: datetime | None = None,
    ended: datetime | None = None,
    estimated: bool = False,
) -> uuid.UUID:
    """An ended click-to-call row with the given times, as the journal would leave it."""
    sid = uuid.uuid4()
    status = "completed" if connected else ("canceled" if answered else "no_answer")
    await engine.store.db.execute(
        "INSERT INTO click_to_call_session (id, tenant_id, status, agent_number, "
        "customer_number, created_at, dialing_agent_at, agent_answered_at, connected_at, "
        "ended_at, end_estimated) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10)",
        sid,
        tenant.id,
        status,
        agent,
        customer,
        T0 - timedelta(seconds=5),
        answered,
        connected,
        ended,
        estimated,
    )
    return sid


async def test_a_bridged_call_gets_a_line_per_leg_when_it_ends(
    api_engine: Engine, unix_api: Api
) -> None:
    tenant = await new_tenant(api_engine.store)
    t = tenant.slug
    status, body = await import_csv(
        unix_api,
        t,
        "prefix,rate_per_minute_minor,currency,pulse,connection_fee_minor\n"
        "+1,120,USD,60/60,7\n+1415,0.5,USD,1/1,0\n",
    )
    assert (status, body) == (201, {"imported": 2})
    headers = tenant_headers(t)
    status, body, _ = await unix_api.call(
        "POST", f"{C2C}/initiate", json=initiate_body(), headers=headers
    )
    sid = body["id"]
    await move_call(unix_api, t, sid, *CONNECT)
    _, lines, _ = await unix_api.call("GET", f"{C2C}/sessions/{sid}/billing", headers=headers)
    assert lines == {"items": []}  # live: nothing billed yet
    await move_call(unix_api, t, sid, "completed")
    await api_engine.billing.idle()
    status, lines, _ = await unix_api.call("GET", f"{C2C}/sessions/{sid}/billing", headers=headers)
    assert status == 200, lines
    agent, customer = lines["items"]
    # the agent dialled as endpoint 1001: a zero line saying why
    assert (agent["leg"], agent["amount_minor"], agent["currency"]) == ("agent", 0, "XXX")
    assert "not a phone number" in agent["unrated_reason"]
    # +14155550100 under the +1415 card: 1/1 pulse, 0.5 per minute, a second or two -> 1
    assert customer["leg"] == "customer"
    assert customer["matched_prefix"] == "+1415"
    assert customer["currency"] == "USD"
    assert customer["unrated_reason"] is None
    assert customer["billable_seconds"] == max(1, customer["duration_s"])
    assert customer["amount_minor"] == 1
    # another tenant does not see them
    other = await new_tenant(api_engine.store)
    status, _, _ = await unix_api.call(
        "GET", f"{C2C}/sessions/{sid}/billing", headers=tenant_headers(other.slug)
    )
    assert status == 404


async def test_rate_cards_list_and_bad_imports(api_engine: Engine, unix_api: Api) -> None:
    t = (await new_tenant(api_engine.store)).slug
    status, err = await import_csv(
        unix_api, t, "prefix,rate_per_minute_minor,currency\n+44,1,GBP\n+44x,1,GBP\n"
    )
    assert status == 422
    assert err["error"]["details"][0]["field"] == "line 3: prefix"  # type: ignore[index]
    status, err = await import_csv(
        unix_api, t, "prefix,rate_per_minute_minor,currency,provider\n+44,1,GBP,nope\n"
    )
    assert status == 422
    assert "no provider 'nope'" in err["error"]["message"]
    status, _, _ = await unix_api.call(
        "POST", f"{BILLING}/rates", json={"x": 1}, headers=tenant_headers(t)
    )
    assert status == 415
    _, listed, _ = await unix_api.call("GET", f"{BILLING}/rates", headers=tenant_headers(t))
    assert listed == {"items": []}  # all or none
    await import_csv(
        unix_api,
        t,
        "prefix,rate_per_minute_minor,currency,pulse,effective_from,effective_to\n"
        "+44,1.5,GBP,30/6,2026-01-01T00:00:00Z,2026-06-01T00:00:00Z\n"
        "+44,2,GBP,30/6,2026-06-01T00:00:00Z,\n",
    )
    _, listed, _ = await unix_api.call("GET", f"{BILLING}/rates", headers=tenant_headers(t))
    assert [(r["rate_per_minute_minor"], r["rate_scale"], r["pulse"]) for r in listed["items"]] == [
        (15, 1, "30/6"),
        (2, 0, "30/6"),
    ]
    _, now, _ = await unix_api.call(
        "GET", f"{BILLING}/rates", params={"at": "2026-03-01T00:00:00Z"}, headers=tenant_headers(t)
    )
    assert [r["rate_per_minute_minor"] for r in now["items"]] == [15]


async def test_rerate_is_idempotent_and_keeps_invoiced_lines(api_engine: Engine) -> None:
    store, app = api_engine.store, api_engine.use_cases
    tenant = await new_tenant(store)
    await app.billing.import_rates(tenant, ANY_60_EUR)
    # a bridged call: agent 100 s (1:40 -> 2 min at 60/60), customer 90 s (2 min)
    bridged = await seed_session(
        api_engine,
        tenant,
        connected=T0 + timedelta(seconds=10),
        ended=T0 + timedelta(seconds=100),
    )
    # the agent answered, the customer did not: one line
    agent_only = await seed_session(api_engine, tenant, ended=T0 + timedelta(seconds=20))
    # nobody answered: no line
    await seed_session(api_engine, tenant, answered=None, ended=T0 + timedelta(seconds=30))
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=1)
    first = await app.billing.rerate(since, until, tenant=tenant)
    assert first.sessions == 2
    assert (first.lines.inserted, first.lines.changed, first.lines.unchanged) == (3, 0, 0)
    again = await app.billing.rerate(since, until, tenant=tenant)
    assert (again.lines.inserted, again.lines.changed, again.lines.unchanged) == (0, 0, 3)
    lines = await store.billing.lines(tenant.id, bridged)
    assert [(x.leg, x.duration_s, x.billable_seconds, x.amount_minor) for x in lines] == [
        ("agent", 100, 120, 120),
        ("customer", 90, 120, 120),
    ]
    # a rate change (a longer prefix for the customer's number) and an invoiced line
    await store.db.execute(
        "UPDATE call_usage_billing SET invoice_ref = 'INV-1' WHERE session_id = $1", agent_only
    )
    await app.billing.import_rates(
        tenant,
        "prefix,rate_per_minute_minor,currency,pulse,effective_from\n+1415,30,EUR,1/1,2026-01-01T00:00Z\n",
    )
    changed = await app.billing.rerate(since, until, tenant=tenant)
    assert (changed.lines.changed, changed.lines.unchanged, changed.lines.invoiced) == (1, 1, 1)
    customer = (await store.billing.lines(tenant.id, bridged))[1]
    assert (customer.matched_prefix, customer.billable_seconds, customer.amount_minor) == (
        "+1415",
        90,
        45,
    )
    (kept,) = await store.billing.lines(tenant.id, agent_only)
    assert (kept.amount_minor, kept.invoice_ref) == (60, "INV-1")  # 20 s at 60/60: 1 min

    # the export: the month's lines, oldest first, with the hand-computed amounts
    text = await app.billing.export(tenant, "2026-10")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["leg"], r["amount_minor"], r["currency"]) for r in rows] == [
        ("agent", "60", "EUR"),
        ("agent", "120", "EUR"),
        ("customer", "45", "EUR"),
    ]
    assert rows[0]["invoice_ref"] == "INV-1"
    assert (await app.billing.export(tenant, "2026-11")).count("\n") == 1  # the header only


async def test_export_over_the_api(api_engine: Engine) -> None:
    tenant = await new_tenant(api_engine.store)
    app = api_engine.use_cases
    await app.billing.import_rates(tenant, ANY_60_EUR)
    await seed_session(api_engine, tenant, ended=T0 + timedelta(seconds=59))
    # an end noticed after a restart: its line says the amount is an upper bound
    await seed_session(api_engine, tenant, ended=T0 + timedelta(seconds=61), estimated=True)
    await app.billing.rerate(T0, T0 + timedelta(days=1), tenant=tenant)
    port = api_engine.api.tcp_port
    token = (await api_engine.store.tenants.issue_token(tenant.slug, "export")).token
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}{BILLING}/export"
        auth = {"Authorization": f"Bearer {token}"}
        async with session.get(url, params={"month": "2026-10"}, headers=auth) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/csv"
            text = await resp.text()
        async with session.get(url, params={"month": "2026-13"}, headers=auth) as resp:
            assert resp.status == 422
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["leg"], r["duration_s"], r["amount_minor"], r["end_estimated"]) for r in rows] == [
        ("agent", "59", "60", "false"),
        ("agent", "61", "120", "true"),
    ]


async def test_an_engine_charges_its_own_node_s_calls_not_another_node_s(
    api_engine: Engine, unix_api: Api, migrated_db: str
) -> None:
    """Every engine hears every call's end (the event feed); the node that owns a call
    charges it, a tool (no node) may charge any."""
    from engine.app.billing import BillingService
    from engine.store.database import Database
    from engine.store.repositories import Store

    tenant = await new_tenant(api_engine.store)
    assert (await import_csv(unix_api, tenant.slug, ANY_60_EUR))[0] == 201
    end = T0 + timedelta(seconds=30)
    sid = await seed_session(api_engine, tenant, connected=T0 + timedelta(seconds=10), ended=end)
    await api_engine.store.db.execute(
        "UPDATE click_to_call_session SET node = 'elsewhere' WHERE id = $1", sid
    )
    assert await api_engine.use_cases.billing.charge_session(tenant.id, sid) == []
    async with Database(migrated_db, min_size=1, max_size=1) as tool_db:
        lines = await BillingService(Store.over(tool_db)).charge_session(tenant.id, sid)
    assert len(lines) == 2


async def test_an_inbound_call_gets_a_caller_line_by_its_did_and_a_target_line(
    api_engine: Engine,
) -> None:
    store, app = api_engine.store, api_engine.use_cases
    tenant = await new_tenant(store)
    await app.billing.import_rates(
        tenant,
        "prefix,rate_per_minute_minor,currency,pulse,direction,effective_from\n"
        "+1800,12,USD,60/60,inbound,2026-01-01T00:00Z\n"
        "+1,60,USD,1/1,outbound,2026-01-01T00:00Z\n",
    )

    async def inbound(dialed: str, *, transfer_to: str | None) -> uuid.UUID:
        sid = uuid.uuid4()
        await store.db.execute(
            "INSERT INTO click_to_call_session (id, tenant_id, direction, status, "
            "agent_number, customer_number, dialed_number, created_at, connected_at, "
            "ended_at) VALUES ($1, $2, 'inbound', 'completed', '', '+14155550100', $3, $4, "
            "$4, $5)",
            sid,
            tenant.id,
            dialed,
            T0,
            T0 + timedelta(seconds=95),  # the IVR answered at T0: 95 s on the caller's leg
        )
        if transfer_to is not None:  # answered 35 s in: 60 s on the target's leg
            await store.db.execute(
                "INSERT INTO call_transfer (tenant_id, session_id, transfer_type, "
                "initiated_by, from_leg, target_type, target, state, requested_at, "
                "answered_at, completed_at) VALUES ($1, $2, 'blind', 'ivr', 'caller', "
                "'number', $3, 'completed', $4, $5, $5)",
                tenant.id,
                sid,
                transfer_to,
                T0 + timedelta(seconds=30),
                T0 + timedelta(seconds=35),
            )
        return sid

    toll_free = await inbound("+18005550199", transfer_to="+14155550111")
    extension = await inbound("5551000", transfer_to=None)
    lines = await app.billing.charge_session(tenant.id, toll_free)
    assert [(x.leg.leg, x.leg.direction.value, x.duration_s, x.amount_minor) for x in lines] == [
        ("caller", "inbound", 95, 24),  # 2 min at 12
        ("target", "outbound", 60, 60),  # 60 s at 60/min, 1/1
    ]
    (unrated,) = await app.billing.charge_session(tenant.id, extension)
    assert (unrated.leg.leg, unrated.amount_minor, unrated.currency) == ("caller", 0, "XXX")
    assert "'5551000' is not a phone number" in (unrated.unrated_reason or "")
    # the rerate finds the same lines (inbound calls are charged calls) and changes nothing
    report = await app.billing.rerate(T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert report.sessions >= 2
    mine = await store.billing.lines(tenant.id, toll_free)
    assert [(x.leg, x.amount_minor, x.destination_number) for x in mine] == [
        ("caller", 24, "+18005550199"),
        ("target", 60, "+14155550111"),
    ]
    again = await app.billing.rerate(T0 - timedelta(days=1), T0 + timedelta(days=1), tenant=tenant)
    assert (again.lines.inserted, again.lines.changed, again.lines.unchanged) == (0, 0, 3)


async def test_rate_cards_are_corrected_changed_from_a_date_and_ended(
    api_engine: Engine, unix_api: Api
) -> None:
    store, app = api_engine.store, api_engine.use_cases
    tenant = await new_tenant(store)
    t = tenant.slug
    assert (await import_csv(unix_api, t, ANY_60_EUR))[0] == 201
    status, body, _ = await unix_api.call("GET", f"{BILLING}/rates", headers=tenant_headers(t))
    assert status == 200
    assert isinstance(body, dict)
    (card,) = body["items"]
    url = f"{BILLING}/rates/{card['id']}"
    # two calls answered before and after 2026-10-05 12:00: 100 s each at 60/60
    early = await seed_session(api_engine, tenant, ended=T0 + timedelta(seconds=100))
    late_start = T0 + timedelta(hours=5)
    late = await seed_session(
        api_engine, tenant, answered=late_start, ended=late_start + timedelta(seconds=100)
    )
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=1)
    await app.billing.rerate(since, until, tenant=tenant)

    async def amounts() -> tuple[int, int]:
        (a,) = await store.billing.lines(tenant.id, early)
        (b,) = await store.billing.lines(tenant.id, late)
        return a.amount_minor, b.amount_minor

    assert await amounts() == (120, 120)

    # bad input names the field
    for patch, field in (
        ({"pulse": "0/0"}, "pulse"),
        ({"currency": "eur"}, "currency"),
        ({"rate_per_minute_minor": 0.0000001}, "rate_per_minute_minor"),
        ({"effective_to": "2025-01-01T00:00:00Z"}, "effective_to"),
        ({}, "changes"),
        ({"rate_per_minute_minor": 1, "as_of": "2020-01-01T00:00:00Z"}, "as_of"),
        (
            {"effective_from": "2026-03-01T00:00:00Z", "as_of": "2026-10-05T12:00:00Z"},
            "effective_from",
        ),
    ):
        status, body, _ = await unix_api.call("PATCH", url, json=patch, headers=tenant_headers(t))
        assert status == 422, (patch, body)
        assert isinstance(body, dict)
        assert body["error"]["details"][0]["field"] == field, (patch, body)
    status, body, _ = await unix_api.call(
        "PATCH", url, json={"destination_prefix": "+44"}, headers=tenant_headers(t)
    )
    assert status == 422, body  # not a field of the patch: what the card matches stays
    status, _, _ = await unix_api.call(
        "PATCH", f"{BILLING}/rates/{uuid.uuid4()}", json={"priority": 1}, headers=tenant_headers(t)
    )
    assert status == 404

    # a change from 12:00: the card ends then, a new one (30 a minute, 1/1) starts
    status, body, _ = await unix_api.call(
        "PATCH",
        url,
        json={"rate_per_minute_minor": 30, "pulse": "1/1", "as_of": "2026-10-05T12:00:00Z"},
        headers=tenant_headers(t),
    )
    assert status == 200, body
    assert isinstance(body, dict)
    assert body["id"] != card["id"]
    assert (body["rate_per_minute_minor"], body["pulse"]) == (30, "1/1")
    assert body["effective_from"] == "2026-10-05T12:00:00Z"
    old = await app.billing.rate(tenant, uuid.UUID(card["id"]))
    assert old.effective_to == datetime(2026, 10, 5, 12, tzinfo=UTC)
    # rerate: the early call keeps the old card, the late one takes the new; again: nothing
    first = await app.billing.rerate(since, until, tenant=tenant)
    assert (first.lines.changed, first.lines.unchanged) == (1, 1)
    assert await amounts() == (120, 50)  # 100 s at 30/min = 50
    again = await app.billing.rerate(since, until, tenant=tenant)
    assert (again.lines.changed, again.lines.unchanged) == (0, 2)

    # a correction in place (the new card's fee), then rerate charges it
    new_url = f"{BILLING}/rates/{body['id']}"
    status, body, _ = await unix_api.call(
        "PATCH",
        new_url,
        json={"connection_fee_minor": 5, "name": "fixed"},
        headers=tenant_headers(t),
    )
    assert status == 200, body
    assert isinstance(body, dict)
    assert (body["connection_fee_minor"], body["name"]) == (5, "fixed")
    await app.billing.rerate(since, until, tenant=tenant)
    assert await amounts() == (120, 55)

    # ended before the late call: it is unrated on the next rerate; ending again is a no-op
    status, body, _ = await unix_api.call(
        "DELETE", f"{new_url}?at=2026-10-05T13:00:00Z", headers=tenant_headers(t)
    )
    assert status == 200, body
    assert isinstance(body, dict)
    assert body["effective_to"] == "2026-10-05T13:00:00Z"
    status, body, _ = await unix_api.call(
        "DELETE", f"{new_url}?at=2026-10-06T00:00:00Z", headers=tenant_headers(t)
    )
    assert status == 200
    assert isinstance(body, dict)
    assert body["effective_to"] == "2026-10-05T13:00:00Z"
    status, body, _ = await unix_api.call(
        "DELETE", f"{new_url}?at=2026-01-01T00:00:00Z", headers=tenant_headers(t)
    )
    assert status == 422
    assert isinstance(body, dict)
    assert body["error"]["details"][0]["field"] == "at"
    # the late call (answered 14:00) has no card in effect any more: a zero line
    changed = await app.billing.rerate(since, until, tenant=tenant)
    assert (changed.lines.changed, changed.lines.unchanged) == (1, 1)
    (unrated,) = await store.billing.lines(tenant.id, late)
    assert (unrated.amount_minor, unrated.currency) == (0, "XXX")
    again = await app.billing.rerate(since, until, tenant=tenant)
    assert (again.lines.changed, again.lines.unchanged) == (0, 2)

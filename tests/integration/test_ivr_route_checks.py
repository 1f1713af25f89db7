"""What an IVR transfer decides before anything rings, against the real PostgreSQL: a
transfer to routing rule ``*`` is routed by the rules' conditions (the dialled number, the
schedule in the tenant's zone), and every number it would ring on the trunk passes the
pre-dial check and the caller-ID choice of every outbound leg (refused: never rung)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.app.ivr_calls import IvrCallRecord
from engine.daemon import Engine
from engine.domain.ivr import BY_CONDITIONS, Transfer, TransferTargetType
from engine.ivr_yaml import load_menus
from engine.store.records import CallEvent, Tenant
from tests.support.http import Api
from tests.support.tenants import new_tenant, tenant_headers

API = "/api/v1"
DID = "5551000"
MENUS = """\
menus:
  main:
    options:
      4: {action: transfer, target_type: routing_rule, target: "*"}
      5: {action: transfer, target_type: number, target: "+14155550199"}
"""


def _window(start: timedelta, end: timedelta) -> dict[str, Any]:
    """A schedule in UTC, every day, from now + ``start`` to now + ``end``."""
    now = datetime.now(UTC)
    return {
        "time_zone": "UTC",
        "windows": [
            {
                "days": [1, 2, 3, 4, 5, 6, 7],
                "start": (now + start).strftime("%H:%M"),
                "end": (now + end).strftime("%H:%M"),
            }
        ],
    }


async def _put(api: Api, slug: str, path: str, body: Any, method: str = "PUT") -> Any:
    status, out, _ = await api.call(
        method, f"{API}/{path}", json=body, headers=tenant_headers(slug)
    )
    assert status in (200, 201), out
    return out


async def _tenant(engine: Engine, api: Api) -> Tenant:
    tenant = await new_tenant(engine.store)
    await engine.store.ivr.save(tenant.id, load_menus(MENUS))
    return tenant


async def _record(engine: Engine, tenant: Tenant, dialed: str) -> IvrCallRecord:
    record = IvrCallRecord(engine.store, f"chan-{uuid.uuid4().hex[:8]}", "ari")
    await record.store_session(
        engine.store.ivr.book,
        tenant_slug=tenant.slug,
        menu="main",
        caller="+4930901820",
        dialed=dialed,
    )
    return record


async def _events(engine: Engine, record: IvrCallRecord, kind: str) -> list[dict[str, Any]]:
    await engine.store.journal.flush()
    session = record.stored_session()
    events: list[CallEvent] = await engine.store.sessions.events(session.tenant_id, session.id)
    return [dict(e.payload) for e in events if e.event_type == kind]


ROUTE = Transfer(TransferTargetType.ROUTING_RULE, BY_CONDITIONS, menu="main", key="4")


async def test_a_transfer_to_star_is_routed_by_the_dialled_number_and_the_schedule(
    api_engine: Engine, unix_api: Api
) -> None:
    tenant = await _tenant(api_engine, unix_api)
    slug = tenant.slug
    hours = _window(timedelta(hours=-1), timedelta(hours=1))
    sales = {
        "priority": 10,
        "match": {"dialed_number": [DID]},
        "schedule": hours,
        "strategy": "ring_agent",
        "target": "ana",
    }
    night = {"priority": 20, "match": {"dialed_number": [DID]}, "strategy": "ring_agent"}
    other = {"priority": 5, "match": {"dialed_number": ["5552000"]}, "strategy": "ring_agent"}
    await _put(unix_api, slug, "routing-rules/sales", sales)
    await _put(unix_api, slug, "routing-rules/night", {**night, "target": "bo"})
    await _put(unix_api, slug, "routing-rules/other", {**other, "target": "cy"})

    record = await _record(api_engine, tenant, DID)
    plan, _ = await record.transfer_plan(ROUTE, 20)
    assert [a.targets for a in plan.attempts] == [("ana",)]
    [decided] = await _events(api_engine, record, "routing.decided")
    assert decided["rule"] == "sales"
    assert decided["selected_by"] == "conditions"
    assert decided["reason"].startswith("rule 'sales' matched: ")
    assert DID in decided["reason"]

    # outside its window, the next rule for the number decides
    later = _window(timedelta(hours=2), timedelta(hours=3))
    await _put(unix_api, slug, "routing-rules/sales", {**sales, "schedule": later})
    record = await _record(api_engine, tenant, DID)
    plan, _ = await record.transfer_plan(ROUTE, 20)
    assert [a.targets for a in plan.attempts] == [("bo",)]
    [decided] = await _events(api_engine, record, "routing.decided")
    assert decided["rule"] == "night"

    # a number no rule is for: nothing rings, the event says why
    record = await _record(api_engine, tenant, "5559999")
    plan, _ = await record.transfer_plan(ROUTE, 20)
    assert plan.attempts == ()
    assert plan.reason == "no routing rule applies"
    [decided] = await _events(api_engine, record, "routing.decided")
    assert decided["rule"] is None
    assert set(decided["considered"]) == {"sales", "night", "other"}


async def test_ivr_transfers_to_numbers_pass_the_pre_dial_check_and_the_caller_id_choice(
    api_engine: Engine, unix_api: Api
) -> None:
    tenant = await _tenant(api_engine, unix_api)
    slug = tenant.slug
    blocked = {"entries": [{"list_type": "blocklist", "number": "+14155550199"}]}
    await _put(unix_api, slug, "compliance/lists", blocked, method="POST")
    profile = {
        "name": "local",
        "caller_id": "+12125550199",
        "rotation": "local_presence",
        "pool": ["+442079460111", "+14155550122"],
        "is_default": True,
    }
    await _put(unix_api, slug, "caller-id-profiles", profile, method="POST")

    # refused: nothing to ring, an event names the list, the caller hears the failure
    record = await _record(api_engine, tenant, DID)
    number = Transfer(TransferTargetType.NUMBER, "+14155550199", menu="main", key="5")
    plan, outside = await record.transfer_plan(number, 20)
    assert outside is True
    assert plan.attempts == ()
    assert plan.reason is not None
    [refused] = await _events(api_engine, record, "ivr.transfer_rejected")
    assert refused["rule"] == "blocklist"
    assert refused["target"] == "+14155550199"

    # national, in the engine's region for numbers without +: E.164, the local caller ID
    record = await _record(api_engine, tenant, DID)
    national = Transfer(TransferTargetType.NUMBER, "020 7946 0018", menu="main", key="5")
    plan, _ = await record.transfer_plan(national, 20, default_region="GB")
    assert [a.targets for a in plan.attempts] == [("+442079460018",)]
    assert record.outside_caller_id == "+442079460111"
    [chosen] = await _events(api_engine, record, "caller_id.chosen")
    assert chosen["caller_id"] == "+442079460111"

    # not a number at all: refused the same way, never dialled
    record = await _record(api_engine, tenant, DID)
    plan, _ = await record.transfer_plan(
        Transfer(TransferTargetType.NUMBER, "020 7946 0018", menu="main", key="5"), 20
    )
    assert plan.attempts == ()
    [refused] = await _events(api_engine, record, "ivr.transfer_rejected")
    assert refused["rule_type"] == "invalid_number"

    # a routing rule's E.164 member is checked too: the blocked one is left out
    group = {
        "priority": 1,
        "match": {"dialed_number": [DID]},
        "strategy": "ring_group_simultaneous",
        "members": ["+14155550199", "+14155550188", "ana"],
    }
    await _put(unix_api, slug, "routing-rules/outside", group)
    record = await _record(api_engine, tenant, DID)
    plan, _ = await record.transfer_plan(ROUTE, 20)
    assert [a.targets for a in plan.attempts] == [("+14155550188", "ana")]
    [refused] = await _events(api_engine, record, "ivr.transfer_rejected")
    assert refused["target"] == "+14155550199"

"""Routing rules from PostgreSQL (engine/store/routing.py), with the offer history the
round-robin and least-recent plans read from ``call_transfer`` rows."""

from __future__ import annotations

import uuid
from typing import Any

from engine.daemon import Engine
from engine.domain.ivr import TransferTargetType
from engine.domain.routing import Attempt, Strategy, plan_route
from engine.domain.transfer import TransferState, TransferType
from engine.store.records import NewTransfer
from tests.support.calls import session_in
from tests.support.http import Api


async def _rule(engine: Engine, tenant_id: uuid.UUID, name: str, **cols: Any) -> uuid.UUID:
    fields = {"match_type": "skill", "match_value": name, **cols}
    names = ", ".join(fields)
    params = ", ".join(f"${i + 3}" for i in range(len(fields)))
    rule_id: uuid.UUID = await engine.store.db.fetchval(
        f"INSERT INTO call_routing_rule (tenant_id, name, {names}) "
        f"VALUES ($1, $2, {params}) RETURNING id",
        tenant_id,
        name,
        *fields.values(),
    )
    return rule_id


async def _offer(
    engine: Engine, tenant_id: uuid.UUID, session_id: uuid.UUID, rule_id: uuid.UUID, member: str
) -> None:
    row = await engine.store.transfers.create(
        NewTransfer(
            tenant_id=tenant_id,
            session_id=session_id,
            transfer_type=TransferType.BLIND,
            from_leg="caller",
            target_type=TransferTargetType.ROUTING_RULE,
            target=member,
            target_channel_id=None,
            initiated_by="ivr",
            routing_rule_id=rule_id,
        )
    )
    assert row.routing_rule_id == rule_id
    await engine.store.transfers.update(row.id, TransferState.BUSY, hangup_cause=17)


async def test_rule_with_offer_history_and_its_fallback_chain(
    api_engine: Engine, unix_api: Api
) -> None:
    slug, sid = await session_in(api_engine.store, unix_api)
    tenant = await api_engine.store.tenants.by_slug(slug)
    session_id = uuid.UUID(sid)
    routing = api_engine.store.routing
    last = await _rule(api_engine, tenant.id, "last", strategy="ring_agent", target="operator")
    rr = await _rule(
        api_engine,
        tenant.id,
        "support",
        strategy="ring_group_round_robin",
        members=["agent3", "agent4", "agent5"],
        ring_timeout_s=7,
        fallback_rule_id=last,
    )
    lr = await _rule(
        api_engine, tenant.id, "sales", strategy="least_recent", members=["a", "b", "c"]
    )

    fresh = await routing.get(tenant.id, rr)
    assert fresh is not None
    assert (fresh.name, fresh.strategy, fresh.members) == (
        "support",
        Strategy.RING_GROUP_ROUND_ROBIN,
        ("agent3", "agent4", "agent5"),
    )
    assert (fresh.ring_timeout_s, fresh.fallback_rule_id, fresh.offers) == (7, last, 0)
    assert fresh.last_offered == {}

    # two earlier offers by the round robin: the next transfer starts at the third member
    for member in ("agent3", "agent4"):
        await _offer(api_engine, tenant.id, session_id, rr, member)
    # least recent: "c" offered first, then "a"; "b" never
    for member in ("c", "a"):
        await _offer(api_engine, tenant.id, session_id, lr, member)

    first, rules = await routing.chain(tenant.id, "support")
    assert first == rr
    assert set(rules) == {rr, last}
    assert rules[rr].offers == 2
    assert set(rules[rr].last_offered) == {"agent3", "agent4"}
    plan = plan_route(rules, rr)
    assert plan.attempts == (
        Attempt(rr, ("agent5",), 7),
        Attempt(rr, ("agent3",), 7),
        Attempt(rr, ("agent4",), 7),
        Attempt(last, ("operator",), 30),
    )

    sales = await routing.find(tenant.id, str(lr))  # by id as well as by name
    assert sales is not None
    assert sales.name == "sales"
    assert sales.last_offered["c"] < sales.last_offered["a"]
    assert [a.targets for a in plan_route({lr: sales}, lr).attempts] == [("b",), ("c",), ("a",)]


async def test_menu_rule_cycles_and_tenancy(api_engine: Engine, unix_api: Api) -> None:
    slug, _ = await session_in(api_engine.store, unix_api)
    tenant = await api_engine.store.tenants.by_slug(slug)
    other_slug, _ = await session_in(api_engine.store, unix_api)
    other = await api_engine.store.tenants.by_slug(other_slug)
    menu_id = await api_engine.store.db.fetchval(
        "INSERT INTO ivr_menu (tenant_id, name) VALUES ($1, 'after-hours') RETURNING id",
        tenant.id,
    )
    to_menu = await _rule(api_engine, tenant.id, "closed", strategy="ivr_menu", ivr_menu_id=menu_id)
    rule = await api_engine.store.routing.get(tenant.id, to_menu)
    assert rule is not None
    assert rule.ivr_menu == "after-hours"
    assert plan_route({to_menu: rule}, to_menu).menu == "after-hours"

    # a -> b -> a: each rule is loaded once
    a = await _rule(api_engine, tenant.id, "a", strategy="ring_agent", target="agent1")
    b = await _rule(
        api_engine, tenant.id, "b", strategy="ring_agent", target="agent2", fallback_rule_id=a
    )
    await api_engine.store.db.execute(
        "UPDATE call_routing_rule SET fallback_rule_id = $2 WHERE id = $1", a, b
    )
    first, rules = await api_engine.store.routing.chain(tenant.id, "a")
    assert first == a
    assert set(rules) == {a, b}
    assert [x.targets for x in plan_route(rules, a).attempts] == [("agent1",), ("agent2",)]

    # another tenant sees none of them
    assert await api_engine.store.routing.get(other.id, a) is None
    assert await api_engine.store.routing.chain(other.id, "a") == (None, {})
    assert await api_engine.store.routing.find(tenant.id, "nope") is None

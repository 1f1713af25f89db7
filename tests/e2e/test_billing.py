"""Billing end to end: a bridged click-to-call on the sandbox Asterisk (SIPp phones) gets
a billing line per leg when it ends, from each leg's own answer to the call's end."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from engine.daemon import Engine
from engine.devtools.sandbox import Sandbox
from tests.e2e.engine_fixtures import AGENT_PORT, CUSTOMER, CUSTOMER_PORT, CallWatcher, initiate
from tests.e2e.helpers import SippPhone

pytestmark = pytest.mark.e2e

# 60 minor units a minute, per second (1/1): a second costs 1, plus a connection fee of 5
RATES = (
    "prefix,rate_per_minute_minor,currency,pulse,connection_fee_minor,effective_from\n"
    "+1,600,USD,60/60,0,2020-01-01T00:00:00Z\n"
    "+1415,60,USD,1/1,5,2020-01-01T00:00:00Z\n"
)


async def test_a_bridged_call_gets_a_billing_line_per_leg(
    c2c_engine: Engine, sandbox: Sandbox, sipp_phone: Callable[..., SippPhone]
) -> None:
    app = c2c_engine.use_cases
    tenant = await app.tenants.by_slug("default")
    await app.billing.import_rates(tenant, RATES, source="e2e-rates.csv")
    watcher = CallWatcher(c2c_engine)
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT),
        sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=2000) as customer,
    ):
        body = await initiate(c2c_engine)
        watcher.session_id = uuid.UUID(body["id"])
        await watcher.until("connected")
        done = await watcher.until("completed", "failed", "canceled")
        assert done.status_to == "completed", watcher.trail()
        assert await customer.wait_async(30) == 0, customer.report()
    await c2c_engine.billing.idle()  # the recorder heard the end: its lines are written
    session = await watcher.session()
    agent, cust = await c2c_engine.store.billing.lines(tenant.id, session.id)
    assert session.agent_answered_at
    assert session.connected_at
    assert session.ended_at

    # the agent leg: from the agent's answer to the end; agent1 is a PBX endpoint, which no
    # rate card can match: a zero line that says so
    assert agent.leg == "agent"
    assert agent.destination_number == "agent1"
    talked = (session.ended_at - session.agent_answered_at).total_seconds()
    assert agent.duration_s == -int(-talked // 1)  # started seconds
    assert (agent.amount_minor, agent.currency, agent.rate_config_id) == (0, "XXX", None)
    assert agent.unrated_reason
    assert "not a phone number" in agent.unrated_reason

    # the customer leg: from the customer's answer (~2 s of talk), under the longest prefix
    assert cust.leg == "customer"
    assert cust.destination_number == CUSTOMER
    talked = (session.ended_at - session.connected_at).total_seconds()
    assert cust.duration_s == -int(-talked // 1)
    assert 1 <= cust.duration_s < agent.duration_s + 1
    assert cust.matched_prefix == "+1415"
    assert cust.currency == "USD"
    assert cust.billable_seconds == cust.duration_s  # 1/1
    assert cust.amount_minor == cust.duration_s + 5  # a second a unit, plus the fee
    assert cust.billed_at == session.ended_at
    assert cust.provider_id == session.provider_id

"""Inbound calls routed by the routing rules' conditions, on the sandbox with SIPp phones.

Menu "main"'s key 4 transfers to routing rule ``*``: no rule named, the tenant's first rule
(by priority) whose conditions hold decides. Two rules are for the DID the caller dials:
``hours`` (its schedule: the current hour) rings agent3, ``after`` rings agent4. In the
window agent3 answers; with the window moved away, the same call reaches agent4. The
decision is a ``routing.decided`` event naming the rule and why.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.app.agent_states import AgentStateService
from engine.app.routing_rules import RoutingRuleService
from engine.daemon import Engine
from engine.devtools.sipp import SippPhone
from engine.ivr_yaml import load_menus
from tests.e2e.engine_fixtures import completed_ivr_call
from tests.e2e.test_dtmf_caller import dtmf_caller
from tests.e2e.test_ivr import transfer_rows
from tests.e2e.test_ivr_routing import MENUS

pytestmark = pytest.mark.e2e

DID = "5551000"  # [from-caller] sends it to Stasis(ctc,ivr,main)


def _schedule(start: timedelta, end: timedelta) -> dict[str, Any]:
    now = datetime.now(UTC)
    window = {
        "days": [1, 2, 3, 4, 5, 6, 7],
        "start": (now + start).strftime("%H:%M"),
        "end": (now + end).strftime("%H:%M"),
    }
    return {"time_zone": "UTC", "windows": [window]}


async def _reaches(
    engine: Engine,
    sipp_phone: Callable[..., SippPhone],
    workdir: Path,
    agent: str,
    port: int,
) -> dict[str, Any]:
    """Call the DID and press 4: ``agent`` (its SIPp phone on ``port``) answers the
    transfer; the call's ``routing.decided`` payload."""
    with sipp_phone("uas_answer_then_hangup.xml", port=port, hold_ms=1500) as phone:
        caller = dtmf_caller(sipp_phone, workdir, "4", number=DID)
        watch = await completed_ivr_call(engine, caller, within=60)
        assert await phone.wait_async(30) == 0, phone.report()
    rows = await transfer_rows(engine, watch)
    assert [(r["target"], r["state"]) for r in rows] == [(agent, "completed")], watch.trail()
    [decided] = [dict(e.payload) for e in watch.events if e.event_type == "routing.decided"]
    return decided


async def test_a_did_reaches_the_rule_of_its_window_and_outside_it_the_next_rule(
    ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    store = ivr_engine.store
    tenant = await store.tenants.by_slug("default")
    rules = RoutingRuleService(store, AgentStateService(store))
    tag = uuid.uuid4().hex[:6]
    hours, after = f"did-hours-{tag}", f"did-after-{tag}"
    # before every other test's rules (priority 100) and only for this DID
    base = {"match": {"dialed_number": [DID], "ivr_choice": ["4"]}, "strategy": "ring_agent"}
    in_window = _schedule(timedelta(hours=-1), timedelta(hours=1))
    hours_rule = {**base, "priority": 1, "target": "agent3", "schedule": in_window}
    await rules.save_data(tenant, hours, hours_rule)
    await rules.save_data(tenant, after, {**base, "priority": 2, "target": "agent4"})
    # key 4 transfers to routing rule "*": no rule named
    await store.ivr.save(tenant.id, load_menus(MENUS.format(rule='"*"')))
    try:
        decided = await _reaches(ivr_engine, sipp_phone, tmp_path / "in", "agent3", 5073)
        assert decided["rule"] == hours, decided
        assert decided["selected_by"] == "conditions"
        assert decided["reason"].startswith(f"rule '{hours}' matched: "), decided

        # the same DID outside the rule's window: the next rule for it, agent4
        later = _schedule(timedelta(hours=2), timedelta(hours=3))
        await rules.save_data(tenant, hours, {**hours_rule, "schedule": later})
        decided = await _reaches(ivr_engine, sipp_phone, tmp_path / "out", "agent4", 5074)
        assert decided["rule"] == after, decided
    finally:  # the engine's database is shared with the other e2e tests
        await rules.save_data(tenant, hours, {**hours_rule, "active": False})
        await rules.save_data(tenant, after, {**base, "target": "agent4", "active": False})

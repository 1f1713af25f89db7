"""Only available agents are offered a call: real calls on the sandbox, SIPp phones.

agent3 is on a click-to-call (its phone answered, the customer's too) when an inbound
caller presses 4, whose option transfers to a simultaneous ring group of agent3 and agent4:
agent3 is left out (its state is ``on_call``, read from its live call) and only agent4
rings and answers. The decision is a ``routing.decided`` event naming who was skipped and
why, and agent4's log tells its states through the call: ringing, on_call, available.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from engine.app.agent_states import AgentStateService
from engine.daemon import Engine
from engine.devtools.sipp import SippPhone
from tests.e2e.engine_fixtures import CUSTOMER_PORT, end_call, initiate
from tests.e2e.test_ivr import transfer_rows
from tests.e2e.test_ivr_routing import DOORS, add_rule, call
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("door", list(DOORS))
async def test_an_agent_on_a_call_is_skipped_by_a_ring_group_and_the_next_available_rings(
    door: str, ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    await add_rule(ivr_engine, "ring_group_simultaneous", ["agent3", "agent4"])
    tenant = await ivr_engine.store.tenants.by_slug("default")
    agents = AgentStateService(ivr_engine.store)
    with (
        sipp_phone("uas_answer.xml", port=5073),
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT),
    ):
        placed = await initiate(ivr_engine, agent_number="agent3")
        try:

            async def agent3_on_call() -> bool:
                busy = await agents.unavailable(tenant.id, ["agent3", "agent4"])
                return busy == {"agent3": "on_call"}

            await eventually(agent3_on_call, within=20, what="agent3 on its click-to-call")
            with sipp_phone("uas_answer_then_hangup.xml", port=5074, hold_ms=2000) as agent4:
                watch = await call(ivr_engine, sipp_phone, tmp_path, door)
                assert await agent4.wait_async(30) == 0, agent4.report()
        finally:
            await end_call(ivr_engine, placed["id"])

    rows = await transfer_rows(ivr_engine, watch)
    assert [(r["target"], r["state"]) for r in rows] == [("agent4", "completed")]
    decided = [e for e in watch.events if e.event_type == "routing.decided"]
    assert len(decided) == 1, watch.trail()
    assert decided[0].payload["skipped"] == {"agent3": "on_call"}
    assert "rings agent4; skipped agent3 (on_call)" in decided[0].payload["reason"]

    log = await ivr_engine.store.db.fetch(
        "SELECT activity, details FROM agent_activity_log "
        "WHERE tenant_id = $1 AND agent_id = 'agent4' AND session_id = $2 ORDER BY id",
        tenant.id,
        watch.session_id,
    )
    assert [r["activity"] for r in log] == ["ringing", "on_call", "available"]
    assert all(r["details"] == {"by": "engine"} for r in log)

    async def both_available() -> bool:  # the click-to-call's end may be written behind
        return await agents.unavailable(tenant.id, ["agent3", "agent4"]) == {}

    await eventually(both_available, within=20, what="agent3 and agent4 available again")

"""IVR transfers to routing rules, over Stasis and FastAGI, with real SIPp agent phones.

The caller presses 4 in menu "main", whose option transfers to a routing rule inserted
with SQL (its condition: the IVR choice 4). Every member offered is one ``call_transfer``
row (initiated_by ivr, the option's id, the rule's id) with its outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.daemon import Engine
from engine.devtools.sipp import SippPhone
from engine.ivr_yaml import load_menus
from tests.e2e.engine_fixtures import CallWatcher, completed_ivr_call
from tests.e2e.test_dtmf_caller import dtmf_caller
from tests.e2e.test_ivr import assert_ivr_transfer, transfer_rows

pytestmark = pytest.mark.e2e

DOORS = {"stasis": "5551000", "fastagi": "45735551000"}  # [from-caller]: 4573… is FastAGI

MENUS = """\
menus:
  main:
    greeting: sound:hello-world
    timeout_ms: 1500
    max_retries: 0
    options:
      4: {{action: transfer, target_type: routing_rule, target: {rule}, failure_prompt: sound:beep}}
      9: {{action: hangup}}
    fallback: {{action: hangup}}
"""


async def add_rule(engine: Engine, strategy: str, members: list[str], **cols: Any) -> str:
    """A routing rule of tenant ``default`` for calls whose IVR choice is 4 (its
    condition), and a "main" menu whose key 4 transfers to it."""
    tenant = await engine.store.tenants.by_slug("default")
    name = f"{strategy}-{uuid.uuid4().hex[:8]}"
    fields = {"strategy": strategy, "members": members, "ring_timeout_s": 20, **cols}
    params = ", ".join(f"${i + 3}" for i in range(len(fields)))
    await engine.store.db.execute(
        f"INSERT INTO call_routing_rule (tenant_id, name, match_type, conditions, "
        f"{', '.join(fields)}) VALUES ($1, $2, 'conditions', '{{\"ivr_choice\": [\"4\"]}}', "
        f"{params})",
        tenant.id,
        name,
        *fields.values(),
    )
    await engine.store.ivr.save(tenant.id, load_menus(MENUS.format(rule=name)))
    return name


async def call(
    engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path, door: str
) -> CallWatcher:
    """Call in through ``door``, press 4, stay until the transferred call ends."""
    caller = dtmf_caller(sipp_phone, tmp_path / "caller", "4", number=DOORS[door])
    return await completed_ivr_call(engine, caller, within=60)


async def rule_id(engine: Engine, name: str) -> uuid.UUID:
    found: uuid.UUID = await engine.store.db.fetchval(
        "SELECT id FROM call_routing_rule WHERE name = $1", name
    )
    return found


@pytest.mark.parametrize("door", list(DOORS))
@pytest.mark.parametrize("strategy", ["ring_group_round_robin", "least_recent"])
async def test_first_member_busy_second_answers(
    strategy: str,
    door: str,
    ivr_engine: Engine,
    sipp_phone: Callable[..., SippPhone],
    tmp_path: Path,
) -> None:
    name = await add_rule(ivr_engine, strategy, ["agent3", "agent4"])
    with (
        sipp_phone("uas_busy.xml", port=5073) as busy,
        sipp_phone("uas_answer_then_hangup.xml", port=5074, hold_ms=2000) as answers,
    ):
        watch = await call(ivr_engine, sipp_phone, tmp_path, door)
        assert await busy.wait_async(30) == 0, busy.report()
        assert await answers.wait_async(30) == 0, answers.report()
    assert (await watch.session()).end_reason == "transferred call ended"
    rows = await transfer_rows(ivr_engine, watch)
    assert [(r["target"], r["state"], r["hangup_cause"]) for r in rows] == [
        ("agent3", "busy", 17),
        ("agent4", "completed", None),
    ]
    rid = await rule_id(ivr_engine, name)
    for row in rows:
        assert (row["target_type"], row["routing_rule_id"]) == ("routing_rule", rid)
        assert_ivr_transfer(row, "main", "4")
    answered = rows[1]["target_channel_id"]
    if door == "stasis":  # one channel per member offered, ids counting up
        assert answered == f"ivr-{watch.session_id}-target-2"
    else:  # Dial's DIALEDPEERNAME
        assert "agent4" in answered

    # the next transfer to this rule starts elsewhere: round robin at the member after the
    # 2 offers made (agent3 again, 2 % 2), least recent at agent3 (offered before agent4)
    rule = await ivr_engine.store.routing.get(rows[0]["tenant_id"], rid)
    assert rule is not None
    assert rule.offers == 2
    assert set(rule.last_offered) == {"agent3", "agent4"}


@pytest.mark.parametrize("door", list(DOORS))
async def test_simultaneous_group_first_to_answer_wins_the_other_stops_ringing(
    door: str, ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    name = await add_rule(ivr_engine, "ring_group_simultaneous", ["agent3", "agent4"])
    # agent3 rings and never answers: it finishes (exit 0) only when its INVITE is
    # cancelled, which must happen when agent4 answers, long before the 20 s ring timeout
    with (
        sipp_phone("uas_noanswer.xml", port=5073) as ringing,
        sipp_phone("uas_answer_then_hangup.xml", port=5074, hold_ms=4000) as answers,
    ):
        watch = CallWatcher(ivr_engine)
        with dtmf_caller(sipp_phone, tmp_path / "caller", "4", number=DOORS[door]) as caller:
            created = await watch.until_event("session.created", within=20)
            watch.session_id = created.session_id
            await watch.until_event("ivr.transferred", within=20)
            # still talking to agent4 (4 s): agent3 must have stopped ringing already
            assert await ringing.wait_async(3) == 0, ringing.report()
            end = await watch.until("completed", "failed", "canceled", within=30)
            assert end.status_to == "completed", watch.trail()
            assert await caller.wait_async(30) == 0, caller.report()
        assert await answers.wait_async(30) == 0, answers.report()
    (row,) = await transfer_rows(ivr_engine, watch)
    assert (row["target_type"], row["target"], row["state"]) == (
        "routing_rule",
        "agent3&agent4",
        "completed",
    )
    assert row["routing_rule_id"] == await rule_id(ivr_engine, name)
    assert_ivr_transfer(row, "main", "4")
    if door == "stasis":  # the channel of the second member originated
        assert row["target_channel_id"] == f"ivr-{watch.session_id}-target-2"
    else:  # Dial's DIALEDPEERNAME
        assert "agent4" in row["target_channel_id"]


@pytest.mark.parametrize("door", list(DOORS))
async def test_nobody_answers_then_the_caller_hears_the_menu_again(
    door: str, ivr_engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    # a provider rule (no carrier adapters yet) falling back to a busy agent: both rows
    # fail, the caller hears the failure prompt and the menu, then presses 9 (hang up)
    tenant = await ivr_engine.store.tenants.by_slug("default")
    provider = await ivr_engine.store.db.fetchval(
        "INSERT INTO voip_provider (tenant_id, name, provider_type) "
        "VALUES ($1, $2, 'sip_trunk') RETURNING id",
        tenant.id,
        f"carrier-{uuid.uuid4().hex[:6]}",
    )
    agent = await add_rule(ivr_engine, "ring_agent", [], target="agent3")
    name = await add_rule(
        ivr_engine,
        "provider",
        [],
        provider_id=provider,
        fallback_rule_id=await rule_id(ivr_engine, agent),
    )
    with sipp_phone("uas_busy.xml", port=5073):
        caller = dtmf_caller(sipp_phone, tmp_path / "caller", "49", gap_ms=3000, number=DOORS[door])
        watch = await completed_ivr_call(ivr_engine, caller)
    assert (await watch.session()).end_reason == "ivr hung up"
    rows = await transfer_rows(ivr_engine, watch)
    assert [(r["target"], r["state"]) for r in rows] == [(None, "failed"), ("agent3", "busy")]
    assert "carrier adapters are not available yet" in rows[0]["failure_cause"]
    assert rows[0]["routing_rule_id"] == await rule_id(ivr_engine, name)
    for row in rows:
        assert_ivr_transfer(row, "main", "4")

"""Calls agents place from their desk phone (``[ctc-agents]``) end to end.

The agent's phone is a SIPp UAC on 127.0.0.1:5071 (endpoint ``agent1``, context
``ctc-agents``): it dials a number, the dialplan hands the call to
``Stasis(ctc,agent,<number>)``, and the engine places it like a click-to-call: the
agent's channel answered (ringback), the customer dialled through the trunk (SIPp UAS on
127.0.0.1:5080), both bridged and recorded, callbacks sent. A number that is not one is
refused: the agent hears "not in service" from ``[ctc-agent-refused]`` and the session
ends ``rejected``. Every wait is on an event or a SIPp exit, bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from engine.daemon import Engine
from engine.devtools.dtmf_caller import CALLER_SCENARIO, caller_csv
from engine.devtools.sandbox import Sandbox
from engine.devtools.sipp import SippPhone
from engine.notifier import verify_signature
from engine.store.records import QualityMetric
from tests.e2e.engine_fixtures import AGENT, AGENT_PORT, CUSTOMER_PORT, CallWatcher, running_engine
from tests.support.callbacks import Receiver
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
async def engine(migrated_db: str, sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine on the ``ctc`` app (the one the shipped dialplan names) that reads numbers
    dialled without a country code as US numbers."""
    async with running_engine(
        migrated_db, sandbox, tmp_path, app="ctc", agent_default_region="US"
    ) as running:
        yield running


def agent_phone(
    sipp_phone: Callable[..., SippPhone], workdir: Path, number: str, *, within_s: int = 60
) -> SippPhone:
    """agent1's desk phone dialling ``number``, then waiting for Asterisk's BYE."""
    csv = caller_csv(workdir / "agent.csv", "", wait_ms=0)
    return sipp_phone(
        str(CALLER_SCENARIO),
        port=AGENT_PORT,
        timeout_s=within_s,
        extra_args=("-s", number, "-inf", str(csv), "127.0.0.1:5060"),
    )


async def test_an_agent_dialling_a_customer_is_bridged_recorded_and_reported(
    engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    tenant = await engine.store.tenants.by_slug("default")
    receiver = await Receiver().start()
    await engine.store.tenants.update(
        "default", callback_url=receiver.url, allow_cidrs=("127.0.0.1/32",)
    )
    await engine.store.recording.set_default(tenant.id, is_enabled=True, fmt="wav")
    try:
        secret = await engine.store.tenants.callback_secret(tenant.id)
        watch = CallWatcher(engine)  # every session: subscribe before the call exists
        with (
            sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=2000) as cust,
            agent_phone(sipp_phone, tmp_path, "4155550100") as agent,
        ):
            created = await watch.until_event("session.created", within=20)
            watch.session_id = created.session_id
            done = await watch.until("completed", "failed", "canceled", "rejected", within=40)
            assert done.status_to == "completed", watch.trail()
            await watch.until_event("recording.finished")
            assert await cust.wait_async(30) == 0, cust.report()
            assert await agent.wait_async(30) == 0, agent.report()
        expected = ["agent_answered", "dialing_customer", "connected", "completed"]
        sid = str(watch.session_id)
        # every call's first callback is its creation (queued)
        await receiver.wait_for(lambda _: len(receiver.delivered(sid)) == len(expected) + 1)
    finally:
        await engine.store.recording.set_default(tenant.id, is_enabled=False)
        await engine.store.tenants.update("default", callback_url=None, allow_cidrs=())
        await receiver.stop()
    session = await watch.session()
    assert session.direction.value == "outbound"
    assert session.metadata["door"] == "agent"
    assert session.agent_number == AGENT
    assert session.dialed_number == "4155550100"
    assert session.customer_number == "+14155550100"
    assert session.end_reason == "customer hung up"
    assert session.talk_ms is not None
    assert session.ring_ms is not None
    statuses = [e.status_to for e in watch.events if e.status_to is not None]
    assert statuses == ["queued", *expected], watch.trail()
    # the agent's own channel (Asterisk's id, not one the engine named) is the agent leg
    assert session.agent_channel_id == session.metadata["channel_id"]
    assert session.recording_path is not None
    assert await asyncio.to_thread(Path(session.recording_path).is_file)

    # both legs measured: the agent's own channel (followed from the door) and the
    # customer's (named by the engine)
    async def both_final() -> dict[str, QualityMetric] | None:
        rows = await engine.store.quality.for_session(session.tenant_id, session.id)
        finals = {row.leg: row for row in rows if row.is_final}
        return finals if {"agent", "customer"} <= set(finals) else None

    finals = await eventually(both_final, within=15, what="both legs' final quality rows")
    assert finals["agent"].channel_id == session.agent_channel_id
    assert finals["customer"].channel_id == f"c2c-{session.id}-customer"
    for row in finals.values():
        assert (row.tx_packets or 0) > 20, row  # ringback and the bridge: RTP went out
        assert {"rtpaudioqos"} <= set(row.raw), row.raw
    got = receiver.delivered(sid)
    assert [r.json["status"] for r in got] == ["queued", *expected]
    for r in got:
        assert verify_signature(secret, r.body, r.headers["X-CTC-Signature"])


async def test_a_number_phonenumbers_refuses_is_rejected_and_the_agent_is_told(
    engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    watch = CallWatcher(engine)
    # the trunk's phone is there to prove nothing rings it: SIPp would answer and exit 0
    with (
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT, timeout_s=30) as trunk,
        agent_phone(sipp_phone, tmp_path, "12") as agent,
    ):
        created = await watch.until_event("session.created", within=20)
        watch.session_id = created.session_id
        done = await watch.until("completed", "failed", "canceled", "rejected", within=20)
        assert done.status_to == "rejected", watch.trail()
        # [ctc-agent-refused] answers, plays "not in service", hangs up: SIPp gets its BYE
        assert await agent.wait_async(30) == 0, agent.report()
        assert trunk.returncode is None, trunk.report()  # still waiting: never rung
    session = await watch.session()
    assert session.direction.value == "outbound"
    assert session.customer_number is None
    assert session.dialed_number == "12"
    assert "dialled_number" in (session.end_reason or "")
    rejected = [e.payload for e in watch.events if e.event_type == "session.rejected"]
    assert [p["rule_type"] for p in rejected] == ["invalid_number"], watch.trail()


async def test_an_agent_who_hangs_up_while_the_customer_rings_cancels_the_call(
    engine: Engine, sipp_phone: Callable[..., SippPhone], tmp_path: Path
) -> None:
    # the agent's own channel is followed by its id (not named from the session): its end
    # reaches the call, which hangs up the customer still ringing
    csv = caller_csv(tmp_path / "agent.csv", "", wait_ms=0, hang_up=True, hold_ms=2000)
    watch = CallWatcher(engine)
    with (
        sipp_phone("uas_noanswer.xml", port=CUSTOMER_PORT, timeout_s=40) as cust,
        sipp_phone(
            str(CALLER_SCENARIO),
            port=AGENT_PORT,
            extra_args=("-s", "+14155550100", "-inf", str(csv), "127.0.0.1:5060"),
        ) as agent,
    ):
        created = await watch.until_event("session.created", within=20)
        watch.session_id = created.session_id
        done = await watch.until("completed", "failed", "canceled", "rejected", within=30)
        assert done.status_to == "canceled", watch.trail()
        assert await agent.wait_async(30) == 0, agent.report()
        assert await cust.wait_async(30) == 0, cust.report()  # CANCELed: 487, a clean end
    session = await watch.session()
    assert session.end_reason == "agent hung up before the customer answered"
    assert session.customer_number == "+14155550100"
    assert [e.event_type for e in watch.events][-1] == "agent.hangup", watch.trail()

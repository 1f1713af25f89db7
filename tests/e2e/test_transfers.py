"""Transfers of connected click-to-calls, end to end through the sandbox Asterisk.

agent1 (SIPp on 5071) talks to the customer (SIPp on 5080); the transfer target is agent2
(5072), agent3 (5073) or another outside number (the trunk's SIPp on 5080 again). Every step
is awaited on the engine's event bus; bridges are read back from ARI and the
``call_transfer`` rows from PostgreSQL. A target channel is ``c2c-<session>-target-<id>``:
the tests take it from the transfer the API returned.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.daemon import Engine
from engine.devtools.sandbox import ARI_URL, Sandbox
from engine.devtools.sipp import SippPhone
from engine.store.records import StoredTransfer
from tests.e2e.engine_fixtures import (
    AGENT_PORT,
    CUSTOMER_PORT,
    CallWatcher,
    call_api,
    end_call,
    initiate,
    running_engine,
)
from tests.e2e.helpers import ari_has
from tests.support.tcp_proxy import TcpProxy
from tests.support.transfers import session_transfers

pytestmark = pytest.mark.e2e

AGENT2_PORT = 5072
AGENT3_PORT = 5073


async def _connected(engine: Engine) -> tuple[str, CallWatcher]:
    watcher = CallWatcher(engine)
    body = await initiate(engine)
    watcher.session_id = uuid.UUID(body["id"])
    await watcher.until("connected")
    return body["id"], watcher


async def _post(engine: Engine, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    return await call_api(engine, "POST", f"click-to-call/sessions/{path}", body)


async def _bridge_channels(ari: aiohttp.ClientSession, bridge: str) -> set[str]:
    async with ari.get(f"{ARI_URL}/bridges/{bridge}") as resp:
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
    return set(data["channels"])


async def _transfers(engine: Engine, watch: CallWatcher) -> list[StoredTransfer]:
    session = await watch.session()
    return await session_transfers(engine.store, session.tenant_id, session.id)


def _ids(sid: str) -> tuple[str, str]:
    return f"c2c-{sid}-agent", f"c2c-{sid}-customer"


async def test_two_successive_blind_transfers(
    c2c_engine: Engine, ari: aiohttp.ClientSession, sipp_phone: Callable[..., SippPhone]
) -> None:
    """agent1 -> agent2 -> agent3 on one call: each transfer has its own target channel,
    each replaced agent is released without ending the call, the last one stays."""
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT) as customer,
        sipp_phone("uas_answer.xml", port=AGENT2_PORT) as agent2,
        sipp_phone("uas_answer.xml", port=AGENT3_PORT) as agent3,
    ):
        sid, watch = await _connected(c2c_engine)
        _, customer_ch = _ids(sid)
        status, first = await _post(
            c2c_engine, f"{sid}/transfer", {"type": "blind", "target": "agent2"}
        )
        assert status == 200, first
        assert first["state"] == "initiated"
        await watch.until_event("transfer.completed")
        assert await agent.wait_async(30) == 0, agent.report()  # agent1 got its BYE
        assert await _bridge_channels(ari, f"c2c-{sid}") == {
            customer_ch,
            first["target_channel_id"],
        }
        assert (await watch.session()).agent_channel_id == first["target_channel_id"]
        # the second transfer replaces agent2 (the first one's target) with agent3
        status, second = await _post(
            c2c_engine, f"{sid}/transfer", {"type": "blind", "target": "agent3"}
        )
        assert status == 200, second
        assert second["target_channel_id"] != first["target_channel_id"]
        await watch.until_event("transfer.completed", count=2)
        assert await agent2.wait_async(30) == 0, agent2.report()  # agent2 got its BYE
        assert not await ari_has(ari, "channels", first["target_channel_id"])
        assert await _bridge_channels(ari, f"c2c-{sid}") == {
            customer_ch,
            second["target_channel_id"],
        }
        session = await watch.session()
        assert session.status.value == "connected", watch.trail()  # agent2's hangup was stale
        assert session.agent_channel_id == second["target_channel_id"]
        await end_call(c2c_engine, sid)
        done = await watch.until("completed", "failed", "canceled")
        assert done.status_to == "completed", watch.trail()
        assert await agent3.wait_async(30) == 0, agent3.report()
        assert await customer.wait_async(30) == 0, customer.report()
    rows = await _transfers(c2c_engine, watch)
    assert [(r.id, r.target_channel_id) for r in rows] == [
        (uuid.UUID(first["id"]), first["target_channel_id"]),
        (uuid.UUID(second["id"]), second["target_channel_id"]),
    ]
    for row, target in zip(rows, ("agent2", "agent3"), strict=True):
        assert (row.transfer_type, row.state, row.target, row.target_type, row.from_leg) == (
            "blind",
            "completed",
            target,
            "agent",
            "customer",
        )
        assert row.target_channel_id == f"c2c-{sid}-target-{row.id}"
        assert row.answered_at is not None
        assert row.completed_at is not None
    assert rows[0].completed_at <= rows[1].requested_at  # type: ignore[operator]
    kinds = [e.event_type for e in watch.events]
    for kind in ("transfer.requested", "transfer.target_dialing", "transfer.target_bridged"):
        assert kinds.count(kind) == 2, watch.trail()
    assert kinds.count("transfer.agent_replaced") == 2, watch.trail()


async def test_customer_leg_blind_transfer_keeps_the_agent(
    c2c_engine: Engine, ari: aiohttp.ClientSession, sipp_phone: Callable[..., SippPhone]
) -> None:
    """``leg: customer``: the agent stays and talks to another outside number; the first
    customer is released; the new party's hangup then ends the call as the customer's."""
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        # the trunk's phone answers both the customer and the number the call goes to
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT, calls=2) as trunk,
    ):
        sid, watch = await _connected(c2c_engine)
        agent_ch, customer_ch = _ids(sid)
        status, body = await _post(
            c2c_engine,
            f"{sid}/transfer",
            {"type": "blind", "target": "+14155550123", "leg": "customer"},
        )
        assert status == 200, body
        assert body["from_leg"] == "agent"
        target_ch = body["target_channel_id"]
        await watch.until_event("transfer.completed")
        await watch.until_event("transfer.customer_released")
        assert await _bridge_channels(ari, f"c2c-{sid}") == {agent_ch, target_ch}
        session = await watch.session()
        assert session.status.value == "connected", watch.trail()  # the release was stale
        assert (session.customer_channel_id, session.agent_channel_id) == (target_ch, agent_ch)
        # the new party hangs up: that is the customer hanging up, the agent gets its BYE
        async with ari.delete(f"{ARI_URL}/channels/{target_ch}") as resp:
            assert resp.status == 204, await resp.text()
        done = await watch.until("completed", "failed", "canceled")
        assert done.status_to == "completed", watch.trail()
        assert done.event_type == "customer.hangup", watch.trail()
        assert await agent.wait_async(30) == 0, agent.report()
        assert await trunk.wait_async(30) == 0, trunk.report()  # both trunk calls got BYEs
        assert not await ari_has(ari, "channels", customer_ch)
    [row] = await _transfers(c2c_engine, watch)
    assert (row.transfer_type, row.state, row.target, row.target_type, row.from_leg) == (
        "blind",
        "completed",
        "+14155550123",
        "number",
        "agent",
    )
    kinds = [e.event_type for e in watch.events]
    assert "transfer.customer_replaced" in kinds, watch.trail()
    assert "transfer.agent_released" not in kinds, watch.trail()


async def test_blind_transfer_to_busy_target_keeps_the_call(
    c2c_engine: Engine, ari: aiohttp.ClientSession, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT),
        sipp_phone("uas_busy.xml", port=AGENT2_PORT) as agent2,
    ):
        sid, watch = await _connected(c2c_engine)
        status, body = await _post(
            c2c_engine, f"{sid}/transfer", {"type": "blind", "target": "agent2"}
        )
        assert status == 200, body
        await watch.until_event("transfer.busy")
        assert await agent2.wait_async(30) == 0, agent2.report()
        agent_ch, customer_ch = _ids(sid)
        assert await _bridge_channels(ari, f"c2c-{sid}") == {agent_ch, customer_ch}
        assert (await watch.session()).status.value == "connected"
        # errors: unknown target 422; complete/cancel without a consult 409
        status, body = await _post(
            c2c_engine, f"{sid}/transfer", {"type": "blind", "target": "nosuch"}
        )
        assert status == 422, body
        status, body = await _post(c2c_engine, f"{sid}/transfer/complete")
        assert status == 409, body
        status, body = await _post(c2c_engine, f"{sid}/transfer/cancel")
        assert status == 409, body
        await end_call(c2c_engine, sid)
        await watch.until("completed")
        assert await agent.wait_async(30) == 0, agent.report()
        status, body = await _post(
            c2c_engine, f"{sid}/transfer", {"type": "blind", "target": "agent2"}
        )
        assert status == 409, body  # not connected any more
    [row] = await _transfers(c2c_engine, watch)
    assert (row.state, row.hangup_cause) == ("busy", 17)
    assert row.completed_at is not None
    assert row.answered_at is None


async def _consulting(
    engine: Engine, ari: aiohttp.ClientSession, sid: str, watch: CallWatcher
) -> dict[str, Any]:
    """Start an attended transfer to agent3 and wait until the agent consults it; the
    transfer as the API returned it."""
    status, body = await _post(
        engine, f"{sid}/transfer", {"type": "attended", "target": "agent3", "leg": "agent"}
    )
    assert status == 200, body
    await watch.until_event("transfer.consulting")
    agent_ch, customer_ch = _ids(sid)
    consult = body["consult_bridge_id"]
    assert consult == f"c2c-{sid}-consult-{body['id']}"
    assert await _bridge_channels(ari, consult) == {agent_ch, body["target_channel_id"]}
    assert await _bridge_channels(ari, f"c2c-{sid}") == {customer_ch}
    return body


async def test_attended_transfer_complete(
    c2c_engine: Engine, ari: aiohttp.ClientSession, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT),
        sipp_phone("uas_answer.xml", port=AGENT3_PORT) as agent3,
    ):
        sid, watch = await _connected(c2c_engine)
        started = await _consulting(c2c_engine, ari, sid, watch)
        status, body = await _post(c2c_engine, f"{sid}/transfer/complete")
        assert status == 200, body
        assert body["state"] == "completed"
        assert await agent.wait_async(30) == 0, agent.report()
        _, customer_ch = _ids(sid)
        target_ch = started["target_channel_id"]
        assert await _bridge_channels(ari, f"c2c-{sid}") == {customer_ch, target_ch}
        assert (await watch.session()).status.value == "connected"
        await end_call(c2c_engine, sid)
        await watch.until("completed")
        assert await agent3.wait_async(30) == 0, agent3.report()
    [row] = await _transfers(c2c_engine, watch)
    assert (row.transfer_type, row.state) == ("attended", "completed")
    assert row.consult_bridge_id == started["consult_bridge_id"]
    kinds = [e.event_type for e in watch.events]
    for kind in ("transfer.customer_held", "transfer.customer_unheld", "transfer.agent_released"):
        assert kind in kinds, watch.trail()


async def test_attended_transfer_cancel(
    c2c_engine: Engine, ari: aiohttp.ClientSession, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT),
        sipp_phone("uas_answer.xml", port=AGENT3_PORT) as agent3,
    ):
        sid, watch = await _connected(c2c_engine)
        await _consulting(c2c_engine, ari, sid, watch)
        status, body = await _post(c2c_engine, f"{sid}/transfer/cancel")
        assert status == 200, body
        assert body["state"] == "canceled"
        assert await agent3.wait_async(30) == 0, agent3.report()  # the target got its BYE
        agent_ch, customer_ch = _ids(sid)
        assert await _bridge_channels(ari, f"c2c-{sid}") == {agent_ch, customer_ch}
        await end_call(c2c_engine, sid)
        await watch.until("completed")
        assert await agent.wait_async(30) == 0, agent.report()
    [row] = await _transfers(c2c_engine, watch)
    assert (row.transfer_type, row.state) == ("attended", "canceled")
    assert row.answered_at is not None


async def test_after_a_blind_transfer_the_target_hanging_up_ends_the_call(
    c2c_engine: Engine, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT) as customer,
        sipp_phone("uas_answer_then_hangup.xml", port=AGENT2_PORT, hold_ms=3000) as agent2,
    ):
        sid, watch = await _connected(c2c_engine)
        status, body = await _post(
            c2c_engine, f"{sid}/transfer", {"type": "blind", "target": "agent2"}
        )
        assert status == 200, body
        await watch.until_event("transfer.completed")
        assert await agent.wait_async(30) == 0, agent.report()
        done = await watch.until("completed", "failed", "canceled")
        assert done.status_to == "completed", watch.trail()
        assert await agent2.wait_async(30) == 0, agent2.report()
        assert await customer.wait_async(30) == 0, customer.report()  # got its BYE
    session = await watch.session()
    assert session.end_reason == "agent hung up"
    assert session.hangup_cause == 16


async def test_attended_transfer_to_busy_target_returns_to_the_customer(
    c2c_engine: Engine, ari: aiohttp.ClientSession, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT),
        sipp_phone("uas_busy.xml", port=AGENT3_PORT) as agent3,
    ):
        sid, watch = await _connected(c2c_engine)
        status, body = await _post(
            c2c_engine, f"{sid}/transfer", {"type": "attended", "target": "agent3"}
        )
        assert status == 200, body
        await watch.until_event("transfer.busy")
        assert await agent3.wait_async(30) == 0, agent3.report()
        agent_ch, customer_ch = _ids(sid)
        assert await _bridge_channels(ari, f"c2c-{sid}") == {agent_ch, customer_ch}
        status, body = await _post(c2c_engine, f"{sid}/transfer/complete")
        assert status == 409, body
        await end_call(c2c_engine, sid)
        await watch.until("completed")
        assert await agent.wait_async(30) == 0, agent.report()
    [row] = await _transfers(c2c_engine, watch)
    assert (row.transfer_type, row.state, row.hangup_cause) == ("attended", "busy", 17)
    kinds = [e.event_type for e in watch.events]
    assert kinds.index("transfer.customer_held") < kinds.index("transfer.customer_unheld")


async def test_attended_transfer_consulting_across_an_ari_cut_then_completed(
    migrated_db: str,
    sandbox: Sandbox,
    tmp_path: Path,
    ari: aiohttp.ClientSession,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    """The ARI socket drops while the agent consults agent3: the resync adopts the
    transfer (its target lives), and complete still works afterwards."""
    proxy = await TcpProxy(8088).start()
    try:
        async with running_engine(
            migrated_db, sandbox, tmp_path, ari_url=f"http://127.0.0.1:{proxy.port}"
        ) as engine:
            assert engine.stasis is not None
            with (
                sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
                sipp_phone("uas_answer.xml", port=CUSTOMER_PORT) as customer,
                sipp_phone("uas_answer.xml", port=AGENT3_PORT) as agent3,
            ):
                sid, watch = await _connected(engine)
                started = await _consulting(engine, ari, sid, watch)
                before = engine.stasis.link.connections
                engine.stasis.resync.completed.clear()
                assert proxy.cut() > 0
                await asyncio.wait_for(engine.stasis.resync.completed.wait(), 30)
                assert engine.stasis.link.connections == before + 1
                resync = await watch.until_event("transfer.resync")
                assert resync.payload["transfer_id"] == started["id"]
                assert (resync.payload["target_present"], resync.payload["missed"]) == (True, None)
                [row] = await _transfers(engine, watch)
                assert row.state == "consulting"  # adopted as it was
                status, body = await _post(engine, f"{sid}/transfer/complete")
                assert status == 200, body
                assert body["state"] == "completed"
                assert await agent.wait_async(30) == 0, agent.report()  # agent1 released
                _, customer_ch = _ids(sid)
                target_ch = started["target_channel_id"]
                assert await _bridge_channels(ari, f"c2c-{sid}") == {customer_ch, target_ch}
                session = await watch.session()
                assert session.status.value == "connected", watch.trail()
                assert session.agent_channel_id == target_ch
                # the adopted target's hangup, seen on the new socket, ends the call
                async with ari.delete(f"{ARI_URL}/channels/{target_ch}") as resp:
                    assert resp.status == 204, await resp.text()
                done = await watch.until("completed", "failed", "canceled")
                assert (done.status_to, done.event_type) == ("completed", "agent.hangup")
                assert await agent3.wait_async(30) == 0, agent3.report()
                assert await customer.wait_async(30) == 0, customer.report()
            [row] = await _transfers(engine, watch)
            assert (row.transfer_type, row.state, row.from_leg) == (
                "attended",
                "completed",
                "customer",
            )
            assert row.answered_at is not None
            assert row.completed_at is not None
    finally:
        await proxy.close()


async def test_transfer_whose_target_vanished_during_an_ari_cut_fails_back_to_the_call(
    migrated_db: str,
    sandbox: Sandbox,
    tmp_path: Path,
    ari: aiohttp.ClientSession,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    """The consulted target hangs up while the socket is down (no event reaches us): the
    resync ends the transfer as failed and puts the agent back with the customer."""
    proxy = await TcpProxy(8088).start()
    try:
        async with running_engine(
            migrated_db, sandbox, tmp_path, ari_url=f"http://127.0.0.1:{proxy.port}"
        ) as engine:
            assert engine.stasis is not None
            with (
                sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
                sipp_phone("uas_answer.xml", port=CUSTOMER_PORT),
                sipp_phone("uas_answer.xml", port=AGENT3_PORT) as agent3,
            ):
                sid, watch = await _connected(engine)
                started = await _consulting(engine, ari, sid, watch)
                # stop the proxy from accepting, cut the socket, hang up behind its back
                proxy.stop_listening()
                engine.stasis.resync.completed.clear()
                proxy.cut()
                sandbox.asterisk_cli(f"channel request hangup {started['target_channel_id']}")
                assert await agent3.wait_async(30) == 0, agent3.report()
                await proxy.listen_again()
                await asyncio.wait_for(engine.stasis.resync.completed.wait(), 60)
                failed = await watch.until_event("transfer.failed")
                assert "disconnected" in failed.payload["reason"]
                agent_ch, customer_ch = _ids(sid)
                assert await _bridge_channels(ari, f"c2c-{sid}") == {agent_ch, customer_ch}
                assert not await ari_has(ari, "bridges", started["consult_bridge_id"])
                session = await watch.session()
                assert session.status.value == "connected", watch.trail()
                assert session.agent_channel_id == agent_ch
                await end_call(engine, sid)
                await watch.until("completed")
                assert await agent.wait_async(30) == 0, agent.report()
            [row] = await _transfers(engine, watch)
            assert (row.transfer_type, row.state) == ("attended", "failed")
            assert row.failure_cause is not None
            assert "disconnected" in row.failure_cause
            kinds = [e.event_type for e in watch.events]
            assert kinds.index("transfer.resync") < kinds.index("transfer.customer_unheld")
    finally:
        await proxy.close()

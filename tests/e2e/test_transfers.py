"""Transfers of connected click-to-calls, end to end through the sandbox Asterisk.

agent1 (SIPp on 5071) talks to the customer (SIPp on 5080); the transfer target is agent2
(5072) or agent3 (5073). Every step is awaited on the engine's event bus; bridges are read
back from ARI and the ``call_transfer`` rows from PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.asterisk.sandbox import ARI_URL, Sandbox
from engine.asterisk.sipp import SippPhone
from engine.daemon import Engine
from engine.store.transfers import StoredTransfer
from tests.e2e.engine_fixtures import (
    AGENT_PORT,
    CUSTOMER_PORT,
    CallWatcher,
    end_call,
    initiate,
    running_engine,
)

pytestmark = pytest.mark.e2e

AGENT2_PORT = 5072
AGENT3_PORT = 5073


@pytest.fixture
async def engine(migrated_db: str, sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Engine]:
    async with running_engine(migrated_db, sandbox, tmp_path) as running:
        yield running


async def _connected(engine: Engine) -> tuple[str, CallWatcher]:
    watcher = CallWatcher(engine)
    body = await initiate(engine)
    watcher.session_id = uuid.UUID(body["id"])
    await watcher.until("connected")
    return body["id"], watcher


async def _post(engine: Engine, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    connector = aiohttp.UnixConnector(path=str(engine.settings.api.socket))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post(f"http://ctc/api/v1/click-to-call/sessions/{path}", json=body) as resp,
    ):
        data: dict[str, Any] = await resp.json()
        return resp.status, data


async def _bridge_channels(ari: aiohttp.ClientSession, bridge: str) -> set[str]:
    async with ari.get(f"{ARI_URL}/bridges/{bridge}") as resp:
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
    return set(data["channels"])


async def _transfers(engine: Engine, watch: CallWatcher) -> list[StoredTransfer]:
    session = await watch.session()
    return await engine.store.transfers.for_session(session.tenant_id, session.id)


def _ids(sid: str) -> tuple[str, str, str]:
    return f"c2c-{sid}-agent", f"c2c-{sid}-customer", f"c2c-{sid}-target"


async def test_blind_transfer_to_agent2_completes(
    engine: Engine, ari: aiohttp.ClientSession, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT) as customer,
        sipp_phone("uas_answer.xml", port=AGENT2_PORT) as agent2,
    ):
        sid, watch = await _connected(engine)
        status, body = await _post(engine, f"{sid}/transfer", {"type": "blind", "target": "agent2"})
        assert status == 200, body
        assert body["state"] == "initiated"
        await watch.until_event("transfer.completed")
        assert await agent.wait_async(30) == 0, agent.report()  # the agent got its BYE
        _, customer_ch, target_ch = _ids(sid)
        assert await _bridge_channels(ari, f"c2c-{sid}") == {customer_ch, target_ch}
        session = await watch.session()
        assert session.status.value == "connected"
        assert session.agent_channel_id == target_ch
        # the replaced agent's hangup did not end the call; a second transfer is refused
        status, body = await _post(engine, f"{sid}/transfer", {"type": "blind", "target": "agent3"})
        assert status == 409, body
        await end_call(engine, sid)
        done = await watch.until("completed", "failed", "canceled")
        assert done.status_to == "completed", watch.trail()
        assert await agent2.wait_async(30) == 0, agent2.report()
        assert await customer.wait_async(30) == 0, customer.report()
    [row] = await _transfers(engine, watch)
    assert (row.transfer_type, row.state, row.target, row.target_type) == (
        "blind",
        "completed",
        "agent2",
        "agent",
    )
    assert row.answered_at is not None
    assert row.completed_at is not None
    kinds = [e.event_type for e in watch.events]
    for kind in ("transfer.requested", "transfer.target_dialing", "transfer.target_bridged"):
        assert kind in kinds, watch.trail()


async def test_blind_transfer_to_busy_target_keeps_the_call(
    engine: Engine, ari: aiohttp.ClientSession, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT),
        sipp_phone("uas_busy.xml", port=AGENT2_PORT) as agent2,
    ):
        sid, watch = await _connected(engine)
        status, body = await _post(engine, f"{sid}/transfer", {"type": "blind", "target": "agent2"})
        assert status == 200, body
        await watch.until_event("transfer.busy")
        assert await agent2.wait_async(30) == 0, agent2.report()
        agent_ch, customer_ch, _ = _ids(sid)
        assert await _bridge_channels(ari, f"c2c-{sid}") == {agent_ch, customer_ch}
        assert (await watch.session()).status.value == "connected"
        # errors: unknown target 422; complete/cancel without a consult 409
        status, body = await _post(engine, f"{sid}/transfer", {"type": "blind", "target": "nosuch"})
        assert status == 422, body
        status, body = await _post(engine, f"{sid}/transfer/complete")
        assert status == 409, body
        status, body = await _post(engine, f"{sid}/transfer/cancel")
        assert status == 409, body
        await end_call(engine, sid)
        await watch.until("completed")
        assert await agent.wait_async(30) == 0, agent.report()
        status, body = await _post(engine, f"{sid}/transfer", {"type": "blind", "target": "agent2"})
        assert status == 409, body  # not connected any more
    [row] = await _transfers(engine, watch)
    assert (row.state, row.hangup_cause) == ("busy", 17)
    assert row.completed_at is not None
    assert row.answered_at is None


async def _consulting(
    engine: Engine, ari: aiohttp.ClientSession, sid: str, watch: CallWatcher
) -> None:
    status, body = await _post(
        engine, f"{sid}/transfer", {"type": "attended", "target": "agent3", "leg": "agent"}
    )
    assert status == 200, body
    await watch.until_event("transfer.consulting")
    agent_ch, customer_ch, target_ch = _ids(sid)
    assert await _bridge_channels(ari, f"c2c-{sid}-consult") == {agent_ch, target_ch}
    assert await _bridge_channels(ari, f"c2c-{sid}") == {customer_ch}


async def test_attended_transfer_complete(
    engine: Engine, ari: aiohttp.ClientSession, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT),
        sipp_phone("uas_answer.xml", port=AGENT3_PORT) as agent3,
    ):
        sid, watch = await _connected(engine)
        await _consulting(engine, ari, sid, watch)
        status, body = await _post(engine, f"{sid}/transfer/complete")
        assert status == 200, body
        assert body["state"] == "completed"
        assert await agent.wait_async(30) == 0, agent.report()
        _, customer_ch, target_ch = _ids(sid)
        assert await _bridge_channels(ari, f"c2c-{sid}") == {customer_ch, target_ch}
        assert (await watch.session()).status.value == "connected"
        await end_call(engine, sid)
        await watch.until("completed")
        assert await agent3.wait_async(30) == 0, agent3.report()
    [row] = await _transfers(engine, watch)
    assert (row.transfer_type, row.state) == ("attended", "completed")
    assert row.consult_bridge_id == f"c2c-{sid}-consult"
    kinds = [e.event_type for e in watch.events]
    for kind in ("transfer.customer_held", "transfer.customer_unheld", "transfer.agent_released"):
        assert kind in kinds, watch.trail()


async def test_attended_transfer_cancel(
    engine: Engine, ari: aiohttp.ClientSession, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT),
        sipp_phone("uas_answer.xml", port=AGENT3_PORT) as agent3,
    ):
        sid, watch = await _connected(engine)
        await _consulting(engine, ari, sid, watch)
        status, body = await _post(engine, f"{sid}/transfer/cancel")
        assert status == 200, body
        assert body["state"] == "canceled"
        assert await agent3.wait_async(30) == 0, agent3.report()  # the target got its BYE
        agent_ch, customer_ch, _ = _ids(sid)
        assert await _bridge_channels(ari, f"c2c-{sid}") == {agent_ch, customer_ch}
        await end_call(engine, sid)
        await watch.until("completed")
        assert await agent.wait_async(30) == 0, agent.report()
    [row] = await _transfers(engine, watch)
    assert (row.transfer_type, row.state) == ("attended", "canceled")
    assert row.answered_at is not None


async def test_after_a_blind_transfer_the_target_hanging_up_ends_the_call(
    engine: Engine, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT) as customer,
        sipp_phone("uas_answer_then_hangup.xml", port=AGENT2_PORT, hold_ms=3000) as agent2,
    ):
        sid, watch = await _connected(engine)
        status, body = await _post(engine, f"{sid}/transfer", {"type": "blind", "target": "agent2"})
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
    engine: Engine, ari: aiohttp.ClientSession, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT),
        sipp_phone("uas_busy.xml", port=AGENT3_PORT) as agent3,
    ):
        sid, watch = await _connected(engine)
        status, body = await _post(
            engine, f"{sid}/transfer", {"type": "attended", "target": "agent3"}
        )
        assert status == 200, body
        await watch.until_event("transfer.busy")
        assert await agent3.wait_async(30) == 0, agent3.report()
        agent_ch, customer_ch, _ = _ids(sid)
        assert await _bridge_channels(ari, f"c2c-{sid}") == {agent_ch, customer_ch}
        status, body = await _post(engine, f"{sid}/transfer/complete")
        assert status == 409, body
        await end_call(engine, sid)
        await watch.until("completed")
        assert await agent.wait_async(30) == 0, agent.report()
    [row] = await _transfers(engine, watch)
    assert (row.transfer_type, row.state, row.hangup_cause) == ("attended", "busy", 17)
    kinds = [e.event_type for e in watch.events]
    assert kinds.index("transfer.customer_held") < kinds.index("transfer.customer_unheld")

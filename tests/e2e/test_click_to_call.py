"""Click-to-call end to end: the engine dials SIPp phones through the sandbox Asterisk.

Agent phone: SIPp on 127.0.0.1:5071 (endpoint agent1). Customer: SIPp on 127.0.0.1:5080
behind the `trunk` endpoint. Every status is awaited on the engine's event bus; the rows
checked at the end are the ones in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
import wave
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from engine.daemon import Engine
from engine.devtools.sandbox import ARI_URL, Sandbox
from tests.e2e.engine_fixtures import (
    AGENT_PORT,
    CUSTOMER_PORT,
    CallWatcher,
    end_call,
    initiate,
    running_engine,
)
from tests.e2e.helpers import SippPhone, ari_bridges
from tests.support.metrics import sample
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e


async def _place(engine: Engine) -> tuple[str, CallWatcher]:
    watcher = CallWatcher(engine)  # all sessions: subscribe before the call exists
    body = await initiate(engine)
    watcher.session_id = uuid.UUID(body["id"])
    return body["id"], watcher


async def _statuses(engine: Engine, session_id: str) -> list[str | None]:
    tenant = (await engine.store.sessions.by_id(uuid.UUID(session_id))).tenant_id  # type: ignore[union-attr]
    events = await engine.store.sessions.events(tenant, uuid.UUID(session_id))
    return [e.status_to for e in events if e.status_to is not None]


HAPPY = ["queued", "dialing_agent", "agent_answered", "dialing_customer", "connected"]


async def test_both_answer_bridged_customer_hangs_up_recorded(
    c2c_engine: Engine, sandbox: Sandbox, sipp_phone: Callable[..., SippPhone]
) -> None:
    tenant = await c2c_engine.store.tenants.by_slug("default")
    await c2c_engine.store.recording.set_default(tenant.id, is_enabled=True, fmt="wav")
    door = {"door": "click_to_call"}
    originated = sample(c2c_engine, "ctc_originate_latency_seconds_count")
    completed = sample(c2c_engine, "ctc_calls_total", status="completed", **door)
    connected = sample(c2c_engine, "ctc_calls_total", status="connected", **door)
    try:
        with (
            sipp_phone("uas_answer.xml", port=AGENT_PORT),
            sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=3000) as cust,
        ):
            sid, watch = await _place(c2c_engine)
            await watch.until("connected")
            done = await watch.until("completed", "failed", "canceled")
            assert done.status_to == "completed", watch.trail()
            await watch.until_event("recording.finished")
            assert await cust.wait_async(30) == 0, cust.report()
    finally:
        await c2c_engine.store.recording.set_default(tenant.id, is_enabled=False)
    session = await watch.session()
    assert await _statuses(c2c_engine, sid) == [*HAPPY, "completed"]
    assert session.hangup_cause == 16
    assert session.end_reason == "customer hung up"
    assert session.ring_ms is not None
    assert session.talk_ms is not None
    assert session.recording_path is not None
    path = Path(session.recording_path)
    assert await asyncio.to_thread(path.is_file), path
    with wave.open(str(path)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert abs(seconds - 3.0) <= 1.0, seconds  # the customer talked 3 s
    assert session.recording_duration_ms is not None
    assert abs(session.recording_duration_ms - 3000) <= 1000
    # what /metrics says of it: the agent's leg originated once, connected, completed
    assert sample(c2c_engine, "ctc_originate_latency_seconds_count") == originated + 1
    assert sample(c2c_engine, "ctc_calls_total", status="connected", **door) == connected + 1
    assert sample(c2c_engine, "ctc_calls_total", status="completed", **door) == completed + 1
    assert sample(c2c_engine, "ctc_component_up", component="ari") == 1


async def test_a_recording_whose_end_was_never_stored_is_settled_from_asterisks_file(
    c2c_engine: Engine, sipp_phone: Callable[..., SippPhone]
) -> None:
    """Asterisk 22 sometimes sends no RecordingFinished for a destroyed bridge's recording;
    the engine then asks ARI. Here the end is made unknown after the fact (as if the event
    never came) and the engine asks the real ARI: no live recording, a stored one."""
    tenant = await c2c_engine.store.tenants.by_slug("default")
    await c2c_engine.store.recording.set_default(tenant.id, is_enabled=True, fmt="wav")
    try:
        with (
            sipp_phone("uas_answer.xml", port=AGENT_PORT),
            sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=1000),
        ):
            sid, watch = await _place(c2c_engine)
            await watch.until("completed", "failed", "canceled")
            told = await watch.until_event("recording.finished")
    finally:
        await c2c_engine.store.recording.set_default(tenant.id, is_enabled=False)
    session_id = uuid.UUID(sid)
    await c2c_engine.store.journal.flush()
    # forget the end Asterisk told (the event log is append-only, the column is not): the
    # session waits for a recording's end again
    await c2c_engine.store.db.execute(
        "UPDATE click_to_call_session SET recording_duration_ms = NULL WHERE id = $1",
        session_id,
    )
    if c2c_engine.stasis is None:
        raise AssertionError("the c2c engine runs without its Stasis app")
    assert c2c_engine.stasis.click_to_call.recheck_recordings([session_id]) == 1
    found = await watch.until_event("recording.finished", count=2)
    assert found is not told
    assert found.payload["estimated"] is True
    session = await watch.session()
    assert session.recording_duration_ms is not None
    assert abs(session.recording_duration_ms - 1000) <= 1000


def _c2c(bridges: set[str]) -> set[str]:
    return {b for b in bridges if b.startswith("c2c-")}


@pytest.mark.parametrize("ended_by", ["customer", "api"])
async def test_bridged_calls_leave_no_bridge_behind_in_asterisk(
    ended_by: str,
    c2c_engine: Engine,
    ari: aiohttp.ClientSession,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    calls = 5
    before = _c2c(await ari_bridges(ari))
    scenario = "uas_answer_then_hangup.xml" if ended_by == "customer" else "uas_answer.xml"
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT, calls=calls) as agent,
        sipp_phone(scenario, port=CUSTOMER_PORT, calls=calls, hold_ms=500) as cust,
    ):
        for _ in range(calls):
            sid, watch = await _place(c2c_engine)
            await watch.until("connected")
            if ended_by == "api":
                await end_call(c2c_engine, sid)
            done = await watch.until("completed", "failed", "canceled")
            assert done.status_to == "completed", watch.trail()
            watch.close()
        assert await agent.wait_async(30) == 0, agent.report()
        assert await cust.wait_async(30) == 0, cust.report()
    assert _c2c(await ari_bridges(ari, until=lambda now: _c2c(now) == before)) == before


async def test_resync_destroys_bridges_of_ours_whose_call_is_over(
    c2c_engine: Engine, ari: aiohttp.ClientSession
) -> None:
    """Bridges an engine left behind (it died, or predates bridge clean-up) go at the next
    resync; a bridge that is not ours stays."""
    assert c2c_engine.stasis is not None
    orphan, foreign = f"c2c-{uuid.uuid4()}", f"pbx-{uuid.uuid4()}"
    for bridge in (orphan, foreign):
        async with ari.post(f"{ARI_URL}/bridges/{bridge}", params={"type": "mixing"}) as resp:
            assert resp.status == 200, await resp.text()
    try:
        await c2c_engine.stasis.resync.run()
        assert orphan not in await ari_bridges(ari, until=lambda now: orphan not in now)
        async with ari.get(f"{ARI_URL}/bridges/{foreign}") as resp:
            assert resp.status == 200
    finally:
        async with ari.delete(f"{ARI_URL}/bridges/{foreign}"):
            pass


async def test_a_bridge_and_recording_left_by_a_dead_engine_are_adopted_not_failed_on(
    c2c_engine: Engine,
    ari: aiohttp.ClientSession,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    """The engine before this one created the call's bridge and started its recording,
    then died before it could store that: Asterisk answers 409 to doing it again, and
    the call goes on with what exists."""
    tenant = await c2c_engine.store.tenants.by_slug("default")
    await c2c_engine.store.recording.set_default(tenant.id, is_enabled=True, fmt="wav")
    try:
        with (
            sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
            sipp_phone("uas_ring_then_answer.xml", port=CUSTOMER_PORT, hold_ms=3000) as cust,
        ):
            sid, watch = await _place(c2c_engine)
            await watch.until("dialing_customer")
            bridge = f"c2c-{sid}"
            async with ari.post(f"{ARI_URL}/bridges/{bridge}", params={"type": "mixing"}) as resp:
                assert resp.status == 200, await resp.text()
            record = {"name": bridge, "format": "wav", "ifExists": "overwrite"}
            async with ari.post(f"{ARI_URL}/bridges/{bridge}/record", params=record) as resp:
                assert resp.status == 201, await resp.text()
            await watch.until("connected", "failed")
            assert (await watch.session()).status.value == "connected", watch.trail()
            await watch.until_event("recording.started")
            async with ari.get(f"{ARI_URL}/bridges/{bridge}") as resp:
                channels = set((await resp.json())["channels"])
            assert channels == {f"c2c-{sid}-agent", f"c2c-{sid}-customer"}
            await end_call(c2c_engine, sid)
            await watch.until("completed")
            await watch.until_event("recording.finished")
            assert await agent.wait_async(30) == 0, agent.report()
            assert await cust.wait_async(30) == 0, cust.report()
    finally:
        await c2c_engine.store.recording.set_default(tenant.id, is_enabled=False)
    assert bridge not in await ari_bridges(ari, until=lambda now: bridge not in now)


async def test_agent_busy(c2c_engine: Engine, sipp_phone: Callable[..., SippPhone]) -> None:
    with sipp_phone("uas_busy.xml", port=AGENT_PORT) as agent:
        sid, watch = await _place(c2c_engine)
        end = await watch.until("busy", "failed", "no_answer", "completed")
        assert end.status_to == "busy", watch.trail()
        assert await agent.wait_async(30) == 0, agent.report()
    session = await watch.session()
    assert session.hangup_cause == 17
    assert await _statuses(c2c_engine, sid) == ["queued", "dialing_agent", "busy"]


async def test_agent_no_answer_after_ring_timeout(
    migrated_db: str, sandbox: Sandbox, tmp_path: Path, sipp_phone: Callable[..., SippPhone]
) -> None:
    async with running_engine(migrated_db, sandbox, tmp_path, agent_ring_timeout=2) as engine:
        with sipp_phone("uas_noanswer.xml", port=AGENT_PORT) as agent:
            _, watch = await _place(engine)
            end = await watch.until("no_answer", "busy", "failed", "completed")
            assert end.status_to == "no_answer", watch.trail()
            assert await agent.wait_async(30) == 0, agent.report()
        session = await watch.session()
        assert session.hangup_cause == 19
        assert session.ring_ms is not None


async def test_customer_busy_hangs_up_the_agent(
    c2c_engine: Engine, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_busy.xml", port=CUSTOMER_PORT),
    ):
        sid, watch = await _place(c2c_engine)
        end = await watch.until("busy", "failed", "no_answer", "completed", "canceled")
        assert end.status_to == "busy", watch.trail()
        assert await agent.wait_async(30) == 0, agent.report()  # got its BYE
    assert await _statuses(c2c_engine, sid) == [*HAPPY[:4], "busy"]


async def test_customer_no_answer(
    migrated_db: str, sandbox: Sandbox, tmp_path: Path, sipp_phone: Callable[..., SippPhone]
) -> None:
    async with running_engine(migrated_db, sandbox, tmp_path, customer_ring_timeout=2) as engine:
        with (
            sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
            sipp_phone("uas_noanswer.xml", port=CUSTOMER_PORT),
        ):
            _, watch = await _place(engine)
            end = await watch.until("no_answer", "busy", "failed", "completed", "canceled")
            assert end.status_to == "no_answer", watch.trail()
            assert await agent.wait_async(30) == 0, agent.report()
        assert (await watch.session()).hangup_cause == 19


async def test_end_from_the_api_mid_call(
    c2c_engine: Engine, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT) as cust,
    ):
        sid, watch = await _place(c2c_engine)
        await watch.until("connected")
        ended = await end_call(c2c_engine, sid)
        assert ended["status"] == "completed"
        assert ended["end_reason"] == "ended from the ERP"
        assert await agent.wait_async(30) == 0, agent.report()
        assert await cust.wait_async(30) == 0, cust.report()


async def test_agent_hangs_up_first(
    c2c_engine: Engine, sipp_phone: Callable[..., SippPhone]
) -> None:
    with (
        sipp_phone("uas_answer_then_hangup.xml", port=AGENT_PORT, hold_ms=3000),
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT) as cust,
    ):
        _, watch = await _place(c2c_engine)
        await watch.until("connected")
        end = await watch.until("completed", "failed", "canceled")
        assert end.status_to == "completed", watch.trail()
        assert await cust.wait_async(30) == 0, cust.report()
    assert (await watch.session()).end_reason == "agent hung up"


async def test_ari_socket_cut_mid_call_reconnects_and_resyncs(
    migrated_db: str, sandbox: Sandbox, tmp_path: Path, sipp_phone: Callable[..., SippPhone]
) -> None:
    proxy = await TcpProxy(8088).start()
    try:
        async with running_engine(
            migrated_db, sandbox, tmp_path, ari_url=f"http://127.0.0.1:{proxy.port}"
        ) as engine:
            assert engine.stasis is not None
            with (
                sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
                sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=4000),
            ):
                _, watch = await _place(engine)
                await watch.until("connected")
                before = engine.stasis.link.connections
                engine.stasis.resync.completed.clear()
                assert proxy.cut() > 0
                # the link comes back and resyncs: the call is still up, so it is adopted
                await asyncio.wait_for(engine.stasis.resync.completed.wait(), 30)
                assert engine.stasis.link.connections == before + 1
                # every connection after the first is a reconnect for the admin's alert
                reconnects = sample(engine, "ctc_component_reconnects_total", component="ari")
                assert reconnects == engine.stasis.link.connections - 1
                assert sample(engine, "ctc_component_up", component="ari") == 1
                assert (await watch.session()).status.value == "connected"
                # ... and the customer's hangup after the reconnect still ends it properly
                end = await watch.until("completed", "failed")
                assert end.status_to == "completed", watch.trail()
                assert await agent.wait_async(30) == 0, agent.report()
            assert not [s for s in await engine.store.sessions.live() if s.id == watch.session_id]
    finally:
        await proxy.close()


async def test_missed_hangup_while_disconnected_is_finished_by_resync(
    migrated_db: str, sandbox: Sandbox, tmp_path: Path, sipp_phone: Callable[..., SippPhone]
) -> None:
    proxy = await TcpProxy(8088).start()
    try:
        async with running_engine(
            migrated_db, sandbox, tmp_path, ari_url=f"http://127.0.0.1:{proxy.port}"
        ) as engine:
            assert engine.stasis is not None
            with (
                sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
                sipp_phone("uas_answer.xml", port=CUSTOMER_PORT) as cust,
            ):
                sid, watch = await _place(engine)
                await watch.until("connected")
                # stop the proxy from accepting, cut the socket, hang up behind its back
                proxy.stop_listening()
                engine.stasis.resync.completed.clear()
                proxy.cut()
                for leg in ("agent", "customer"):
                    sandbox.asterisk_cli(f"channel request hangup c2c-{sid}-{leg}")
                assert await agent.wait_async(30) == 0, agent.report()
                assert await cust.wait_async(30) == 0, cust.report()
                await proxy.listen_again()
                await asyncio.wait_for(engine.stasis.resync.completed.wait(), 60)
                end = await watch.until("completed", "failed", within=10)
                assert end.status_to == "completed"
            kinds = [e.event_type for e in watch.events]
            assert "session.resync" in kinds, watch.trail()
    finally:
        await proxy.close()


@pytest.mark.parametrize("how", ["graceful", "crash"])
async def test_asterisk_restart_mid_call_ends_the_session(
    how: str, c2c_engine: Engine, sandbox: Sandbox, sipp_phone: Callable[..., SippPhone]
) -> None:
    """Graceful: Asterisk hangs the channels up and tells us. Crash (SIGKILL): it cannot,
    so the resync after the reconnect must find the call gone and say so."""
    assert c2c_engine.stasis is not None
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT),
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT),
    ):
        _, watch = await _place(c2c_engine)
        await watch.until("connected")
        c2c_engine.stasis.resync.completed.clear()
        if how == "crash":
            pid = sandbox.status().pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(sandbox.down)
        await asyncio.to_thread(sandbox.up)
        # the link reconnects to the new Asterisk, which has none of the call's channels
        await asyncio.wait_for(c2c_engine.stasis.resync.completed.wait(), 60)
        end = await watch.until("completed", "failed", within=10)
    assert end.status_to == "completed", watch.trail()
    assert not [s for s in await c2c_engine.store.sessions.live() if s.id == watch.session_id]
    if how == "crash":
        resync = [e for e in watch.events if e.event_type == "session.resync"]
        assert resync, watch.trail()
        assert resync[0].payload["channels_present"] == []
        assert "(re)connected" in resync[0].payload["reason"]
        session = await watch.session()
        assert session.hangup_cause_text == "channel gone while ARI was disconnected"


async def test_real_call_callbacks_arrive_signed_and_in_order_after_receiver_outage(
    migrated_db: str, sandbox: Sandbox, tmp_path: Path, sipp_phone: Callable[..., SippPhone]
) -> None:
    from engine.notifier import verify_signature
    from tests.support.callbacks import Receiver

    receiver = await Receiver().start()
    receiver.always_fail = True  # the ERP is down when the call starts
    slug = f"cb{uuid.uuid4().hex[:8]}"
    try:
        async with running_engine(migrated_db, sandbox, tmp_path) as engine:
            tenant = await engine.store.tenants.create(
                slug, "Callbacks", receiver.url, allow_cidrs=("127.0.0.1/32",)
            )
            secret = await engine.store.tenants.callback_secret(tenant.id)
            with (
                sipp_phone("uas_answer.xml", port=AGENT_PORT),
                sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=1000),
            ):
                watch = CallWatcher(engine)
                body = await initiate(engine, tenant=slug)
                watch.session_id = uuid.UUID(body["id"])
                await watch.until("completed", "failed", "busy")
            await receiver.wait_for(lambda reqs: len(reqs) >= 1)  # tried, refused
            receiver.always_fail = False  # the ERP is back
            expected = [
                "queued",  # the creation's callback comes first
                "dialing_agent",
                "agent_answered",
                "dialing_customer",
                "connected",
                "completed",
            ]
            await receiver.wait_for(lambda _: len(receiver.delivered(body["id"])) == len(expected))
    finally:
        await receiver.stop()
    got = receiver.delivered(body["id"])
    assert [r.json["status"] for r in got] == expected
    assert [r.json["seq"] for r in got] == sorted(r.json["seq"] for r in got)
    assert got[0].json["seq"] == 1
    # what the ERP matches the call by, without asking again
    assert {r.json["direction"] for r in got} == {"click_to_call"}
    assert got[-1].json["hangup_cause"] == 16
    assert got[-1].json["talk_ms"] is not None
    for r in got:
        assert verify_signature(secret, r.body, r.headers["X-CTC-Signature"])
    assert any(r.answered == 500 for r in receiver.requests)


async def test_agent_given_as_a_number_is_dialled_through_the_trunk(
    c2c_engine: Engine, sipp_phone: Callable[..., SippPhone]
) -> None:
    # both legs reach the trunk's SIPp, which answers two calls
    with sipp_phone("uas_answer.xml", port=CUSTOMER_PORT, calls=2) as trunk:
        watch = CallWatcher(c2c_engine)
        body = await initiate(c2c_engine, agent_number="+14155550111")
        watch.session_id = uuid.UUID(body["id"])
        await watch.until("connected")
        ended = await end_call(c2c_engine, body["id"])
        assert ended["status"] == "completed"
        assert await trunk.wait_async(30) == 0, trunk.report()
    assert (await watch.session()).agent_number == "+14155550111"

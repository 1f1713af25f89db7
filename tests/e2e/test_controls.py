"""In-call controls on a real bridged call: hold, mute, DTMF and recording pause.

Agent phone: SIPp on 127.0.0.1:5073 (endpoint agent3). Customer: SIPp on 127.0.0.1:5080
behind the `trunk` endpoint. Each control goes through the engine's API; its effect is
checked on Asterisk (ARI or its CLI), and its call event in PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from engine.daemon import Engine
from engine.devtools.sandbox import ARI_URL
from tests.e2e.engine_fixtures import (
    CUSTOMER_PORT,
    CallWatcher,
    call_api,
    end_call,
    initiate,
)
from tests.e2e.helpers import SippPhone, ari_session, moh_events, next_moh

pytestmark = pytest.mark.e2e

AGENT = "agent3"
AGENT_PORT = 5073


async def _control(engine: Engine, sid: str, action: str, body: dict[str, Any]) -> Any:
    return await call_api(engine, "POST", f"click-to-call/sessions/{sid}/{action}", body)


async def _connected_call(engine: Engine) -> tuple[str, CallWatcher]:
    watcher = CallWatcher(engine)
    body = await initiate(engine, agent_number=AGENT)
    watcher.session_id = uuid.UUID(body["id"])
    event = await watcher.until("connected", "failed", "busy", "no_answer", "canceled")
    assert event.status_to == "connected", watcher.trail()
    return body["id"], watcher


async def _event_types(engine: Engine, sid: str) -> list[str]:
    session = await engine.store.sessions.by_id(uuid.UUID(sid))
    assert session is not None
    events = await engine.store.sessions.events(session.tenant_id, session.id)
    return [e.event_type for e in events]


async def test_hold_mute_dtmf_on_a_bridged_call(
    c2c_engine: Engine, sipp_phone: Callable[..., SippPhone]
) -> None:
    async with moh_events() as moh, ari_session() as ari_http:
        with (
            sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
            sipp_phone("uas_answer.xml", port=CUSTOMER_PORT) as cust,
        ):
            sid, watch = await _connected_call(c2c_engine)
            customer = f"c2c-{sid}-customer"

            status, body = await _control(c2c_engine, sid, "hold", {"leg": "customer"})
            assert status == 200, body
            assert body["status"] == "connected"
            assert await next_moh(moh, customer) == "MusicOnHoldStart"
            status, body = await _control(c2c_engine, sid, "unhold", {"leg": "customer"})
            assert status == 200, body
            assert await next_moh(moh, customer) == "MusicOnHoldStop"

            for action in ("mute", "unmute"):
                status, body = await _control(
                    c2c_engine, sid, action, {"leg": "agent", "direction": "both"}
                )
                assert status == 200, (action, body)

            status, body = await _control(
                c2c_engine, sid, "dtmf", {"leg": "customer", "digits": "12#"}
            )
            assert status == 200, body

            # not recorded: pausing the recording is refused
            status, body = await _control(c2c_engine, sid, "recording", {"action": "pause"})
            assert status == 409, body
            assert body["error"]["code"] == "conflict"

            async with ari_http.get(f"{ARI_URL}/channels/{customer}") as resp:
                assert resp.status == 200  # the controls left the call up
            await watch.until_event("control.dtmf")
            ended = await end_call(c2c_engine, sid)
            assert ended["status"] == "completed"

            # once the call is over, every control is refused
            status, body = await _control(c2c_engine, sid, "hold", {"leg": "customer"})
            assert status == 409, body
            # both phones got (and answered) the BYE: none is left for the next test's phone
            assert await agent.wait_async(30) == 0, agent.report()
            assert await cust.wait_async(30) == 0, cust.report()
    watch.close()
    types = await _event_types(c2c_engine, sid)
    controls = [t for t in types if t.startswith("control.")]
    assert controls == [
        "control.hold",
        "control.unhold",
        "control.mute",
        "control.unmute",
        "control.dtmf",
    ]
    session = await c2c_engine.store.sessions.by_id(uuid.UUID(sid))
    assert session is not None
    events = await c2c_engine.store.sessions.events(session.tenant_id, session.id)
    dtmf = next(e for e in events if e.event_type == "control.dtmf")
    assert dtmf.payload["digits"] == "12#"
    assert dtmf.payload["leg"] == "customer"


async def test_recording_pause_and_resume(
    c2c_engine: Engine, sipp_phone: Callable[..., SippPhone]
) -> None:
    tenant = await c2c_engine.store.tenants.by_slug("default")
    assert tenant is not None
    await c2c_engine.store.recording.set_default(tenant.id, is_enabled=True, fmt="wav")
    try:
        async with ari_session() as ari_http:
            with (
                sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
                sipp_phone("uas_answer.xml", port=CUSTOMER_PORT) as cust,
            ):
                sid, watch = await _connected_call(c2c_engine)
                await watch.until_event("recording.started")
                name = f"c2c-{sid}"

                async def state() -> str:
                    async with ari_http.get(f"{ARI_URL}/recordings/live/{name}") as resp:
                        assert resp.status == 200, await resp.text()
                        return str((await resp.json())["state"])

                status, body = await _control(c2c_engine, sid, "recording", {"action": "pause"})
                assert status == 200, body
                assert await state() == "paused"
                status, body = await _control(c2c_engine, sid, "recording", {"action": "resume"})
                assert status == 200, body
                assert await state() == "recording"
                await end_call(c2c_engine, sid)
                await watch.until_event("recording.finished")
                assert await agent.wait_async(30) == 0, agent.report()
                assert await cust.wait_async(30) == 0, cust.report()
        watch.close()
    finally:
        await c2c_engine.store.recording.set_default(tenant.id, is_enabled=False)
    types = await _event_types(c2c_engine, sid)
    assert [t for t in types if t.startswith("recording.")] == [
        "recording.started",
        "recording.paused",
        "recording.resumed",
        "recording.finished",
    ]

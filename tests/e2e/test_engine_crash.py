"""kill -9 of the engine at each state of a click-to-call, phones that keep going, restart.

The engine runs as its own ``ctc run`` process (:class:`EngineProcess`) so a crash is a real
one: no graceful stop, tasks in flight lost, the ARI socket gone. Asterisk keeps the
calls (it owns the media) and records every leg's hangup in AstDB through the
``[ctc-hangup]`` handler. After the restart every session must end in the status and with
the cause the phones saw, at the time they saw it; a call both parties kept must go on;
no session stays live and no bridge of ours is left in Asterisk.

Phones: agent1 (SIPp on 5071), the customer behind the trunk (5080), agent3 (5073).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from engine.devtools.sandbox import Sandbox
from engine.devtools.sipp import SippPhone
from engine.store.database import Database
from engine.store.records import NewSession
from engine.store.repositories import Store
from tests.e2e.engine_fixtures import AGENT, AGENT_PORT, CUSTOMER, CUSTOMER_PORT
from tests.e2e.engine_process import EngineProcess
from tests.e2e.helpers import ari_bridges, ari_has, ari_session
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

AGENT3_PORT = 5073
TERMINAL = ("completed", "busy", "no_answer", "failed", "canceled", "rejected")


@pytest.fixture
def engine_process(
    migrated_db: str, sandbox: Sandbox, tmp_path: Path
) -> Callable[..., EngineProcess]:
    made: list[EngineProcess] = []

    def make(**calls: Any) -> EngineProcess:
        proc = EngineProcess(
            migrated_db,
            sandbox,
            tmp_path / f"engine{len(made)}",
            app=f"ctc-crash-{uuid.uuid4().hex[:8]}",
            **calls,
        )
        made.append(proc)
        return proc

    yield make  # type: ignore[misc]
    for proc in made:
        proc.stop()


async def _initiate(proc: EngineProcess) -> str:
    status, body = await proc.api(
        "POST",
        "/api/v1/click-to-call/initiate",
        {"agent_number": AGENT, "customer_number": CUSTOMER},
    )
    assert status == 202, body
    return str(body["id"])


# the leg a dialing status rings: the engine stores the status, then originates
_RINGING = {"dialing_agent": "agent", "dialing_customer": "customer"}


async def _crash_in(proc: EngineProcess, db: asyncpg.Connection, status: str) -> str:
    """Place a call and kill -9 the engine once the call is committed in ``status`` (and,
    for a dialing status, once Asterisk has the leg it rings: a kill between storing the
    status and the originate is another case, see the session note)."""
    sid = await _initiate(proc)
    await eventually(
        lambda: _in_status(db, sid, status), within=30, what=f"session {sid} in {status}"
    )
    if (leg := _RINGING.get(status)) is not None:
        async with ari_session() as ari:
            await eventually(lambda: ari_has(ari, "channels", f"c2c-{sid}-{leg}"), within=30)
    proc.kill()
    return sid


async def _hung_up(*phones: SippPhone) -> None:
    """Every phone finished its call cleanly (answered, then BYE either way)."""
    for phone in phones:
        assert await phone.wait_async(30) == 0, phone.report()


async def _row(db: asyncpg.Connection, sid: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM click_to_call_session WHERE id = $1", uuid.UUID(sid))
    assert row is not None
    return row


async def _in_status(db: asyncpg.Connection, sid: str, *statuses: str) -> asyncpg.Record | None:
    """The committed session's row if it is in one of ``statuses``, else None. The state is
    in PostgreSQL, written by another process: no event to wait on, tests poll this with
    :func:`eventually`."""
    row = await _row(db, sid)
    return row if row["status"] in statuses else None


async def _events(db: asyncpg.Connection, sid: str) -> list[str]:
    rows = await db.fetch(
        "SELECT event_type FROM call_event WHERE session_id = $1 ORDER BY seq", uuid.UUID(sid)
    )
    return [r["event_type"] for r in rows]


async def _our_bridges(sid: str, *, gone: bool = True) -> list[str]:
    """The call's bridges in Asterisk (waited for to be gone, when they should be)."""
    async with ari_session() as ari:
        found = await ari_bridges(ari, until=lambda now: not gone or not _of(sid, now))
    return sorted(_of(sid, found))


def _of(sid: str, bridges: set[str]) -> set[str]:
    return {b for b in bridges if sid in b}


async def _none_live(db: asyncpg.Connection, *sids: str) -> None:
    """None of the test's sessions is left live (other tests share the database)."""
    live = await db.fetch(
        "SELECT id, status FROM click_to_call_session "
        "WHERE id = ANY($1::uuid[]) AND status <> ALL($2::text[])",
        [uuid.UUID(sid) for sid in sids],
        list(TERMINAL),
    )
    assert live == [], live


# -- queued -------------------------------------------------------------------------------------


async def test_queued_calls_whose_start_was_lost_are_dialed_or_failed_by_age(
    engine_process: Callable[..., EngineProcess],
    migrated_db: str,
    db: asyncpg.Connection,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    """The engine died right after accepting two calls (stored queued, never started):
    the next engine dials the fresh one and fails the one older than the deadline."""
    async with Database(migrated_db) as database:
        store = Store.over(database)
        tenant = await store.tenants.by_slug("default")
        fresh, _ = await store.sessions.create(NewSession(tenant.id, AGENT, CUSTOMER))
        stale, _ = await store.sessions.create(NewSession(tenant.id, AGENT, CUSTOMER))
    await db.execute(
        "UPDATE click_to_call_session SET created_at = $2 WHERE id = $1",
        stale.id,
        datetime.now(UTC) - timedelta(minutes=10),
    )
    proc = engine_process(queued_start_deadline=120)
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=1000) as cust,
    ):
        await proc.start()
        done = await eventually(
            lambda: _in_status(db, str(fresh.id), *TERMINAL),
            within=30,
            what=f"session {fresh.id} ended",
        )
        assert (done["status"], done["hangup_cause"]) == ("completed", 16)
        await _hung_up(agent, cust)
    failed = await eventually(
        lambda: _in_status(db, str(stale.id), *TERMINAL),
        within=30,
        what=f"session {stale.id} ended",
    )
    assert failed["status"] == "failed"
    assert "not started within 120 s" in failed["end_reason"]
    assert "session.start_expired" in await _events(db, str(stale.id))
    await _none_live(db, str(fresh.id), str(stale.id))


# -- dialing the agent --------------------------------------------------------------------------


async def test_crash_while_the_agent_rings_and_the_agent_answers_after_the_restart(
    engine_process: Callable[..., EngineProcess],
    db: asyncpg.Connection,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    proc = engine_process()
    await proc.start()
    with (
        sipp_phone("uas_ring_then_answer.xml", port=AGENT_PORT, hold_ms=6000) as agent,
        sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=1000) as cust,
    ):
        sid = await _crash_in(proc, db, "dialing_agent")
        await proc.start()  # the agent still rings: the new engine adopts the call
        done = await eventually(
            lambda: _in_status(db, sid, *TERMINAL), within=30, what=f"session {sid} ended"
        )
        assert (done["status"], done["hangup_cause"]) == ("completed", 16), proc.tail()
        assert not done["end_estimated"]
        await _hung_up(agent, cust)
    assert await _our_bridges(sid) == []
    await _none_live(db, sid)


async def test_crash_while_the_agent_rings_and_the_agent_answers_while_it_is_down(
    engine_process: Callable[..., EngineProcess],
    db: asyncpg.Connection,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    """Nobody can take the agent's answer (Asterisk hangs the leg up: no app); the next
    engine ends the call failed at the time Asterisk recorded, not at the restart."""
    proc = engine_process()
    await proc.start()
    with sipp_phone("uas_ring_then_answer.xml", port=AGENT_PORT, hold_ms=1500) as agent:
        sid = await _crash_in(proc, db, "dialing_agent")
        await _hung_up(agent)  # answered, then BYE
        restarted_at = datetime.now(UTC)
        await proc.start()
        done = await eventually(
            lambda: _in_status(db, sid, *TERMINAL), within=30, what=f"session {sid} ended"
        )
    assert done["status"] == "failed", proc.tail()
    assert not done["end_estimated"]
    assert done["ended_at"] < restarted_at
    assert done["hangup_cause"] is not None
    assert "session.resync" in await _events(db, sid)
    await _none_live(db, sid)


# -- dialing the customer -----------------------------------------------------------------------


async def test_crash_while_the_customer_rings_and_the_customer_answers_after_the_restart(
    engine_process: Callable[..., EngineProcess],
    db: asyncpg.Connection,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    proc = engine_process()
    await proc.start()
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_ring_then_answer.xml", port=CUSTOMER_PORT, hold_ms=6000) as cust,
    ):
        sid = await _crash_in(proc, db, "dialing_customer")
        await proc.start()
        # bridged by the new engine
        await eventually(
            lambda: _in_status(db, sid, "connected"), within=30, what=f"session {sid} connected"
        )
        assert await _our_bridges(sid, gone=False) == [f"c2c-{sid}"]
        status, body = await proc.api("POST", f"/api/v1/click-to-call/sessions/{sid}/end", {})
        assert status == 200, body
        done = await eventually(
            lambda: _in_status(db, sid, *TERMINAL), within=30, what=f"session {sid} ended"
        )
        assert done["status"] == "completed"
        await _hung_up(agent, cust)
    assert await _our_bridges(sid) == []
    await _none_live(db, sid)


# -- connected ----------------------------------------------------------------------------------


async def test_crash_while_connected_and_both_keep_talking_the_call_goes_on(
    engine_process: Callable[..., EngineProcess],
    db: asyncpg.Connection,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    proc = engine_process()
    await proc.start()
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=6000) as cust,
    ):
        sid = await _crash_in(proc, db, "connected")
        await proc.start()
        assert (await _row(db, sid))["status"] == "connected"  # adopted, still talking
        # the customer hangs up later
        done = await eventually(
            lambda: _in_status(db, sid, *TERMINAL), within=30, what=f"session {sid} ended"
        )
        assert (done["status"], done["hangup_cause"]) == ("completed", 16)
        assert done["end_reason"] == "customer hung up"
        assert not done["end_estimated"]
        await _hung_up(agent, cust)
    assert await _our_bridges(sid) == []
    await _none_live(db, sid)


@pytest.mark.parametrize("handler", ["ctc-hangup,s,1", ""])
async def test_crash_while_connected_and_the_customer_hangs_up_while_it_is_down(
    handler: str,
    engine_process: Callable[..., EngineProcess],
    db: asyncpg.Connection,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    """With the hangup handler Asterisk recorded when and why the customer left: the call
    ends then, with that cause, and talk time is what the phones talked. Without it the end
    is when the engine noticed, marked estimated."""
    proc = engine_process(hangup_handler=handler)
    await proc.start()
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer_then_hangup.xml", port=CUSTOMER_PORT, hold_ms=1500) as cust,
    ):
        sid = await _crash_in(proc, db, "connected")
        await _hung_up(cust)  # the customer hung up
        hung_up_by = datetime.now(UTC)
        await proc.start()
        done = await eventually(
            lambda: _in_status(db, sid, *TERMINAL), within=30, what=f"session {sid} ended"
        )
        # the agent, left alone in the bridge, is hung up by the new engine
        await _hung_up(agent)
    assert done["status"] == "completed", proc.tail()
    assert done["end_reason"] == "customer hung up"
    if handler:
        assert (done["hangup_cause"], done["end_estimated"]) == (16, False)
        assert done["ended_at"] <= hung_up_by
        talked = done["ended_at"] - done["connected_at"]
        assert done["talk_ms"] == round(talked.total_seconds() * 1000)
        assert done["talk_ms"] < (hung_up_by - done["connected_at"]).total_seconds() * 1000
    else:
        assert (done["hangup_cause"], done["end_estimated"]) == (None, True)
        assert done["ended_at"] > hung_up_by
    assert await _our_bridges(sid) == []
    await _none_live(db, sid)


# -- in a transfer ------------------------------------------------------------------------------


async def test_crash_during_an_attended_transfer_the_next_engine_completes_it(
    engine_process: Callable[..., EngineProcess],
    db: asyncpg.Connection,
    sipp_phone: Callable[..., SippPhone],
) -> None:
    proc = engine_process()
    await proc.start()
    with (
        sipp_phone("uas_answer.xml", port=AGENT_PORT) as agent,
        sipp_phone("uas_answer.xml", port=CUSTOMER_PORT) as cust,
        sipp_phone("uas_answer.xml", port=AGENT3_PORT) as agent3,
    ):
        sid = await _initiate(proc)
        await eventually(
            lambda: _in_status(db, sid, "connected"), within=30, what=f"session {sid} connected"
        )
        path = f"/api/v1/click-to-call/sessions/{sid}/transfer"
        status, transfer = await proc.api(
            "POST", path, {"type": "attended", "target": "agent3", "leg": "agent"}
        )
        assert status == 200, transfer
        state = "SELECT state FROM call_transfer WHERE id = $1"

        async def consulting() -> bool:
            return await db.fetchval(state, uuid.UUID(transfer["id"])) == "consulting"

        await eventually(consulting, within=30, interval=0.05)
        proc.kill()
        await proc.start()
        status, body = await proc.api("POST", f"{path}/complete")
        assert (status, body["state"]) == (200, "completed"), body
        await _hung_up(agent)  # agent1 released
        status, body = await proc.api("POST", f"/api/v1/click-to-call/sessions/{sid}/end", {})
        assert status == 200, body
        done = await eventually(
            lambda: _in_status(db, sid, *TERMINAL), within=30, what=f"session {sid} ended"
        )
        assert done["status"] == "completed"
        await _hung_up(agent3, cust)
    assert await _our_bridges(sid) == []
    await _none_live(db, sid)

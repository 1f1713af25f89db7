"""Two PBX nodes on one machine and one PostgreSQL: calls placed on any node, events seen
from any API, controls sent to any node, a dead node's calls claimed or ended by the other.

Node ``a`` is the sandbox instance on 127.0.0.2 with its engine (``ctc run`` as a process
of its own, node name ``a``); node ``b`` the instance on 127.0.0.3 with engine ``b``. Both
Asterisks keep their standard ports (the whole 127.0.0.0/8 is loopback) and dial the same
SIPp phones on 127.0.0.1; each phone logs the INVITEs it receives, with the address of the
Asterisk that sent each one, so a test counts which node dialled a call and how often.
An engine is killed with ``kill -9``; a whole node dies when its engine and its Asterisk
are both killed (:meth:`~engine.devtools.sandbox.Sandbox.crash`).

Phones: agent1 (SIPp on 5071), the customer behind the trunk (5080).
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from engine.devtools.sandbox import Sandbox
from engine.devtools.sipp import SippPhone
from engine.errors import SandboxError
from tests.e2e.engine_fixtures import AGENT, AGENT_PORT, CUSTOMER, CUSTOMER_PORT
from tests.e2e.engine_process import EngineProcess
from tests.e2e.helpers import moh_events, next_moh
from tests.support.calls import CONNECT
from tests.support.ci import unavailable
from tests.support.cli import CTC
from tests.support.sse import open_socket_stream
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

#: node name -> the loopback address of its sandbox Asterisk
NODES = {"a": "127.0.0.2", "b": "127.0.0.3"}
TERMINAL = ("completed", "busy", "no_answer", "failed", "canceled", "rejected")
C2C = "/api/v1/click-to-call"


@pytest.fixture(scope="module")
def node_boxes() -> Iterator[dict[str, Sandbox]]:
    """The two sandbox instances, started for this module and always stopped after it."""
    boxes = {name: Sandbox(instance=name, address=address) for name, address in NODES.items()}
    try:
        yield boxes
    finally:
        for box in boxes.values():
            box.down()


@pytest.fixture
def boxes(node_boxes: dict[str, Sandbox]) -> dict[str, Sandbox]:
    """Both instances up (again, after a test crashed one)."""
    try:
        for box in node_boxes.values():
            box.up()
    except SandboxError as exc:
        unavailable("sandbox instances", str(exc))
    return node_boxes


@pytest.fixture
def engines(
    migrated_db: str, boxes: dict[str, Sandbox], tmp_path: Path
) -> Iterator[Callable[..., dict[str, EngineProcess]]]:
    """Factory: the engines of nodes a and b (not started), each over its own Asterisk and
    with its own API socket, one database; ``node`` settings apply to both."""
    made: list[EngineProcess] = []
    app = f"ctc-nodes-{uuid.uuid4().hex[:8]}"

    def make(**node: Any) -> dict[str, EngineProcess]:
        pair = {
            name: EngineProcess(
                migrated_db,
                boxes[name],
                tmp_path / f"engine-{name}",
                app=app,
                node={"name": name, **node},
            )
            for name in NODES
        }
        made.extend(pair.values())
        return pair

    yield make
    for proc in made:
        proc.stop()


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[Callable[..., tuple[SippPhone, SippPhone]]]:
    """Factory: the agent's and the customer's phones for ``calls`` calls, logging the
    INVITEs they receive; stopped at the end of the test."""
    made: list[SippPhone] = []

    def make(
        calls: int, *, customer: str = "uas_answer_then_hangup.xml", hold_ms: int = 1000
    ) -> tuple[SippPhone, SippPhone]:
        workdir = tmp_path / "sipp"
        agent = SippPhone(
            "uas_answer.xml", port=AGENT_PORT, workdir=workdir, calls=calls, trace_messages=True
        )
        cust = SippPhone(
            customer,
            port=CUSTOMER_PORT,
            workdir=workdir,
            calls=calls,
            hold_ms=hold_ms,
            trace_messages=True,
        )
        made.extend((agent, cust))
        return agent.start(), cust.start()

    yield make
    for phone in made:
        phone.stop()


async def _initiate(proc: EngineProcess) -> str:
    status, body = await proc.api(
        "POST", f"{C2C}/initiate", {"agent_number": AGENT, "customer_number": CUSTOMER}
    )
    assert status == 202, body
    return str(body["id"])


async def _sessions(db: asyncpg.Connection, sids: list[str]) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT id::text AS id, status, node, end_reason FROM click_to_call_session "
            "WHERE id = ANY($1::uuid[]) ORDER BY created_at",
            sids,
        )
    )


async def _all_ended(db: asyncpg.Connection, sids: list[str], *, within: float = 60.0) -> None:
    async def ended() -> bool:
        return all(row["status"] in TERMINAL for row in await _sessions(db, sids))

    await eventually(ended, within=within, interval=0.1, what=f"{len(sids)} sessions ended")


async def _status(db: asyncpg.Connection, sid: str) -> str:
    status: str = await db.fetchval(
        "SELECT status FROM click_to_call_session WHERE id = $1", uuid.UUID(sid)
    )
    return status


async def _events(db: asyncpg.Connection, sid: str) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT id, event_type, status_to, recorded_at, node FROM call_event "
            "WHERE session_id = $1 ORDER BY seq",
            uuid.UUID(sid),
        )
    )


def _dialled_by(*phones: SippPhone) -> list[dict[str, int]]:
    """Per phone: how many calls each Asterisk address dialled to it."""
    counts = []
    for phone in phones:
        per_node: dict[str, int] = {}
        for address in phone.received_invites().values():
            per_node[address] = per_node.get(address, 0) + 1
        counts.append(per_node)
    return counts


def test_instances_run_beside_the_default_sandbox_each_on_its_own_address(
    sandbox: Sandbox, boxes: dict[str, Sandbox]
) -> None:
    everyone = {"127.0.0.1": sandbox, **{NODES[name]: box for name, box in boxes.items()}}
    pids = set()
    for address, box in everyone.items():
        status = box.status()
        assert status.ari_ok, address
        assert status.pid is not None
        pids.add(status.pid)
        assert f"{address}:5060" in box.asterisk_cli("pjsip show transports")
    assert len(pids) == 3
    # a third instance through the CLI: its own overlay, its own address, gone at down
    up = _ctc("sandbox", "up", "--instance", "c", "--address", "127.0.0.4")
    assert "sandbox c up on 127.0.0.4" in up
    third = Sandbox(instance="c")
    try:
        assert "c: running on 127.0.0.4" in _ctc("sandbox", "status", "--all")
        http_conf = (third.root / "etc/asterisk/http.conf").read_text()
        assert "bindaddr = 127.0.0.4" in http_conf
        # the shared root is read-only to instances: the default's configuration is intact
        assert "bindaddr = 127.0.0.1" in (sandbox.root / "etc/asterisk/http.conf").read_text()
    finally:
        assert _ctc("sandbox", "down", "--instance", "c").strip() == "sandbox c down"
    assert not third.status().running
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    assert [m for m in mounts if m.startswith(f"{third.state_dir}/")] == []
    for box in everyone.values():
        assert box.status().ari_ok  # the others never noticed


def _ctc(*args: str) -> str:
    done = subprocess.run(
        [str(CTC), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_calls_initiated_on_node_a_are_spread_across_both_and_complete(
    engines: Callable[..., dict[str, EngineProcess]],
    phones: Callable[..., tuple[SippPhone, SippPhone]],
    db: asyncpg.Connection,
) -> None:
    # Four calls at most per node and eight at once: node a cannot hold them all.
    nodes = engines(claim_queue=True, max_calls=4, claim_batch=1)
    for proc in nodes.values():
        await proc.start()
    agent, cust = phones(8, hold_ms=3000)
    sids = await asyncio.gather(*(_initiate(nodes["a"]) for _ in range(8)))
    await _all_ended(db, sids)
    rows = await _sessions(db, sids)
    assert [row["status"] for row in rows] == ["completed"] * 8, rows
    for row in rows:  # the session says which node placed it, on either node's API
        status, body = await nodes["b"].api("GET", f"{C2C}/sessions/{row['id']}")
        assert status == 200, body
        assert body["node"] == row["node"]
    placed = {name: sum(row["node"] == name for row in rows) for name in NODES}
    assert placed["a"] >= 1, placed
    assert placed["b"] >= 1, placed
    assert placed["a"] + placed["b"] == 8, placed
    assert await agent.wait_async(30) == 0, agent.report()
    assert await cust.wait_async(30) == 0, cust.report()
    # each call was dialled once, by the Asterisk of the node its session names
    expected = {NODES[name]: count for name, count in placed.items()}
    assert _dialled_by(agent, cust) == [expected, expected]


async def test_sse_on_node_b_shows_node_a_call_events_in_order(
    engines: Callable[..., dict[str, EngineProcess]],
    phones: Callable[..., tuple[SippPhone, SippPhone]],
    db: asyncpg.Connection,
) -> None:
    nodes = engines()  # no claim queue: the engine that receives a call places it
    for proc in nodes.values():
        await proc.start()
    agent, cust = phones(1)
    async with open_socket_stream(nodes["b"].socket, "default") as on_b:
        sid = await _initiate(nodes["a"])
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(60):
            while not seen or seen[-1]["data"]["status_to"] not in TERMINAL:
                event = await on_b.event()
                assert event is not None, f"stream ended after {seen}"
                if event["data"]["session_id"] == sid:
                    seen.append(event)
    assert await agent.wait_async(30) == 0, agent.report()
    assert await cust.wait_async(30) == 0, cust.report()
    (row,) = await _sessions(db, [sid])
    assert (row["node"], row["status"]) == ("a", "completed")
    stored = await _events(db, sid)
    # B streamed every event A committed up to the end, in A's order, once each
    assert [(e["id"], e["event"]) for e in seen] == [
        (r["id"], r["event_type"]) for r in stored[: len(seen)]
    ]
    statuses = [e["data"]["status_to"] for e in seen if e["data"]["status_to"] is not None]
    assert statuses == ["queued", *CONNECT, "completed"]
    assert _dialled_by(agent) == [{NODES["a"]: 1}]


async def test_a_hold_sent_to_node_b_reaches_a_call_on_node_a(
    engines: Callable[..., dict[str, EngineProcess]],
    phones: Callable[..., tuple[SippPhone, SippPhone]],
    db: asyncpg.Connection,
) -> None:
    nodes = engines()
    for proc in nodes.values():
        await proc.start()
    agent, cust = phones(1, customer="uas_answer.xml")
    async with moh_events(NODES["a"]) as moh:
        sid = await _initiate(nodes["a"])
        await eventually(
            lambda: _is(db, sid, "connected"), within=30, what=f"session {sid} connected"
        )
        customer = f"c2c-{sid}-customer"
        for action, moh_event in (("hold", "MusicOnHoldStart"), ("unhold", "MusicOnHoldStop")):
            status, body = await nodes["b"].api(
                "POST", f"{C2C}/sessions/{sid}/{action}", {"leg": "customer"}
            )
            assert status == 200, body
            assert body["status"] == "connected"
            assert await next_moh(moh, customer) == moh_event
        status, body = await nodes["b"].api(
            "POST", f"{C2C}/sessions/{sid}/end", {"reason": "ended through node b"}
        )
        assert status == 200, body
        assert body["status"] == "completed"
    assert await agent.wait_async(30) == 0, agent.report()
    assert await cust.wait_async(30) == 0, cust.report()
    types = [e["event_type"] for e in await _events(db, sid)]
    assert [t for t in types if t.startswith("control.")] == ["control.hold", "control.unhold"]
    (row,) = await _sessions(db, [sid])
    assert row["node"] == "a"


async def _is(db: asyncpg.Connection, sid: str, status: str) -> bool:
    return await _status(db, sid) == status


async def test_node_a_engine_killed_with_queued_calls_node_b_places_them_none_twice(
    engines: Callable[..., dict[str, EngineProcess]],
    phones: Callable[..., tuple[SippPhone, SippPhone]],
    db: asyncpg.Connection,
) -> None:
    # Node a takes one call at a time; node b is not running yet: a's queue fills.
    nodes = engines(
        claim_queue=True, max_calls=1, claim_batch=1, heartbeat_interval=0.5, stale_after=2.0
    )
    await nodes["a"].start()
    agent, cust = phones(4, hold_ms=2000)
    sids = [await _initiate(nodes["a"]) for _ in range(4)]

    async def one_live_on_a() -> bool:
        rows = await _sessions(db, sids)
        on_a = [r for r in rows if r["node"] == "a" and r["status"] not in TERMINAL]
        return len(on_a) == 1 and on_a[0]["status"] != "queued"

    await eventually(one_live_on_a, within=30, what="node a dialling one call")
    queued = [r["id"] for r in await _sessions(db, sids) if r["node"] is None]
    assert len(queued) == 3, await _sessions(db, sids)
    nodes["a"].kill()
    await nodes["b"].start()
    await _all_ended(db, queued)
    rows = {r["id"]: r for r in await _sessions(db, sids)}
    assert [rows[sid]["node"] for sid in queued] == ["b"] * 3
    assert [rows[sid]["status"] for sid in queued] == ["completed"] * 3
    # a's own call outlived its engine in its Asterisk; a's restart takes it back
    await nodes["a"].start()
    await _all_ended(db, sids)
    assert await agent.wait_async(30) == 0, agent.report()
    assert await cust.wait_async(30) == 0, cust.report()
    # four calls, each dialled once: one by a's Asterisk, three by b's
    expected = {NODES["a"]: 1, NODES["b"]: 3}
    assert _dialled_by(agent, cust) == [expected, expected]


async def test_node_a_killed_entirely_its_live_sessions_end_after_the_grace_period(
    engines: Callable[..., dict[str, EngineProcess]],
    boxes: dict[str, Sandbox],
    phones: Callable[..., tuple[SippPhone, SippPhone]],
    db: asyncpg.Connection,
) -> None:
    grace = 4.0
    nodes = engines(heartbeat_interval=0.5, stale_after=1.0, failover_after=grace)
    for proc in nodes.values():
        await proc.start()
    phones(1, customer="uas_answer.xml")
    sid = await _initiate(nodes["a"])
    await eventually(lambda: _is(db, sid, "connected"), within=30, what=f"{sid} connected")
    nodes["a"].kill()
    boxes["a"].crash()  # the machine is gone: its Asterisk with it, no BYE to anyone
    last_beat = await db.fetchval("SELECT heartbeat_at FROM engine_node WHERE name = 'a'")
    await _all_ended(db, [sid], within=60)
    (row,) = await _sessions(db, [sid])
    assert (row["status"], row["end_reason"]) == ("failed", "node_lost")
    events = await _events(db, sid)
    lost = [e for e in events if e["event_type"] == "session.owner_lost"]
    assert len(lost) == 1, [e["event_type"] for e in events]
    # ended by node b, and not before node a had been silent for the grace period
    assert lost[0]["node"] == "b"
    assert lost[0]["recorded_at"] - last_beat >= timedelta(seconds=grace)
    assert events[-1]["status_to"] == "failed"

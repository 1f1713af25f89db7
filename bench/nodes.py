"""Two PBX nodes on one machine and one PostgreSQL: what a second node adds, what a hop costs.

Node ``a`` is the sandbox instance on 127.0.0.2 with its engine, node ``b`` the instance on
127.0.0.3 with its own (``ctc run`` processes, one database, ``node.claim_queue`` on). Two
runs, one table each (run as root, holding the sandbox lock; both instances are brought up
and left down):

1. Calls placed per second: N click-to-calls offered to node a's API as fast as it answers
   (at most 20 requests in flight), the SIPp agent answering and the customer hanging up
   after ``--hold`` ms; first with node a alone, then with both nodes claiming from the
   queue. Placed/s counts from the first session stored to the last agent leg dialled,
   completed/s to the last call ended; the ratio two/one is the figure that counts. Both
   nodes (two Asterisks, two engines), PostgreSQL and SIPp share the machine's cores: on a
   2-core machine the ratio says whether the queue spreads the work, not what a second
   machine would add.
2. Originate latency through a remote node's API: ``initiate`` answered 202 by node b (an
   engine without an Asterisk, so it only queues) -> the INVITE of the agent leg that node
   a claimed and dialled arrives at the phone (a UDP responder in this process answering
   486, as in bench/originate.py, so both timestamps share one clock). Beside it, the same
   through node a's own API with the queue, and without the queue (the engine that receives
   the call dials it).

    .venv/bin/python -m bench.nodes --calls 200 --hold 1000 --latency-calls 200 --rate 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.originate import PHONE_PORT, BusyPhone, pct
from bench.procs import cpu_seconds
from engine.devtools.databases import create_database, drop_database
from engine.devtools.sandbox import ARI_PASSWORD, Sandbox
from engine.devtools.sipp import SippPhone
from engine.store.migrations import default_migrations_dir, migrate

NODES = {"a": "127.0.0.2", "b": "127.0.0.3"}
AMI_PASSWORD = "ctc-sandbox"  # dialplan/manager.conf, sandbox only
AGENT, CUSTOMER = "agent1", "+14155550100"
TERMINAL = ("completed", "busy", "no_answer", "failed", "canceled", "rejected")
IN_FLIGHT = 20  # initiate requests in flight at once
CLAIM_TICK_S = 1.0  # engine.claim_queue.ClaimQueue's tick: peers' loads refreshed this often


class Node:
    """One engine (``ctc run``) of node ``name``, over its sandbox instance or none."""

    def __init__(self, name: str, db_url: str, box: Sandbox | None, work: Path) -> None:
        self.name = name
        self.db_url = db_url
        self.box = box
        self.work = work / f"engine-{name}"
        self.socket = self.work / "engine.sock"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *, app: str, calls: dict[str, Any], **node: Any) -> None:
        """Start the engine (``calls:`` and ``node:`` settings as given); return once its API
        answers and its ARI link is up."""
        self.work.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {
            "node": {"name": self.name, **node},
            "database": {"url": self.db_url, "max_size": 20},
            "api": {"socket": str(self.socket), "socket_mode": "0600"},
            "log": {"level": "warning", "format": "json"},
            "agi": {"enabled": False},
            "calls": calls,
        }
        if self.box is None:
            settings["ari"] = {"enabled": False}
        else:
            settings["ari"] = {
                "url": self.box.ari_url.removesuffix("/ari"),
                "username": "ctc",
                "password": ARI_PASSWORD,
                "app": app,
                "recording_dir": str(self.box.root / "var/spool/asterisk/recording"),
            }
            settings["ami"] = {"host": self.box.address, "password": AMI_PASSWORD}
        config = self.work / "engine.yaml"
        config.write_text(json.dumps(settings))  # JSON is YAML
        self.proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("ctc")),
            "--config",
            str(config),
            "run",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=(self.work / "engine.log").open("ab"),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        async with self.http() as http:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    async with http.get("http://ctc/readyz") as resp:
                        ready, body = resp.status == 200, await resp.json()
                    ari = body.get("components", {}).get("ari", {}).get("state")
                    if ready and (self.box is None or ari == "up"):
                        return
                except (aiohttp.ClientError, ValueError):
                    pass
                await asyncio.sleep(0.05)
        await self.stop()
        raise SystemExit(f"engine {self.name} not ready; see {self.work / 'engine.log'}")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        self.proc = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"engine {self.name} is not running")
        return self.proc.pid

    def http(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self.socket), limit=IN_FLIGHT)
        )


@asynccontextmanager
async def running(
    nodes: list[Node], calls: dict[str, Any] | None = None, **node: Any
) -> AsyncIterator[list[Node]]:
    app = f"ctc-bench-{uuid.uuid4().hex[:8]}"
    try:
        for n in nodes:
            await n.start(app=app, calls=calls or {}, **node)
        await _seen_up(nodes)
        yield nodes
    finally:
        for n in nodes:
            await n.stop()


async def _seen_up(nodes: list[Node]) -> None:
    """Wait until every node that dials has beaten with its Asterisk up, then two claimer
    ticks: an engine counts another as a peer only from that beat (its first beat, sent
    before its ARI link is up, says otherwise), and before that it takes every call itself
    as a lone engine does."""
    dialling = [n.name for n in nodes if n.box is not None]
    if len(nodes) < 2:
        return
    conn = await asyncpg.connect(nodes[0].db_url)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            up = await conn.fetchval(
                "SELECT count(*) FROM engine_node WHERE name = ANY($1::text[]) "
                "AND asterisk = 'up' AND stopped_at IS NULL",
                dialling,
            )
            if up == len(dialling):
                await asyncio.sleep(2 * CLAIM_TICK_S)
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise SystemExit(f"nodes {dialling} never all beat with their Asterisk up")


async def initiate(http: aiohttp.ClientSession, agent: str) -> tuple[str, float]:
    """``POST initiate``; the session id and when the 202 arrived."""
    body = {"agent_number": agent, "customer_number": CUSTOMER}
    async with http.post("http://ctc/api/v1/click-to-call/initiate", json=body) as resp:
        accepted = time.perf_counter()
        data = await resp.json()
        assert resp.status == 202, data
    return str(data["id"]), accepted


async def placed_by(db: asyncpg.Connection, ids: list[str]) -> dict[str, int]:
    """How many of the sessions ``ids`` each node owns (``-``: none, still queued)."""
    rows = await db.fetch(
        "SELECT coalesce(node, '-') AS node, count(*) AS n FROM click_to_call_session "
        "WHERE id = ANY($1::uuid[]) GROUP BY 1 ORDER BY 1",
        ids,
    )
    return {r["node"]: r["n"] for r in rows}


# -- 1. calls placed per second, one node and two ------------------------------------------


async def placed_run(
    db: asyncpg.Connection, nodes: list[Node], work: Path, calls: int, hold_ms: int
) -> dict[str, Any]:
    """``calls`` calls offered to the first node's API, placed by whichever nodes run."""
    phones = work / f"sipp-{len(nodes)}"
    agent = SippPhone("uas_answer.xml", port=5071, workdir=phones, calls=calls, timeout_s=300)
    customer = SippPhone(
        "uas_answer_then_hangup.xml",
        port=5080,
        workdir=phones,
        calls=calls,
        hold_ms=hold_ms,
        timeout_s=300,
    )
    cpu0 = {n.name: cpu_seconds(n.pid) for n in nodes}
    ids: list[str] = []
    with agent, customer:
        gate = asyncio.Semaphore(IN_FLIGHT)
        async with nodes[0].http() as http:

            async def one() -> None:
                async with gate:
                    ids.append((await initiate(http, AGENT))[0])

            await asyncio.gather(*(one() for _ in range(calls)))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ended = await db.fetchval(
                "SELECT count(*) FROM click_to_call_session "
                "WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])",
                ids,
                list(TERMINAL),
            )
            if ended == calls:
                break
            await asyncio.sleep(0.2)
        await asyncio.to_thread(agent.wait, 60)
        await asyncio.to_thread(customer.wait, 60)
    row = await db.fetchrow(
        "SELECT min(s.created_at) AS first, max(s.ended_at) AS last_end, "
        "count(*) FILTER (WHERE s.status = 'completed') AS completed, "
        "(SELECT max(e.recorded_at) FROM call_event e WHERE e.session_id = ANY($1::uuid[]) "
        "  AND e.event_type = 'agent.dialing') AS last_dial "
        "FROM click_to_call_session s WHERE s.id = ANY($1::uuid[])",
        ids,
    )
    split = await placed_by(db, ids)
    placing = (row["last_dial"] - row["first"]).total_seconds()
    completing = (row["last_end"] - row["first"]).total_seconds()
    return {
        "nodes": len(nodes),
        "calls": calls,
        "completed": row["completed"],
        "placed_per_s": calls / placing,
        "completed_per_s": row["completed"] / completing,
        "split": split,
        "cpu_ms_per_call": {
            n.name: (cpu_seconds(n.pid) - cpu0[n.name]) / calls * 1000 for n in nodes
        },
    }


# -- 2. originate latency through a remote node's API -----------------------------------


async def latency_rows(
    db_url: str, boxes: dict[str, Sandbox], work: Path, calls: int, rate: float
) -> list[tuple[str, list[float], dict[str, int]]]:
    loop = asyncio.get_running_loop()
    phone = BusyPhone()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: phone, local_addr=("127.0.0.1", PHONE_PORT)
    )
    # every agent leg goes to the responder, whatever number the call names
    template = f"PJSIP/agent3/sip:{{number}}@127.0.0.1:{PHONE_PORT}"
    rows = []
    try:
        a = Node("a", db_url, boxes["a"], work)
        b = Node("b", db_url, None, work / "remote")
        cases = (
            ("a's API, no queue", [a], a, False),
            ("a's API, queue", [a], a, True),
            ("b's API -> a dials", [a, b], b, True),
        )
        for label, nodes, entry, queue in cases:
            async with running(nodes, {"agent_endpoint_template": template}, claim_queue=queue):
                lat, split = await _drive(db_url, entry, phone, calls, rate)
            rows.append((label, lat, split))
    finally:
        transport.close()
    return rows


async def _drive(
    db_url: str, entry: Node, phone: BusyPhone, calls: int, rate: float
) -> tuple[list[float], dict[str, int]]:
    lat: list[float] = []
    ids: list[str] = []

    async def one(http: aiohttp.ClientSession) -> None:
        user = f"b{uuid.uuid4().hex[:12]}"
        phone.waiters[user] = asyncio.Event()
        sid, accepted = await initiate(http, user)
        ids.append(sid)
        await asyncio.wait_for(phone.waiters[user].wait(), 30)
        lat.append((phone.arrived[user] - accepted) * 1000)

    async with entry.http() as http:
        start = time.perf_counter()
        tasks = []
        for i in range(calls):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(http)))
        await asyncio.gather(*tasks)
    conn = await asyncpg.connect(db_url)
    try:
        return lat, await placed_by(conn, ids)
    finally:
        await conn.close()


# -- the run ----------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200, help="calls per placed/s run")
    parser.add_argument("--hold", type=int, default=1000, help="customer talk time, ms")
    parser.add_argument("--latency-calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="latency runs' calls/s")
    parser.add_argument("--keep", type=Path, help="keep engine logs and SIPp files here (new)")
    args = parser.parse_args()
    boxes = {name: Sandbox(instance=name, address=address) for name, address in NODES.items()}
    db_url = await create_database("ctc_bench_nodes")
    started = time.monotonic()
    try:
        for box in boxes.values():
            await asyncio.to_thread(box.up)
        up_s = time.monotonic() - started
        await migrate(db_url, default_migrations_dir())
        if args.keep is not None:
            args.keep.mkdir(parents=True)
        with tempfile.TemporaryDirectory() as tmp:
            work = args.keep or Path(tmp)
            db = await asyncpg.connect(db_url)
            try:
                placed = []
                for count in (1, 2):
                    nodes = [Node(n, db_url, boxes[n], work / f"placed{count}") for n in NODES]
                    async with running(nodes[:count], claim_queue=True):
                        placed.append(
                            await placed_run(db, nodes[:count], work, args.calls, args.hold)
                        )
            finally:
                await db.close()
            latency = await latency_rows(db_url, boxes, work, args.latency_calls, args.rate)
    finally:
        for box in boxes.values():
            await asyncio.to_thread(box.down)
        await drop_database(db_url)
    print(f"\ntwo sandbox instances up in {up_s:.1f} s (overlays of one cached root)")
    print(
        f"\ncalls placed: {args.calls} offered to node a's API ({IN_FLIGHT} in flight), "
        f"customer hangs up after {args.hold} ms"
    )
    print(
        f"{'nodes':>5} {'completed':>10} {'placed/s':>9} {'completed/s':>12} "
        f"{'split':<16} {'engine CPU ms/call':<24}"
    )
    for run in placed:
        split = " ".join(f"{k}:{v}" for k, v in run["split"].items())
        cpu = " ".join(f"{k}:{v:.1f}" for k, v in run["cpu_ms_per_call"].items())
        print(
            f"{run['nodes']:>5} {run['completed']:>10} {run['placed_per_s']:>9.1f} "
            f"{run['completed_per_s']:>12.1f} {split:<16} {cpu:<24}"
        )
    one, two = placed
    print(
        f"two nodes / one: placed/s x{two['placed_per_s'] / one['placed_per_s']:.2f}, "
        f"completed/s x{two['completed_per_s'] / one['completed_per_s']:.2f} "
        "(both nodes share this machine's cores)"
    )
    print(
        f"\noriginate latency: API 202 -> agent INVITE received, {args.latency_calls} calls "
        f"at {args.rate:g}/s per row"
    )
    print(f"{'path':<22} {'done':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  placed by")
    for label, lat, split in latency:
        by = " ".join(f"{k}:{v}" for k, v in split.items())
        print(
            f"{label:<22} {len(lat):>5} {pct(lat, 50):>8.2f} {pct(lat, 99):>8.2f} "
            f"{max(lat):>8.2f}  {by}"
        )


if __name__ == "__main__":
    asyncio.run(main())

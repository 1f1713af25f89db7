"""Click-to-call through the real engine and the sandbox Asterisk: how fast, how much CPU.

Two runs, one table each (run as root; the sandbox is brought up if needed):

1. Originate latency: `POST /click-to-call/initiate` answered -> the agent's phone receives
   the INVITE, p50/p99, at 1, 10 and 20 calls/s (200 calls each). The "phone" is a tiny UDP
   SIP responder in this process (so both timestamps share one clock) that answers 486
   Busy: the call ends as `busy`, and every call must. The engine runs as `ctc run` in its
   own process; its CPU seconds per call are read from /proc. The baseline beside it is a
   bare ARI `POST /channels` to the same phone, from this process.
2. Concurrency: N bridged, recorded calls (SIPp agent and customer phones; the customer
   hangs up after H seconds), first through the engine, then through bench/baselines.py's
   bare click-to-call (no database) on the same phones: CPU per call of each program,
   Asterisk's CPU per call, RSS per call held. Every engine session must end `completed`
   with its whole event trail (no lost events).

    .venv/bin/python -m bench.originate --calls 200 --rates 1,10,20 --concurrent 100 --hold 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

from bench.baselines import BareClickToCall
from bench.procs import ServerCpu, command_of, cpu_seconds, parent_of, rss_mb
from engine.asterisk.links.ari import AriClient, AriNotFound
from engine.asterisk.naming import recording_name
from engine.devtools.databases import create_database, drop_database
from engine.devtools.sandbox import ARI_PASSWORD, Sandbox
from engine.devtools.sipp import SippPhone
from engine.domain.event_types import CallEventType
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.repositories import Store

PHONE_PORT = 5073  # agent3's port in dialplan/pjsip.conf
SETTLE_S = 30  # how long a program may take to finish its calls once the phones are done


class BusyPhone(asyncio.DatagramProtocol):
    """Answers every INVITE with 486 and notes when it arrived, by Request-URI user."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Event] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        now = time.perf_counter()
        if self.transport is None or self.transport.is_closing():
            return
        text = data.decode(errors="replace")
        first, _, rest = text.partition("\r\n")
        if not first.startswith("INVITE "):
            return
        user = first.split()[1].split(":", 1)[1].split("@", 1)[0]
        self.arrived.setdefault(user, now)
        if user in self.waiters:
            self.waiters[user].set()
        headers = {}
        for line in rest.split("\r\n"):
            if not line:
                break
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(f"{name}:{value}")
        keep = [h for k in ("via", "from", "call-id", "cseq") for h in headers.get(k, [])]
        to = headers.get("to", ["To: <sip:x@127.0.0.1>"])[0] + ";tag=bench"
        reply = "\r\n".join(["SIP/2.0 486 Busy Here", *keep, to, "Content-Length: 0", "", ""])
        self.transport.sendto(reply.encode(), addr)


async def postmaster(db_url: str) -> int | None:
    """PostgreSQL's server process (the parent of a connection's backend), or None when
    the server is not one this host runs (remote, in a container, behind a pooler): its
    processes are then not ours to read or move."""
    async with Database(db_url) as db:  # read while the backend lives
        backend = int(await db.fetchval("SELECT pg_backend_pid()"))
        try:
            server = parent_of(backend)
            if command_of(backend) == command_of(server) == "postgres":
                return server
        except OSError:
            pass
    return None


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


@contextlib.contextmanager
def workdir(keep: Path | None) -> Iterator[str]:
    """A temporary directory for a run's files, or ``keep`` (made new) to look at later."""
    if keep is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield tmp
    else:
        keep.mkdir(parents=True)
        yield str(keep)


async def start_engine(
    db_url: str,
    workdir: Path,
    box: Sandbox,
    calls_yaml: str,
    *,
    app: str = "ctc-bench",
    agi: bool = False,
    log_level: str = "warning",
) -> Any:
    """``ctc run`` against the sandbox; FastAGI (port 4573, the dialplan's) only with
    ``agi``, so a click-to-call bench never takes the port from an IVR bench's engine."""
    config = workdir / "engine.yaml"
    config.write_text(
        f"log:\n  level: {log_level}\nari:\n  app: {app}\n  recording_dir: "
        f"{box.root}/var/spool/asterisk/recording\ndatabase:\n  max_size: 20\n"
        f"agi:\n  enabled: {'true' if agi else 'false'}\n{calls_yaml}"
    )
    sock = workdir / "engine.sock"
    env = {
        **os.environ,
        "CTC_CONFIG": str(config),
        "CTC_DATABASE_URL": db_url,
        "CTC_API_SOCKET": str(sock),
        "CTC_ARI_PASSWORD": ARI_PASSWORD,
    }
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("ctc")),
        "run",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=(workdir / "engine.log").open("wb"),
    )
    await wait_until_up(proc, sock, "ari", workdir / "engine.log")
    return proc, sock


async def wait_until_up(proc: Any, sock: Path, component: str, log: Path) -> None:
    """Until the engine's /healthz says ``component`` is up (30 s; else it is killed)."""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as http:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                async with http.get("http://ctc/healthz") as resp:
                    body = await resp.json()
                    if body.get("components", {}).get(component, {}).get("state") == "up":
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    proc.kill()
    raise SystemExit(f"engine not ready; see {log}")


async def latency_run(
    db_url: str, box: Sandbox, calls: int, rates: list[int], *, claim_queue: bool = False
) -> None:
    """``claim_queue``: the engine runs with node.claim_queue on (each call is stored
    unclaimed and claimed by the engine's own claimer before it is dialled)."""
    loop = asyncio.get_running_loop()
    phone = BusyPhone()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: phone, local_addr=("127.0.0.1", PHONE_PORT)
    )
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            template = f"PJSIP/agent3/sip:{{number}}@127.0.0.1:{PHONE_PORT}"
            proc, sock = await start_engine(
                db_url,
                Path(tmp),
                box,
                f'calls:\n  agent_endpoint_template: "{template}"\n'
                + ("node:\n  claim_queue: true\n" if claim_queue else ""),
            )
            try:
                connector = aiohttp.UnixConnector(path=str(sock), limit=100)
                async with aiohttp.ClientSession(connector=connector) as http:
                    for rate in rates:
                        cpu0 = cpu_seconds(proc.pid)
                        lat = await _drive(http, phone, calls, rate)
                        cpu = cpu_seconds(proc.pid) - cpu0
                        rows.append((f"engine {rate}/s", lat, cpu / calls * 1000))
                async with AriClient(
                    "http://127.0.0.1:8088", "ctc", ARI_PASSWORD, app="ctc-bench-raw"
                ) as ari:
                    rows.append(
                        ("bare ARI 10/s", await _drive_ari(ari, phone, calls, 10), float("nan"))
                    )
            finally:
                proc.terminate()
                await proc.wait()
    finally:
        transport.close()
    print(f"\noriginate latency: API 202 -> agent INVITE received ({calls} calls per row)")
    print(
        f"{'run':<16} {'done':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'engine CPU ms/call':>19}"
    )
    for name, lat, cpu_ms in rows:
        print(
            f"{name:<16} {len(lat):>5} {pct(lat, 50):>8.2f} {pct(lat, 99):>8.2f} "
            f"{max(lat):>8.2f} {cpu_ms:>19.2f}"
        )


async def _drive(
    http: aiohttp.ClientSession, phone: BusyPhone, calls: int, rate: int
) -> list[float]:
    lat: list[float] = []

    async def one(i: int) -> None:
        user = f"b{uuid.uuid4().hex[:12]}"
        phone.waiters[user] = asyncio.Event()
        body = {"agent_number": user, "customer_number": "+14155550100"}
        async with http.post("http://ctc/api/v1/click-to-call/initiate", json=body) as resp:
            accepted = time.perf_counter()
            assert resp.status == 202, await resp.text()
        await asyncio.wait_for(phone.waiters[user].wait(), 30)
        lat.append((phone.arrived[user] - accepted) * 1000)

    start = time.perf_counter()
    tasks = []
    for i in range(calls):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return lat


async def _drive_ari(ari: AriClient, phone: BusyPhone, calls: int, rate: int) -> list[float]:
    lat: list[float] = []

    async def one() -> None:
        user = f"r{uuid.uuid4().hex[:12]}"
        phone.waiters[user] = asyncio.Event()
        await ari.originate(
            f"PJSIP/agent3/sip:{user}@127.0.0.1:{PHONE_PORT}", channel_id=user, app_args="bench"
        )
        accepted = time.perf_counter()
        await asyncio.wait_for(phone.waiters[user].wait(), 30)
        lat.append((phone.arrived[user] - accepted) * 1000)

    start = time.perf_counter()
    tasks = []
    for i in range(calls):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return lat


# The whole event trail of a bridged, recorded call that the customer hung up.
BRIDGED_TRAIL = [
    "queued",
    "dialing_agent",
    "agent_answered",
    "dialing_customer",
    "connected",
    "completed",
]
RECORDING_EVENTS = {CallEventType.RECORDING_STARTED, CallEventType.RECORDING_FINISHED}
AGENT, CUSTOMER = "agent1", "+14155550100"


@dataclasses.dataclass(frozen=True, slots=True)
class HeldCalls:
    """What one program spent holding N bridged calls: its own CPU, Asterisk's,
    PostgreSQL's, its RSS."""

    run: str
    calls: int
    completed: int
    cpu_s: float
    asterisk_cpu_s: float
    postgres_cpu_s: float | None  # the engine's writes; None: no local server to read
    rss_idle_mb: float
    rss_held_mb: float

    def per_call_ms(self, seconds: float) -> float:
        return seconds / self.calls * 1000

    @property
    def rss_kb_per_call(self) -> float:
        return (self.rss_held_mb - self.rss_idle_mb) * 1024 / self.calls


async def hold_calls(
    run: str,
    box: Sandbox,
    work: Path,
    pid: int,
    n: int,
    hold: int,
    place: Callable[[], Awaitable[None]],
    settled: Callable[[], Awaitable[int]],
    *,
    postgres: int | None,
) -> HeldCalls:
    """Place ``n`` calls (20/s) to a SIPp agent and customer pair of its own; the customer
    hangs up after ``hold`` s. Process ``pid`` is the program under test, ``postgres``
    PostgreSQL's server; ``settled`` waits until it has finished its calls and says how
    many completed whole."""
    phones = work / f"sipp-{run}"
    agent = SippPhone("uas_answer.xml", port=5071, workdir=phones, calls=n, timeout_s=hold + 120)
    customer = SippPhone(
        "uas_answer_then_hangup.xml",
        port=5080,
        workdir=phones,
        calls=n,
        hold_ms=hold * 1000,
        timeout_s=hold + 120,
    )
    asterisk = box.status().pid
    if asterisk is None:
        raise SystemExit("the sandbox Asterisk is not running")
    rss0 = rss_mb(pid)
    cpu0, ast0 = cpu_seconds(pid), cpu_seconds(asterisk)
    database = ServerCpu(postgres)
    with agent, customer:
        for _ in range(n):
            await place()
            await asyncio.sleep(1 / 20)
        # every call is up now, while placing took less than the hold (n / 20 s < hold s):
        # the first ones end a hold after they were answered
        await asyncio.sleep(min(2.0, hold / 2))
        rss_held = rss_mb(pid)
        await asyncio.to_thread(customer.wait, hold + 120)
        await asyncio.to_thread(agent.wait, 60)
        completed = await settled()
    return HeldCalls(
        run,
        n,
        completed,
        cpu_seconds(pid) - cpu0,
        cpu_seconds(asterisk) - ast0,
        database.spent(),
        rss0,
        rss_held,
    )


async def engine_held_calls(
    db_url: str,
    box: Sandbox,
    work: Path,
    n: int,
    hold: int,
    log_level: str = "warning",
    *,
    record: bool = True,
    postgres: int | None,
) -> HeldCalls:
    """The engine (``ctc run``, its CPU from /proc) holding ``n`` bridged calls, recorded
    unless ``record`` is false; a call completes whole when its session ended ``completed``
    with every status (and both recording events) in its trail, numbered without a gap (no
    lost events)."""
    proc, sock = await start_engine(db_url, work, box, "", log_level=log_level)
    ids: list[uuid.UUID] = []
    try:
        async with Database(db_url) as db:
            store = Store.over(db)
            tenant = await store.tenants.by_slug("default")
            await store.recording.set_default(tenant.id, is_enabled=record)
            connector = aiohttp.UnixConnector(path=str(sock), limit=50)
            async with aiohttp.ClientSession(connector=connector) as http:

                async def place() -> None:
                    body = {"agent_number": AGENT, "customer_number": CUSTOMER}
                    async with http.post(
                        "http://ctc/api/v1/click-to-call/initiate", json=body
                    ) as resp:
                        ids.append(uuid.UUID((await resp.json())["id"]))

                async def settled() -> int:
                    return await _sessions_whole(store, tenant.id, ids, record=record)

                held = await hold_calls(
                    "engine", box, work, proc.pid, n, hold, place, settled, postgres=postgres
                )
    finally:
        proc.terminate()
        await proc.wait()
    await delete_recordings([recording_name(sid) for sid in ids])
    if held.completed < n:
        print("engine warnings and errors:", (work / "engine.log").read_text()[-4000:])
    return held


async def _sessions_whole(
    store: Store, tenant_id: uuid.UUID, ids: list[uuid.UUID], *, record: bool = True
) -> int:
    deadline = time.monotonic() + SETTLE_S
    expected = RECORDING_EVENTS if record else frozenset()
    while True:
        sessions = [await store.sessions.get(tenant_id, sid) for sid in ids]
        ended = all(
            s.status.is_terminal and (s.recording_duration_ms is not None or not record)
            for s in sessions
        )
        if ended or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    whole = 0
    for s in sessions:
        events = await store.sessions.events(tenant_id, s.id)
        trail = [e.status_to for e in events if e.status_to]
        kinds = {e.event_type for e in events}
        numbered = [e.seq for e in events] == list(range(1, len(events) + 1))
        if trail == BRIDGED_TRAIL and kinds >= expected and numbered:
            whole += 1
        else:
            print(f"not whole: {s.id} {s.status.value} ({s.end_reason}): {sorted(kinds)}")
    return whole


async def bare_held_calls(
    box: Sandbox, work: Path, n: int, hold: int, *, record: bool = True, postgres: int | None
) -> HeldCalls:
    """bench/baselines.py's bare click-to-call, in this process (its CPU is this process's),
    holding ``n`` bridged calls (recorded unless ``record`` is false) to the same phones as
    the engine's."""
    async with BareClickToCall(record=record) as bare:

        async def place() -> None:
            await bare.place("PJSIP/" + AGENT, f"PJSIP/{CUSTOMER}@trunk")

        async def settled() -> int:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SETTLE_S):
                    await bare.completion(n)
            return bare.completed

        held = await hold_calls(
            "bare", box, work, os.getpid(), n, hold, place, settled, postgres=postgres
        )
        if held.completed < n:
            legs, recordings = bare.incomplete()
            print(f"bare: {len(legs)} calls lack a leg's end, {len(recordings)} their recording's")
            for name in recordings[:10]:
                print(f"  recording {name}: {await bare.recording_state(name)}")
    await delete_recordings(bare.recordings)
    return held


async def delete_recordings(names: list[str]) -> None:
    """Remove the runs' recordings from the sandbox (1000 calls of 60 s make ~1 GB)."""
    async with AriClient("http://127.0.0.1:8088", "ctc", ARI_PASSWORD) as ari:
        for name in names:
            with contextlib.suppress(AriNotFound):
                await ari.request("DELETE", f"/recordings/stored/{name}")


def _ms_or_dash(run: HeldCalls, seconds: float | None) -> str:
    return "-" if seconds is None else f"{run.per_call_ms(seconds):.2f}"


async def concurrency_run(
    db_url: str,
    box: Sandbox,
    n: int,
    hold: int,
    *,
    runs: tuple[str, ...] = ("engine", "bare"),
    keep: Path | None = None,
    log_level: str = "warning",
    record: bool = True,
) -> None:
    """The engine's and the bare program's bridged calls, back to back: one table
    (``record`` false: neither program records its calls)."""
    held: list[HeldCalls] = []
    postgres = await postmaster(db_url)
    with workdir(keep) as tmp:
        if "engine" in runs:
            held.append(
                await engine_held_calls(
                    db_url, box, Path(tmp), n, hold, log_level, record=record, postgres=postgres
                )
            )
        if "bare" in runs:
            held.append(
                await bare_held_calls(box, Path(tmp), n, hold, record=record, postgres=postgres)
            )
    what = "recorded" if record else "NOT recorded"
    print(f"\n{n} concurrent bridged calls ({what}) held {hold} s (placed at 20/s)")
    print(
        f"{'run':<10} {'calls':>6} {'completed':>10} {'CPU ms/call':>12} "
        f"{'Asterisk CPU ms/call':>21} {'PG CPU ms/call':>15} {'RSS KB/call':>12}"
    )
    for run in held:
        print(
            f"{run.run:<10} {run.calls:>6} {run.completed:>10} "
            f"{run.per_call_ms(run.cpu_s):>12.2f} "
            f"{run.per_call_ms(run.asterisk_cpu_s):>21.2f} "
            f"{_ms_or_dash(run, run.postgres_cpu_s):>15} {run.rss_kb_per_call:>12.0f}"
        )
    if len(held) == 2:
        engine, bare = held
        print(
            f"engine CPU per call / bare: {engine.cpu_s / bare.cpu_s:.2f}x (target <= 1.5x); "
            f"engine calls with a lost event: {n - engine.completed}; "
            f"engine RSS {engine.rss_idle_mb:.1f} MB idle, {engine.rss_held_mb:.1f} MB held"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rates", default="1,10,20")
    parser.add_argument("--concurrent", type=int, default=100)
    parser.add_argument("--hold", type=int, default=30)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--runs", default="engine,bare", help="which concurrency runs: engine, bare or both"
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the engine's log and SIPp's files of the concurrency run in this new directory",
    )
    parser.add_argument("--log-level", default="warning", help="the engine's log level")
    parser.add_argument(
        "--no-recording",
        action="store_true",
        help="neither program records its calls (what recording costs at --concurrent)",
    )
    parser.add_argument(
        "--claim-queue",
        action="store_true",
        help="latency run with node.claim_queue on (calls claimed from the queue)",
    )
    args = parser.parse_args()
    box = Sandbox()
    await asyncio.to_thread(box.up)
    db_url = await create_database("ctc_bench")
    try:
        await migrate(db_url, default_migrations_dir())
        if not args.skip_latency:
            rates = [int(r) for r in args.rates.split(",")]
            await latency_run(db_url, box, args.calls, rates, claim_queue=args.claim_queue)
        if args.concurrent:
            await concurrency_run(
                db_url,
                box,
                args.concurrent,
                args.hold,
                runs=tuple(args.runs.split(",")),
                keep=args.keep,
                log_level=args.log_level,
                record=not args.no_recording,
            )
    finally:
        await drop_database(db_url)


if __name__ == "__main__":
    asyncio.run(main())

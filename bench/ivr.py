"""IVR throughput: the same 2-level menu as pure dialplan, through the engine over Stasis
(ARI) and over FastAGI, and through bench/baselines.py's bare ARI app and bare FastAGI
server (the floor for each protocol), driven by SIPp callers at rising rates on the sandbox.

The menu: answer, `hello-world` prompt, key 1 -> submenu with a `beep` prompt, key # ->
hang up. The callers (engine/devtools/scenarios/uac_dtmf.xml, real RFC 2833 DTMF) key "1"
then "#" and wait for Asterisk's BYE:

- ``typeahead``: a regular caller who knows the menu: "1" 0.4 s after the answer (over the
  greeting), "#" at 1.2 s, and gives up (a failed call) when no BYE comes within 4 s of the
  "#". A key the door drops shows here as a failure.
- ``patient``: "1" at 1.3 s (after the greeting), "#" at 2.0 s, waits for the BYE as long
  as it takes.

For each caller, rate and door: calls offered, calls that completed without a SIPp failure,
calls that walked the whole menu, calls served per second (completed, less those shed),
the answer time (SIPp's response time from the INVITE to the 200 OK; a shed caller has
none) p50/p99, the Python CPU ms per call served (the engine's, or this process's for a
bare door; user+system from /proc), Asterisk's (what the door costs the PBX itself: ARI and
AGI are not free) and PostgreSQL's (a local server's: the engine's writes; the bare
programs write nothing), each spent on all calls, shed ones included, and divided by the
calls served; and for the engine's doors what its loop watch
counted (engine/loop_watch.py, read from /metrics): garbage-collector ms per call, GC
pauses over 10 ms, loop-lag samples (every 100 ms) over 25 ms, and callers handed back to
the dialplan past capacity (``shed``: refused unanswered with a SIP 503, which the caller
takes as the end of its call: ok, not walked). Each row offers ``--seconds`` of calls.
Prints one table (with ``--repeat N``, the medians of N runs). Run as root:
    .venv/bin/python -m bench.ivr --cgroups --rates 60,90,120,160,200 --seconds 8 --repeat 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import re
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bench.baselines import BareAgiServer, BareAriApp
from bench.cgroups import DEFAULT_WEIGHT, ServiceGroups, unit_cpu_weight
from bench.originate import postmaster, start_engine, workdir
from bench.procs import ServerCpu, cpu_seconds, cpu_times
from engine.devtools.databases import create_database, drop_database
from engine.devtools.dtmf_caller import caller_csv, caller_scenario
from engine.devtools.sandbox import DIALPLAN_DIR, Sandbox
from engine.devtools.sipp import SippPhone
from engine.ivr_yaml import load_menus
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.repositories import Store

MENUS = """\
menus:
  main:
    greeting: sound:hello-world
    timeout_ms: 5000
    options:
      1: {action: submenu, menu: sub}
  sub:
    greeting: sound:beep
    timeout_ms: 5000
    options:
      "#": {action: hangup}
"""
DIALPLAN = DIALPLAN_DIR / "extensions.conf"
# door -> the prefix the caller dials (dialplan/extensions.conf [from-caller]); the bare-*
# doors are bench/baselines.py's minimal programs, the Python floor for each protocol
DOORS = {
    "dialplan": "4574",
    "stasis": "",
    "fastagi": "4573",
    "bare-ari": "4576",
    "bare-agi": "4575",
}


@dataclasses.dataclass(frozen=True)
class Caller:
    """When the caller keys "1" (after the answer) and "#" (after the "1"), and how long
    it waits for the BYE after its last key (None: as long as it takes)."""

    first_ms: int
    gap_ms: int
    bye_timeout_ms: int | None


CALLERS = {
    "typeahead": Caller(first_ms=400, gap_ms=800, bye_timeout_ms=4000),
    "patient": Caller(first_ms=1300, gap_ms=700, bye_timeout_ms=None),
}


@dataclasses.dataclass(frozen=True)
class Sipp:
    ok: int
    failed: int
    seconds: float
    answer_ms: list[float]  # per call: INVITE -> 200 OK


def run_sipp(
    work: Path,
    number: str,
    calls: int,
    rate: int,
    caller: Caller,
    on_start: Callable[[int], None] = lambda pid: None,
) -> Sipp:
    """Offer ``calls`` at ``rate``/s; ``on_start(pid)`` once SIPp runs."""
    csv = caller_csv(work / "caller.csv", "1#", wait_ms=caller.first_ms, gap_ms=caller.gap_ms)
    scenario = caller_scenario(work, "1#", bye_timeout_ms=caller.bye_timeout_ms)
    phone = SippPhone(
        str(scenario),
        port=5090,
        workdir=work,
        calls=calls,
        timeout_s=calls // rate + 60,
        extra_args=(
            "-s",
            number + "5551000",
            "-inf",
            str(csv),
            "-r",
            str(rate),
            "-l",
            str(rate * 6),
            "-trace_rtt",
            "-rtt_freq",
            "1",
            "127.0.0.1:5060",
        ),
    )
    started = time.monotonic()
    with phone:
        if phone.pid is not None:
            on_start(phone.pid)
        phone.wait(calls / rate + 90)
    elapsed = time.monotonic() - started
    # SIPp writes its final screen to the screen file, or to its output when its own
    # -timeout stopped it (calls still up then count as failed)
    screen = phone.screen_file.read_text(errors="replace") or phone.output_file.read_text(
        errors="replace"
    )
    ok = _counter(screen, "Successful call")
    return Sipp(ok=ok, failed=calls - ok, seconds=elapsed, answer_ms=_response_times(work))


def _response_times(work: Path) -> list[float]:
    """SIPp's ``-trace_rtt`` file: ``date_ms;response_time_ms;rtd_no`` per call."""
    times: list[float] = []
    for path in work.glob("*_rtt.csv"):
        for line in path.read_text(errors="replace").splitlines():
            fields = line.split(";")
            if len(fields) >= 2:
                with contextlib.suppress(ValueError):
                    times.append(float(fields[1]))
    return times


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _counter(screen: str, name: str) -> int:
    m = re.search(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", screen)
    return int(m.group(1)) if m else 0


async def menu_database(name: str) -> str:
    """A new database (its URL) with the default tenant's menus set to :data:`MENUS`."""
    db_url = await create_database(name)
    await migrate(db_url, default_migrations_dir())
    async with Database(db_url) as db:
        store = Store.over(db)
        tenant = await store.tenants.by_slug("default")
        await store.ivr.save(tenant.id, load_menus(MENUS))
    return db_url


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of calls per row")
    parser.add_argument("--rates", default="60,90,120,160,200")
    parser.add_argument(
        "--engine-nice",
        type=int,
        default=0,
        help="run the engine at this nice value (e.g. -5: as the systemd unit's Nice=)",
    )
    parser.add_argument("--doors", default=",".join(DOORS), help="a subset of " + ",".join(DOORS))
    parser.add_argument(
        "--callers", default=",".join(CALLERS), help="a subset of " + ",".join(CALLERS)
    )
    parser.add_argument(
        "--cgroups",
        action="store_true",
        help="Asterisk, PostgreSQL, the engine, this process (the bare programs) and SIPp "
        "each in a CPU cgroup, weighted as systemd runs the services: the engine and the "
        "bare programs at config/ctc-engine.service's CPUWeight=, the others at systemd's "
        "default (bench/cgroups.py)",
    )
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=1,
        help="run each rate's doors this many times, alternating; the table gives medians "
        "(a 2-core box shared by Asterisk, PostgreSQL and SIPp varies a lot from run to run)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the engine's log and SIPp's files in this (new) directory",
    )
    args = parser.parse_args()
    box = Sandbox()
    await asyncio.to_thread(box.up)
    # the running sandbox gets the bench context (it copies dialplan/ only on up)
    await asyncio.to_thread(shutil.copy, DIALPLAN, box.root / "etc/asterisk/extensions.conf")
    await asyncio.to_thread(box.asterisk_cli, "dialplan reload")
    db_url = await menu_database("ctc_bench_ivr")
    try:
        with workdir(args.keep) as tmp:
            proc, sock = await start_engine(db_url, Path(tmp), box, "", app="ctc", agi=True)
            asterisk = box.status().pid or 0
            if args.engine_nice:
                os.setpriority(os.PRIO_PROCESS, proc.pid, args.engine_nice)
            db = await Database(db_url).start()
            try:
                postgres = await postmaster(db_url)
                with contextlib.ExitStack() as stack:
                    phones: Callable[[int], None] = _nothing
                    if args.cgroups:
                        groups = stack.enter_context(ServiceGroups(_weights()))
                        groups.move("asterisk", asterisk)
                        if postgres is not None:
                            groups.move_tree("postgres", postgres)
                        groups.move("engine", proc.pid)
                        groups.move("bench", os.getpid())
                        phones = groups.mover("phones")
                    pids = _Pids(proc.pid, asterisk, postgres)
                    rows = await _table(args, db, pids, Path(tmp), sock, phones)
            finally:
                await db.close()
                proc.terminate()
                await proc.wait()
    finally:
        await drop_database(db_url)
    _print(args, rows)


async def _table(
    args: argparse.Namespace,
    db: Database,
    pids: _Pids,
    tmp: Path,
    sock: Path,
    phones: Callable[[int], None],
) -> list[Row]:
    """One row per caller, rate and door (in that order)."""
    rows: list[Row] = []
    async with BareAgiServer() as bare_agi, BareAriApp() as bare_ari:
        bare: dict[str, BareAgiServer | BareAriApp] = {"bare-agi": bare_agi, "bare-ari": bare_ari}
        run = _Run(db, pids, tmp, bare, sock, phones)
        for caller in args.callers.split(","):
            for rate in (int(r) for r in args.rates.split(",")):
                calls = max(1, round(rate * args.seconds))
                for _ in range(args.repeat):  # the doors alternate: a slow minute hits all
                    for door in args.doors.split(","):
                        rows.append(await run.row(caller, door, rate, calls))
    return rows


def _print(args: argparse.Namespace, rows: list[Row]) -> None:
    pool = "one CPU pool"
    if args.cgroups:
        pool = "service cgroups, CPU weights " + ", ".join(
            f"{name} {weight}" for name, weight in _weights().items()
        )
    if args.repeat > 1:
        runs: dict[tuple[str, str, int], list[Row]] = {}
        for row in rows:
            runs.setdefault((row.caller, row.door, row.rate), []).append(row)
        rows = [Row.median(each) for each in runs.values()]
    print(
        f"\n2-level IVR, {args.seconds:g} s of calls per row"
        f"{f' (median of {args.repeat} runs; answer times of all)' if args.repeat > 1 else ''}, "
        f"SIPp callers with RFC 2833 DTMF, engine nice {args.engine_nice}, {pool}; "
        "answer = INVITE -> 200 OK"
    )
    print(
        f"{'caller':<9} {'door':<9} {'offered/s':>9} {'ok':>5} {'failed':>6} {'walked':>6} "
        f"{'served/s':>8} {'answer p50/p99 ms':>18} "
        f"{'Python CPU ms/call (user+sys)':>30} {'Asterisk CPU ms/call':>20} "
        f"{'PG CPU ms/call':>14} "
        f"{'GC ms/call':>10} {'GC>10ms':>7} {'lag>25ms':>8} {'shed':>5}"
    )
    for row in rows:
        print(row.line())


ENGINE_UNIT = Path(__file__).resolve().parent.parent / "config/ctc-engine.service"


def _weights() -> dict[str, int]:
    """bench/cgroups.py groups and their CPU weights: the engine's unit's for the engine
    and for this process (its bare programs stand in for the engine), systemd's default
    for Asterisk's and PostgreSQL's services; SIPp (the phones) at the default too."""
    engine = unit_cpu_weight(ENGINE_UNIT)
    return {
        "asterisk": DEFAULT_WEIGHT,
        "postgres": DEFAULT_WEIGHT,
        "engine": engine,
        "bench": engine,
        "phones": DEFAULT_WEIGHT,
    }


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _nothing(pid: int) -> None:
    pass


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


@dataclasses.dataclass(frozen=True)
class Row:
    caller: str
    door: str
    rate: int
    ok: int
    failed: int
    walked: int | None  # None: the dialplan door keeps no count
    served_per_s: float  # completed calls, less those shed
    answer_ms: list[float]
    user_ms: float | None  # None: the dialplan door has no Python side
    sys_ms: float | None
    pbx_ms: float
    # PostgreSQL's CPU in the row (mostly the engine's writes; some of a FastAGI or Stasis
    # row's may land in the next row); None: not a local server
    pg_ms: float | None
    loop: LoopStats | None  # None: not the engine's door

    @classmethod
    def median(cls, runs: list[Row]) -> Row:
        """One row for repeated runs of the same caller, door and rate: each count and
        figure the median of the runs', the answer times pooled over every run's calls,
        the loop counters those of the run of median CPU."""
        first = runs[0]
        by_cpu = sorted(runs, key=lambda r: (r.user_ms or 0) + (r.sys_ms or 0))
        return cls(
            first.caller,
            first.door,
            first.rate,
            round(statistics.median(r.ok for r in runs)),
            round(statistics.median(r.failed for r in runs)),
            None if first.walked is None else round(statistics.median(r.walked or 0 for r in runs)),
            statistics.median(r.served_per_s for r in runs),
            [ms for r in runs for ms in r.answer_ms],
            None if first.user_ms is None else statistics.median(r.user_ms or 0 for r in runs),
            None if first.sys_ms is None else statistics.median(r.sys_ms or 0 for r in runs),
            statistics.median(r.pbx_ms for r in runs),
            None if first.pg_ms is None else statistics.median(r.pg_ms or 0 for r in runs),
            by_cpu[len(by_cpu) // 2].loop,
        )

    def line(self) -> str:
        cpu = "-"
        if self.user_ms is not None and self.sys_ms is not None:
            cpu = f"{self.user_ms + self.sys_ms:.2f} ({self.user_ms:.2f}+{self.sys_ms:.2f})"
        walked = str(self.walked) if self.walked is not None else "-"
        answer = f"{_ms(_percentile(self.answer_ms, 0.5))}/{_ms(_percentile(self.answer_ms, 0.99))}"
        loop = "-" if self.loop is None else f"{self.loop.gc_s * 1000 / max(self.ok, 1):.3f}"
        gc_long = "-" if self.loop is None else str(self.loop.gc_over_10ms)
        lag = "-" if self.loop is None else str(self.loop.lag_over_25ms)
        shed = "-" if self.loop is None else str(self.loop.shed)
        return (
            f"{self.caller:<9} {self.door:<9} {self.rate:>9} {self.ok:>5} {self.failed:>6} "
            f"{walked:>6} {self.served_per_s:>8.1f} {answer:>18} {cpu:>30} {self.pbx_ms:>20.2f} "
            f"{'-' if self.pg_ms is None else f'{self.pg_ms:.2f}':>14} "
            f"{loop:>10} {gc_long:>7} {lag:>8} {shed:>5}"
        )


@dataclasses.dataclass(frozen=True)
class LoopStats:
    """Counters of the engine's loop watch (ctc_gc_pause_seconds, ctc_event_loop_lag_seconds)."""

    gc_s: float = 0.0
    gc_over_10ms: int = 0
    lag_over_25ms: int = 0
    shed: int = 0  # callers handed back past capacity (ctc_ivr_shed_total)

    def __sub__(self, other: LoopStats) -> LoopStats:
        return LoopStats(
            self.gc_s - other.gc_s,
            self.gc_over_10ms - other.gc_over_10ms,
            self.lag_over_25ms - other.lag_over_25ms,
            self.shed - other.shed,
        )

    @classmethod
    async def read(cls, sock: Path) -> LoopStats:
        connector = aiohttp.UnixConnector(path=str(sock))
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.get("http://ctc/metrics") as resp,
        ):
            text = await resp.text()
        gc_s = gc_count = gc_short = lag_count = lag_short = shed = 0.0
        for line in text.splitlines():
            name, _, value = line.rpartition(" ")
            if name.startswith("ctc_gc_pause_seconds_sum"):
                gc_s += float(value)
            elif name.startswith("ctc_gc_pause_seconds_count"):
                gc_count += float(value)
            elif name.startswith("ctc_gc_pause_seconds_bucket") and 'le="0.01"' in name:
                gc_short += float(value)
            elif name.startswith("ctc_ivr_shed_total{"):
                shed += float(value)
            elif name.startswith("ctc_event_loop_lag_seconds_count"):
                lag_count += float(value)
            elif name.startswith("ctc_event_loop_lag_seconds_bucket") and 'le="0.025"' in name:
                lag_short += float(value)
        return cls(gc_s, int(gc_count - gc_short), int(lag_count - lag_short), int(shed))


@dataclasses.dataclass(frozen=True)
class _Pids:
    engine: int
    asterisk: int
    postgres: int | None  # the server's main process; None: not a local server


@dataclasses.dataclass
class _Run:
    db: Database
    pids: _Pids
    tmp: Path
    bare: dict[str, BareAgiServer | BareAriApp]
    sock: Path
    phones: Callable[[int], None]  # puts a SIPp process in its cgroup

    async def row(self, caller: str, door: str, rate: int, calls: int) -> Row:
        work = self.tmp / f"{caller}-{door}-{rate}"
        for run in itertools.count(2):  # a repeated row: -2, -3...
            if not work.exists():
                break
            work = self.tmp / f"{caller}-{door}-{rate}-{run}"
        work.mkdir()
        program = self.bare.get(door)
        # the engine's CPU, or this process's for a bare door (it runs here)
        pid = self.pids.engine if program is None else os.getpid()
        user0, sys0 = cpu_times(pid)
        pbx0 = cpu_seconds(self.pids.asterisk)
        database = ServerCpu(self.pids.postgres)
        walked0 = program.walked if program is not None else 0
        mark = await self.db.fetchval("SELECT now()")
        loop0 = await LoopStats.read(self.sock)
        sipp = await asyncio.to_thread(
            run_sipp, work, DOORS[door], calls, rate, CALLERS[caller], self.phones
        )
        user1, sys1 = cpu_times(pid)
        pbx_s = cpu_seconds(self.pids.asterisk) - pbx0
        pg_s = database.spent()
        loop = None
        if door in ("stasis", "fastagi"):
            loop = await LoopStats.read(self.sock) - loop0
        # per call served: a caller refused past capacity costs little, and dividing by
        # them too would make an overloaded door look cheap
        served = max(0, sipp.ok - (loop.shed if loop is not None else 0))
        per_call = 1000 / max(served, 1)
        pbx_ms = pbx_s * per_call
        pg_ms = None if pg_s is None else pg_s * per_call
        walked: int | None = None
        user_ms = sys_ms = None
        if door != "dialplan":
            if program is not None:
                walked = program.walked - walked0
            else:
                walked = await _walked(self.db, mark)
            user_ms, sys_ms = (user1 - user0) * per_call, (sys1 - sys0) * per_call
        row = Row(
            caller,
            door,
            rate,
            sipp.ok,
            sipp.failed,
            walked,
            served / sipp.seconds,
            sipp.answer_ms,
            user_ms,
            sys_ms,
            pbx_ms,
            pg_ms,
            loop,
        )
        print(row.line(), flush=True)
        return row


async def _walked(db: Database, mark: object) -> int:
    """Calls the engine recorded both choices of (the menu walked end to end)."""
    walked = await db.fetchval(
        "SELECT count(*) FROM (SELECT session_id FROM call_dtmf_interaction "
        "WHERE occurred_at >= $1 AND outcome = 'option' GROUP BY session_id "
        "HAVING count(*) = 2) w",
        mark,
    )
    return int(walked)


if __name__ == "__main__":
    asyncio.run(main())

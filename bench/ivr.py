"""IVR throughput: the same 2-level menu as pure dialplan, through the engine over Stasis
(ARI) and over FastAGI, and through bench/baselines.py's bare ARI app and bare FastAGI
server (the floor for each protocol), driven by a SIPp caller at rising rates on the sandbox.

The menu: answer, `hello-world` prompt, key 1 -> submenu with a `beep` prompt, key # ->
hang up. The caller (engine/devtools/scenarios/uac_dtmf.xml, real RFC 2833 DTMF) sends "1"
then "#" and waits for Asterisk's BYE. For each door and rate: calls offered, calls that completed
without a SIPp failure, calls that walked the whole menu, achieved calls/s, the Python CPU
ms per call (the engine's, or this process's for a bare door; user+system from /proc) and
Asterisk's (what the door costs the PBX itself: ARI and AGI are not free).
Prints one table. Run as root:  .venv/bin/python -m bench.ivr --calls 100 --rates 5,10,20
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from bench.baselines import BareAgiServer, BareAriApp
from bench.originate import cpu_seconds, cpu_times, start_engine
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


def run_sipp(work: Path, number: str, calls: int, rate: int) -> tuple[int, int, float]:
    """Offer ``calls`` at ``rate``/s; (successful, failed, seconds)."""
    csv = caller_csv(work / "caller.csv", "1#", wait_ms=1300, gap_ms=700)
    scenario = caller_scenario(work, "1#")
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
            "127.0.0.1:5060",
        ),
    )
    started = time.monotonic()
    with phone:
        phone.wait(calls / rate + 90)
    elapsed = time.monotonic() - started
    screen = phone.screen_file.read_text(errors="replace")
    ok = _counter(screen, "Successful call")
    failed = _counter(screen, "Failed call")
    return ok, failed, elapsed


def _counter(screen: str, name: str) -> int:
    m = re.search(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", screen)
    return int(m.group(1)) if m else 0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rates", default="5,10,20")
    parser.add_argument(
        "--engine-nice",
        type=int,
        default=0,
        help="run the engine at this nice value (e.g. -5: as the systemd unit's Nice=)",
    )
    parser.add_argument("--doors", default=",".join(DOORS), help="a subset of " + ",".join(DOORS))
    args = parser.parse_args()
    box = Sandbox()
    await asyncio.to_thread(box.up)
    # the running sandbox gets the bench context (it copies dialplan/ only on up)
    await asyncio.to_thread(shutil.copy, DIALPLAN, box.root / "etc/asterisk/extensions.conf")
    await asyncio.to_thread(box.asterisk_cli, "dialplan reload")
    db_url = await create_database("ctc_bench_ivr")
    rows = []
    try:
        await migrate(db_url, default_migrations_dir())
        async with Database(db_url) as db:
            store = Store.over(db)
            tenant = await store.tenants.by_slug("default")
            await store.ivr.save(tenant.id, load_menus(MENUS))
        with tempfile.TemporaryDirectory() as tmp:
            proc, _ = await start_engine(db_url, Path(tmp), box, "", app="ctc")
            asterisk = box.status().pid or 0
            if args.engine_nice:
                os.setpriority(os.PRIO_PROCESS, proc.pid, args.engine_nice)
            db = await Database(db_url).start()
            try:
                async with BareAgiServer() as bare_agi, BareAriApp() as bare_ari:
                    bare = {"bare-agi": bare_agi, "bare-ari": bare_ari}
                    run = _Run(db, proc.pid, asterisk, Path(tmp), bare)
                    for rate in (int(r) for r in args.rates.split(",")):
                        for door in args.doors.split(","):
                            rows.append(await run.row(door, rate, args.calls))
            finally:
                await db.close()
                proc.terminate()
                await proc.wait()
    finally:
        await drop_database(db_url)
    print(
        f"\n2-level IVR, {args.calls} calls per row, SIPp caller with RFC 2833 DTMF, "
        f"engine nice {args.engine_nice}"
    )
    print(
        f"{'door':<9} {'offered/s':>9} {'ok':>5} {'failed':>6} {'walked':>6} {'calls/s':>8} "
        f"{'Python CPU ms/call (user+sys)':>30} {'Asterisk CPU ms/call':>20}"
    )
    for door, rate, ok, failed, walked, cps, user_ms, sys_ms, pbx_ms in rows:
        cpu = "-"
        if user_ms is not None and sys_ms is not None:
            cpu = f"{user_ms + sys_ms:.2f} ({user_ms:.2f}+{sys_ms:.2f})"
        w = str(walked) if walked is not None else "-"
        print(
            f"{door:<9} {rate:>9} {ok:>5} {failed:>6} {w:>6} {cps:>8.1f} {cpu:>30} {pbx_ms:>20.2f}"
        )


Row = tuple[str, int, int, int, int | None, float, float | None, float | None, float]


@dataclasses.dataclass
class _Run:
    db: Database
    engine_pid: int
    asterisk_pid: int
    tmp: Path
    bare: dict[str, BareAgiServer | BareAriApp]

    async def row(self, door: str, rate: int, calls: int) -> Row:
        work = self.tmp / f"{door}-{rate}"
        work.mkdir()
        program = self.bare.get(door)
        # the engine's CPU, or this process's for a bare door (it runs here)
        pid = self.engine_pid if program is None else os.getpid()
        user0, sys0 = cpu_times(pid)
        pbx0 = cpu_seconds(self.asterisk_pid)
        walked0 = program.walked if program is not None else 0
        mark = await self.db.fetchval("SELECT now()")
        ok, failed, elapsed = await asyncio.to_thread(run_sipp, work, DOORS[door], calls, rate)
        user1, sys1 = cpu_times(pid)
        user, system = user1 - user0, sys1 - sys0
        per_call = 1000 / max(ok, 1)
        pbx_ms = (cpu_seconds(self.asterisk_pid) - pbx0) * per_call
        if door == "dialplan":
            return door, rate, ok, failed, None, ok / elapsed, None, None, pbx_ms
        if program is not None:
            walked = program.walked - walked0
        else:
            walked = await _walked(self.db, mark)
        return (
            door,
            rate,
            ok,
            failed,
            walked,
            ok / elapsed,
            user * per_call,
            system * per_call,
            pbx_ms,
        )


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

"""The FastAGI door's CPU per call without Asterisk: the engine (``ctc run`` with ARI off) and
bench/baselines.py's bare AGI server, each in its own process, driven by fake Asterisk
connections that answer each command the way Asterisk 22 does for bench/ivr.py's 2-level
menu (answer, hello-world, key 1 at 0.4 s, beep, key # at 1.2 s, hang up).

Why: bench/ivr.py needs the one sandbox Asterisk of the machine and its figures carry
Asterisk's and SIPp's noise; this isolates the Python side of the door (the engine's process
or the bare server's, user+system CPU from /proc), so a change to the door's hot path can be
measured, and profiled (``--profile DIR``: py-spy on the engine), in a minute. The menu and
the store are the engine's own (every key and event persisted in PostgreSQL).
Run:
    .venv/bin/python -m bench.agi_wire --rate 120 --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

from bench.ivr import menu_database
from bench.originate import wait_until_up, workdir
from bench.procs import cpu_times
from engine.devtools.databases import drop_database

ENGINE_PORT = 14573
BARE_PORT = 14575
# the bare server's process; argv: its port, and "uvloop" to run on the engine's loop
_BARE = (
    "import asyncio, sys\n"
    "from bench.baselines import BareAgiServer\n"
    "from engine.event_loop import run_daemon_loop\n"
    "async def main():\n"
    "    async with BareAgiServer(int(sys.argv[1])):\n"
    "        print('ready', flush=True)\n"
    "        await asyncio.Event().wait()\n"
    "(run_daemon_loop if sys.argv[2] == 'uvloop' else asyncio.run)(main())\n"
)
# the keys the caller presses, in order, and when (s after the answer)
_KEYS = (("1", 0.4), ("#", 1.2))
_PROMPT = re.compile(r"(STREAM FILE|GET OPTION) (\S+)")


def _request(n: int, script: str) -> bytes:
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1/{script}",
        f"agi_channel: PJSIP/caller-{n:08d}",
        "agi_language: en",
        f"agi_uniqueid: 1700000000.{n}",
        "agi_callerid: 5551234",
        "agi_calleridname: unknown",
        "agi_context: from-caller",
        "agi_extension: 4573",
        "agi_priority: 2",
        "agi_accountcode: ",
    ]
    return ("\n".join(lines) + "\n\n").encode()


async def _call(port: int, n: int, script: str) -> bool:
    """One caller; True when it walked the menu to the HANGUP."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_request(n, script))
        answered = time.monotonic()
        keys = list(_KEYS)
        while line := (await reader.readline()).decode():
            verb = line.strip()
            if verb == "ANSWER":
                answered = time.monotonic()
                reply = "200 result=0"
            elif verb.startswith("HANGUP"):
                writer.write(b"200 result=1\n")
                await writer.drain()
                return not keys
            elif _PROMPT.match(verb) or verb.startswith("WAIT FOR DIGIT"):
                if not keys:
                    reply = "200 result=0 endpos=8000"
                else:
                    key, at = keys.pop(0)
                    await asyncio.sleep(max(0.0, answered + at - time.monotonic()))
                    reply = f"200 result={ord(key)} endpos=3200"
            else:
                reply = "200 result=1"
            writer.write(reply.encode() + b"\n")
            await writer.drain()
        return False
    finally:
        writer.close()


async def _offer(port: int, script: str, rate: int, calls: int) -> int:
    tasks = []
    start = time.monotonic()
    for n in range(calls):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        tasks.append(asyncio.create_task(_call(port, n, script)))
    done = await asyncio.gather(*tasks, return_exceptions=True)
    return sum(1 for d in done if d is True)


async def _start_engine(
    db_url: str, tmp: Path, cprofile: Path | None = None
) -> asyncio.subprocess.Process:
    config = tmp / "engine.yaml"
    config.write_text(
        "log:\n  level: warning\nari:\n  enabled: false\ndatabase:\n  max_size: 20\n"
        f"agi:\n  enabled: true\n  port: {ENGINE_PORT}\n"
    )
    sock = tmp / "engine.sock"
    env = {
        **os.environ,
        "CTC_CONFIG": str(config),
        "CTC_DATABASE_URL": db_url,
        "CTC_API_SOCKET": str(sock),
    }
    command = [str(Path(sys.executable).with_name("ctc")), "run"]
    if cprofile is not None:  # cProfile's statistics written when the engine exits
        command = [sys.executable, "-m", "cProfile", "-o", str(cprofile), *command]
    proc = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=(tmp / "engine.log").open("wb"),
    )
    await wait_until_up(proc, sock, "agi", tmp / "engine.log")
    return proc


def _ms_per_call(pid: int, before: tuple[float, float], calls: int) -> float:
    user, system = cpu_times(pid)
    return (user + system - sum(before)) * 1000 / max(calls, 1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=120)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--profile", type=Path, help="py-spy the engine; flame graph here")
    parser.add_argument("--cprofile", type=Path, help="run the engine under cProfile; stats here")
    parser.add_argument(
        "--bare-uvloop",
        action="store_true",
        help="the bare server on the engine's event loop (uvloop) instead of asyncio's",
    )
    parser.add_argument("--keep", type=Path, help="keep the engine's log in this new directory")
    args = parser.parse_args()
    calls = round(args.rate * args.seconds)
    db_url = await menu_database("ctc_bench_agi_wire")
    try:
        with workdir(args.keep) as tmp:
            engine = await _start_engine(db_url, Path(tmp), args.cprofile)
            bare = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _BARE,
                str(BARE_PORT),
                "uvloop" if args.bare_uvloop else "asyncio",
                stdout=asyncio.subprocess.PIPE,
            )
            assert bare.stdout is not None
            await bare.stdout.readline()  # "ready"
            try:
                await _offer(ENGINE_PORT, "ivr/main", 20, 40)  # warm-up
                spy = None
                if args.profile:
                    spy = await asyncio.create_subprocess_exec(
                        str(Path(sys.executable).with_name("py-spy")),
                        "record",
                        "--pid",
                        str(engine.pid),
                        "--format",
                        "raw",
                        "-o",
                        str(args.profile),
                        "--rate",
                        "200",
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                    await asyncio.sleep(1.0)  # py-spy attached
                before = cpu_times(engine.pid)
                walked = await _offer(ENGINE_PORT, "ivr/main", args.rate, calls)
                await asyncio.sleep(1.0)  # the journal's last batch
                engine_ms = _ms_per_call(engine.pid, before, calls)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    await spy.wait()
                before = cpu_times(bare.pid)
                bare_walked = await _offer(BARE_PORT, "", args.rate, calls)
                bare_ms = _ms_per_call(bare.pid, before, calls)
            finally:
                bare.terminate()
                await bare.wait()
                engine.terminate()
                await engine.wait()
    finally:
        await drop_database(db_url)
    load = os.getloadavg()[0]
    print(
        f"rate {args.rate}/s, {calls} calls, load {load:.1f}: engine {walked} walked "
        f"{engine_ms:.2f} ms/call; bare ({'uvloop' if args.bare_uvloop else 'asyncio'}) "
        f"{bare_walked} walked {bare_ms:.2f} ms/call; "
        f"ratio {engine_ms / bare_ms:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())

"""How many `POST /click-to-call/initiate` per second the engine sustains over its socket.

Starts a real `ctc run` in its own process on a fresh database, drives it from this process
with C concurrent clients over the Unix socket for a bounded number of requests, and prints
one table (requests/s, latency p50/p99, errors). Not part of the test run.

    .venv/bin/python -m bench.initiate_rate --requests 5000 --concurrency 1,8,32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.procs import cpu_seconds
from engine.devtools.databases import create_database, drop_database
from engine.store.migrations import default_migrations_dir, migrate


async def _start_engine(db_url: str, sock: Path) -> asyncio.subprocess.Process:
    config = sock.with_name("engine.yaml")
    config.write_text(
        "ari:\n  enabled: false\nagi:\n  enabled: false\n"
    )  # the API and store alone, no dialing
    env = {
        **os.environ,
        "CTC_CONFIG": str(config),
        "CTC_DATABASE_URL": db_url,
        "CTC_API_SOCKET": str(sock),
        "CTC_LOG_LEVEL": "warning",
    }
    ctc = str(Path(sys.executable).with_name("ctc"))
    proc = await asyncio.create_subprocess_exec(
        ctc, "run", env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
    )
    connector = aiohttp.UnixConnector(path=str(sock))
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                async with session.get("http://ctc/readyz") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise SystemExit("engine did not become ready in 30 s")


async def _drive(sock: Path, total: int, concurrency: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))
    connector = aiohttp.UnixConnector(path=str(sock), limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                body = {
                    "agent_number": "1001",
                    "customer_number": "+14155550100",
                    "external_ref": f"bench-{i}",
                }
                started = time.perf_counter()
                async with session.post(
                    "http://ctc/api/v1/click-to-call/initiate",
                    data=json.dumps(body),
                    headers={"Content-Type": "application/json", "Idempotency-Key": f"b-{i}"},
                ) as resp:
                    await resp.read()
                    if resp.status != 202:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, errors


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,8,32")
    args = parser.parse_args()
    db_url = await create_database("ctc_bench")
    try:
        await migrate(db_url, default_migrations_dir())
        with tempfile.TemporaryDirectory() as tmp:
            sock = Path(tmp) / "bench.sock"
            proc = await _start_engine(db_url, sock)
            try:
                rows = []
                for c in (int(x) for x in args.concurrency.split(",")):
                    cpu0 = cpu_seconds(proc.pid)
                    elapsed, lat, errors = await _drive(sock, args.requests, c)
                    cpu = cpu_seconds(proc.pid) - cpu0
                    q = statistics.quantiles(lat, n=100)
                    rows.append(
                        (
                            c,
                            args.requests / elapsed,
                            q[49] * 1000,
                            q[98] * 1000,
                            cpu / args.requests * 1000,
                            errors,
                        )
                    )
            finally:
                proc.terminate()
                await proc.wait()
    finally:
        await drop_database(db_url)
    print(
        f"initiate over the Unix socket, {args.requests} requests per row, "
        f"{os.cpu_count()} cores, engine in its own process"
    )
    print(
        f"{'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'engine CPU ms/req':>18} "
        f"{'errors':>6}"
    )
    for c, rate, p50, p99, cpu_ms, errors in rows:
        print(f"{c:>7} {rate:>8.0f} {p50:>8.2f} {p99:>8.2f} {cpu_ms:>18.2f} {errors:>6}")


if __name__ == "__main__":
    asyncio.run(main())

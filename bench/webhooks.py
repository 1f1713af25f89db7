"""How many carrier webhooks per second the engine verifies and handles, Twilio-style and
Vonage-style, with p50/p99 latency.

Starts a real `ctc run` in its own process on a fresh database (API on TCP, no Asterisk),
stores a tenant, a Twilio and a Vonage provider and N sessions with their carrier call ids
(as placement through a provider will), then sends each session's whole callback script
(agent ringing, answered, customer ringing, answered, completed, ...) signed as the carrier
signs it, from C concurrent clients. Every request is verified (HMAC-SHA1 over URL + params;
HS256 JWT + payload_hash), deduplicated, logged and applied to its session (the dedupe key
and the fact in one transaction). A row per carrier sends forged callbacks: the refusal
path (401 + a log row). A row per carrier sends the script the way carriers deliver it
(``replay+reorder``): every callback twice (the second a replay: a logged no-op) and every
third pair swapped (Vonage's started/ringing and completed/failure swaps, Twilio's late
deliveries): out-of-order facts never move a session back. Not part of the test run.

    .venv/bin/python -m bench.webhooks --calls 250 --concurrency 8,32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.procs import cpu_seconds
from engine.devtools.databases import create_database, drop_database
from engine.domain.event_types import CallEventType
from engine.domain.providers import ProviderType
from engine.providers.signatures import body_sha256, hs256_jwt, twilio_signature
from engine.secrets import Keyring
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.records import NewProvider, NewSession
from engine.store.repositories import Store

TWILIO_TOKEN = "bench-auth-token"
VONAGE_SECRET = "bench-signature-secret"
AGENT, CUSTOMER = "+14155550100", "+14155550123"
# (leg, status) of one call's callbacks, as each carrier sends them
TWILIO_SCRIPT = [
    ("agent", "initiated"),
    ("agent", "ringing"),
    ("agent", "in-progress"),
    ("customer", "initiated"),
    ("customer", "ringing"),
    ("customer", "in-progress"),
    ("customer", "completed"),
    ("agent", "completed"),
]
VONAGE_SCRIPT = [
    ("agent", "started"),
    ("agent", "ringing"),
    ("agent", "answered"),
    ("customer", "started"),
    ("customer", "ringing"),
    ("customer", "answered"),
    ("customer", "completed"),
    ("agent", "completed"),
]

Request = tuple[str, bytes, dict[str, str]]  # url, body, headers


def as_carriers_send(script: list[Request]) -> list[Request]:
    """``script`` as carriers deliver it: every third pair swapped, each request twice."""
    out = list(script)
    for i in range(0, len(out) - 1, 3):
        out[i], out[i + 1] = out[i + 1], out[i]
    return [request for request in out for _ in (0, 1)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start_engine(db_url: str, tmp: Path, port: int, key: str) -> asyncio.subprocess.Process:
    config = tmp / "engine.yaml"
    config.write_text(
        "ari:\n  enabled: false\nagi:\n  enabled: false\n"
        f"api:\n  tcp:\n    enabled: true\n    host: 127.0.0.1\n    port: {port}\n"
    )
    env = {
        **os.environ,
        "CTC_CONFIG": str(config),
        "CTC_DATABASE_URL": db_url,
        "CTC_API_SOCKET": str(tmp / "engine.sock"),
        "CTC_LOG_LEVEL": "warning",
        "CTC_SECRET_KEY": key,
    }
    ctc = str(Path(sys.executable).with_name("ctc"))
    proc = await asyncio.create_subprocess_exec(
        ctc, "run", env=env, stderr=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL
    )
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise SystemExit("engine did not become ready in 30 s")


async def _prepare(
    db_url: str, key: str, base: str, calls: int
) -> tuple[dict[ProviderType, uuid.UUID], dict[ProviderType, list[str]]]:
    """A tenant, its Twilio and Vonage providers, and ``calls`` sessions on each."""
    async with Database(db_url) as db:
        store = Store.over(db, keyring=Keyring((key,)))
        tenant = await store.tenants.create(f"bench{uuid.uuid4().hex[:6]}", "Bench", None)
        providers: dict[ProviderType, uuid.UUID] = {}
        call_ids: dict[ProviderType, list[str]] = {}
        for kind, config, credentials, secret in (
            (ProviderType.TWILIO, {"account_sid": "ACbench"}, {"auth_token": TWILIO_TOKEN}, None),
            (
                ProviderType.VONAGE,
                {"application_id": "app-bench"},
                {"private_key": "unused-here"},
                VONAGE_SECRET,
            ),
        ):
            provider = await store.providers.create(
                NewProvider(
                    tenant.id,
                    kind.value,
                    kind,
                    config={"webhook_base_url": base, **config},
                    credentials=credentials,
                    webhook_secret=secret,
                )
            )
            providers[kind] = provider.id
            call_ids[kind] = []
            for _ in range(calls):
                session, _ = await store.sessions.create(
                    NewSession(tenant.id, AGENT, CUSTOMER, provider_id=provider.id)
                )
                call_id = f"{kind.value[:2].upper()}{uuid.uuid4().hex}"
                await store.sessions.append_event(
                    tenant.id,
                    session.id,
                    CallEventType.PROVIDER_STATUS,
                    changes={"provider_call_id": call_id},
                )
                call_ids[kind].append(call_id)
        return providers, call_ids


def _twilio(base: str, provider: uuid.UUID, call_id: str, forge: bool) -> list[Request]:
    url = f"{base}/api/v1/webhooks/voip/twilio/{provider}?session=bench"
    out: list[Request] = []
    sequence = {"agent": 0, "customer": 0}
    for leg, status in TWILIO_SCRIPT:
        form = {
            "CallSid": call_id if leg == "agent" else f"{call_id}c",
            "AccountSid": "ACbench",
            "CallStatus": status,
            "SequenceNumber": str(sequence[leg]),
            "To": AGENT if leg == "agent" else CUSTOMER,
        }
        if leg == "customer":
            form["ParentCallSid"] = call_id
        sequence[leg] += 1
        signature = twilio_signature("forged" if forge else TWILIO_TOKEN, url, form)
        headers = {
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        out.append((url, urllib.parse.urlencode(form).encode(), headers))
    return out


def _vonage(base: str, provider: uuid.UUID, call_id: str, forge: bool) -> list[Request]:
    out: list[Request] = []
    for leg, status in VONAGE_SCRIPT:
        url = f"{base}/api/v1/webhooks/voip/vonage/{provider}?session=bench&leg={leg}"
        body = json.dumps(
            {
                "status": status,
                "uuid": f"{call_id}-{leg}",
                "conversation_uuid": call_id,
                "direction": "outbound",
                "timestamp": datetime.now(UTC).isoformat(),
            },
            separators=(",", ":"),
        ).encode()
        claims = {
            "iat": int(time.time()),
            "jti": uuid.uuid4().hex,
            "iss": "Vonage",
            "payload_hash": body_sha256(body),
            "api_key": "bench",
            "application_id": "app-bench",
        }
        token = hs256_jwt(claims, "forged" if forge else VONAGE_SECRET)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        out.append((url, body, headers))
    return out


async def _drive(
    scripts: list[list[Request]], concurrency: int, expect: int
) -> tuple[float, list[float], int]:
    """Each call's script in order (one client per call at a time), calls in parallel."""
    latencies: list[float] = []
    errors = 0
    pending = iter(scripts)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            for script in pending:
                for url, body, headers in script:
                    started = time.perf_counter()
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status != expect:
                            errors += 1
                    latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, errors


async def _bare_commits(db_url: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    """The PostgreSQL floor beside it, in the same run: one-row INSERT commits from
    ``concurrency`` connections (a verified webhook commits its log row and its event)."""
    import asyncpg

    pool = await asyncpg.create_pool(db_url, min_size=concurrency, max_size=concurrency)
    assert pool is not None
    latencies: list[float] = []
    try:
        await pool.execute("CREATE TABLE IF NOT EXISTS bench_floor (id serial, body jsonb)")
        pending = iter(range(total))

        async def worker() -> None:
            for i in pending:
                started = time.perf_counter()
                await pool.execute(
                    "INSERT INTO bench_floor (body) VALUES ($1::jsonb)", f'{{"i":{i}}}'
                )
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies
    finally:
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=250, help="sessions per carrier and row")
    parser.add_argument("--concurrency", default="8,32")
    args = parser.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    key = Keyring.generate_key()
    db_url = await create_database("ctc_bench")
    rows: list[tuple[str, int, int, float, float, float, float, int]] = []
    try:
        await migrate(db_url, default_migrations_dir())
        with tempfile.TemporaryDirectory() as tmp:
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            proc = await _start_engine(db_url, Path(tmp), port, key)
            try:
                builders: dict[
                    ProviderType, Callable[[str, uuid.UUID, str, bool], list[Request]]
                ] = {ProviderType.TWILIO: _twilio, ProviderType.VONAGE: _vonage}
                for c in levels:
                    count = args.calls * len(TWILIO_SCRIPT)
                    elapsed, lat = await _bare_commits(db_url, count, c)
                    q = statistics.quantiles(lat, n=100)
                    rows.append(
                        (
                            "bare commit",
                            c,
                            count,
                            count / elapsed,
                            q[49] * 1000,
                            q[98] * 1000,
                            0.0,
                            0,
                        )
                    )
                    providers, call_ids = await _prepare(db_url, key, base, args.calls)
                    fresh, fresh_ids = await _prepare(db_url, key, base, args.calls)
                    for kind, build in builders.items():
                        for mode in ("", " forged", " replay+reorder"):
                            forge = mode == " forged"
                            if mode == " replay+reorder":
                                scripts = [
                                    as_carriers_send(build(base, fresh[kind], i, False))
                                    for i in fresh_ids[kind]
                                ]
                            else:
                                scripts = [
                                    build(base, providers[kind], i, forge) for i in call_ids[kind]
                                ]
                            count = sum(len(s) for s in scripts)
                            cpu0 = cpu_seconds(proc.pid)
                            elapsed, lat, errors = await _drive(scripts, c, 401 if forge else 202)
                            cpu = cpu_seconds(proc.pid) - cpu0
                            q = statistics.quantiles(lat, n=100)
                            label = f"{kind.value}{mode}"
                            rows.append(
                                (
                                    label,
                                    c,
                                    count,
                                    count / elapsed,
                                    q[49] * 1000,
                                    q[98] * 1000,
                                    cpu / count * 1000,
                                    errors,
                                )
                            )
            finally:
                proc.terminate()
                await proc.wait()
    finally:
        await drop_database(db_url)
    print(
        f"carrier webhooks over TCP, each call's 8 callbacks in order (replay+reorder: 16, "
        f"swapped and each twice), {os.cpu_count()} cores, "
        "engine in its own process (verify + dedupe + log + apply); 'bare commit': one-row "
        "INSERT commits from this process, the PostgreSQL floor in the same run"
    )
    print(
        f"{'kind':>22} {'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'CPU ms/req':>10} {'errors':>6}"
    )
    for label, c, count, rate, p50, p99, cpu_ms, errors in rows:
        print(
            f"{label:>22} {c:>7} {count:>8} {rate:>8.0f} {p50:>8.2f} {p99:>8.2f} "
            f"{cpu_ms:>10.2f} {errors:>6}"
        )


if __name__ == "__main__":
    asyncio.run(main())

"""``ctc demo``: the whole thing on one machine, with a real call.

Brings up what is missing (the sandbox Asterisk, the demo database and its schema), starts
the engine in this process on a temporary socket, starts two SIPp phones (the agent on
127.0.0.1:5071 answers; the customer behind the ``trunk`` endpoint answers, talks a few
seconds and hangs up), places a click-to-call through the control API over the socket,
prints the call's timeline as the events are committed, and where the recording landed.
Then it stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncpg
from pydantic import SecretStr

from engine.config.settings import ApiSettings, AriSettings, DatabaseSettings, LogSettings, Settings
from engine.daemon import Engine
from engine.devtools.sandbox import ARI_PASSWORD, Sandbox
from engine.devtools.sipp import SippPhone
from engine.domain.event_types import CallEventType
from engine.errors import CtcError, DatabaseUnavailable
from engine.store.migrations import default_migrations_dir, migrate

__all__ = ["run_demo"]

AGENT, AGENT_PORT = "agent1", 5071
CUSTOMER, CUSTOMER_PORT = "+14155550100", 5080


async def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if it does not exist (needs CREATEDB)."""
    base, _, name = url.rpartition("/")
    name = name.split("?")[0]
    try:
        conn = await asyncpg.connect(f"{base}/postgres", timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {base}: {exc}") from exc
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def run_demo(database_url: str, say: Callable[[str], None], talk_seconds: int = 4) -> int:
    """Run the demo; return a process exit code (0 when the call completed)."""
    box = Sandbox()
    started_sandbox = not box.status().running
    say(
        "== sandbox Asterisk: "
        + ("starting (first run builds it, ~30 s)" if started_sandbox else "already running")
    )
    status = await asyncio.to_thread(box.up)
    say(f"   Asterisk {status.version}, ARI on 127.0.0.1:8088")
    try:
        say(f"== database {database_url.rpartition('@')[2]}")
        await ensure_database(database_url)
        applied = await migrate(database_url, default_migrations_dir())
        say(f"   {len(applied)} migration(s) applied; schema current")
        with tempfile.TemporaryDirectory(prefix="ctc-demo-") as tmp:
            return await _call(database_url, box, Path(tmp), say, talk_seconds)
    finally:
        if started_sandbox:
            say("== stopping the sandbox Asterisk")
            await asyncio.to_thread(box.down)


async def _call(
    database_url: str, box: Sandbox, tmp: Path, say: Callable[[str], None], talk_seconds: int
) -> int:
    settings = Settings(
        database=DatabaseSettings(url=database_url),
        api=ApiSettings.model_validate({"socket": tmp / "engine.sock", "socket_mode": "0600"}),
        ari=AriSettings(
            password=SecretStr(ARI_PASSWORD),
            recording_dir=box.root / "var/spool/asterisk/recording",
        ),
        log=LogSettings(level="warning"),
    )
    agent = SippPhone("uas_answer.xml", port=AGENT_PORT, workdir=tmp / "sipp")
    customer = SippPhone(
        "uas_answer_then_hangup.xml",
        port=CUSTOMER_PORT,
        workdir=tmp / "sipp",
        hold_ms=talk_seconds * 1000,
    )
    async with Engine(settings) as engine:
        await asyncio.wait_for(engine.database_ready.wait(), 30)
        if engine.stasis is None:
            raise RuntimeError("the demo settings enable ARI, yet the engine has no Stasis app")
        await asyncio.wait_for(engine.stasis.link.connected.wait(), 30)
        tenant = await engine.store.tenants.by_slug("default")
        await engine.store.recording.set_default(tenant.id, is_enabled=True)
        say(f"== engine up: control API on {settings.api.socket}")
        with agent, customer:
            say(
                f"== phones: agent {AGENT} (SIPp :{AGENT_PORT}), customer {CUSTOMER} "
                f"(SIPp :{CUSTOMER_PORT}, hangs up after {talk_seconds} s)"
            )
            watch = engine.events.subscribe(tenant_id=tenant.id)
            with watch:
                body = {
                    "agent_number": AGENT,
                    "customer_number": CUSTOMER,
                    "external_ref": "ctc-demo",
                }
                connector = aiohttp.UnixConnector(path=str(settings.api.socket))
                async with (
                    aiohttp.ClientSession(connector=connector) as http,
                    http.post("http://ctc/api/v1/click-to-call/initiate", json=body) as resp,
                ):
                    created = await resp.json()
                if resp.status != 202:
                    raise CtcError(f"initiate answered {resp.status}: {created}")
                session_id = uuid.UUID(created["id"])
                say(f"== POST /api/v1/click-to-call/initiate -> 202, session {session_id}")
                first = None
                async with asyncio.timeout(talk_seconds + 60):
                    async for event in watch:
                        if event.session_id != session_id:
                            continue
                        first = first or event.occurred_at
                        offset = (event.occurred_at - first).total_seconds()
                        status = f" -> {event.status_to}" if event.status_to else ""
                        say(f"   +{offset:6.3f}s  {event.event_type}{status}")
                        if event.event_type == CallEventType.RECORDING_FINISHED or (
                            event.status_to in ("busy", "no_answer", "failed", "canceled")
                        ):
                            break
            with contextlib.suppress(TimeoutError):
                await asyncio.to_thread(agent.wait, 10)
        session = await engine.store.sessions.get(tenant.id, session_id)
        await engine.store.recording.set_default(tenant.id, is_enabled=False)
    say(
        f"== {session.status.value}: ring {session.ring_ms} ms, talk {session.talk_ms} ms, "
        f"hangup cause {session.hangup_cause} ({session.end_reason})"
    )
    if session.recording_path:
        say(f"   recording: {session.recording_path} ({session.recording_duration_ms} ms)")
    return 0 if session.status.value == "completed" else 1

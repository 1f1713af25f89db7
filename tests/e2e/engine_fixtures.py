"""An engine wired to the sandbox Asterisk, and the tools e2e tests use to watch it.

``EngineRunner`` starts a real :class:`~engine.daemon.Engine` (Unix socket API, PostgreSQL,
ARI link) with the settings a test needs; ``CallWatcher`` follows one session's committed
events through the engine's event bus so a test waits for a status instead of sleeping.
``TcpProxy`` (:mod:`tests.support.tcp_proxy`) sits between the engine and ARI so a test can cut the
event socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from engine.config.settings import (
    AgiSettings,
    ApiSettings,
    AriSettings,
    CallSettings,
    DatabaseSettings,
    IvrSettings,
    QualitySettings,
    Settings,
    TcpSettings,
    TranscriptSettings,
)
from engine.daemon import Engine
from engine.devtools.sandbox import ARI_PASSWORD, ARI_URL, Sandbox
from engine.devtools.sipp import SippPhone
from engine.store.records import CallEvent, StoredSession
from tests.support.http import socket_api
from tests.support.tenants import tenant_headers

__all__ = [
    "AGENT",
    "AGENT_PORT",
    "CUSTOMER",
    "CUSTOMER_PORT",
    "CallWatcher",
    "call_api",
    "end_call",
    "initiate",
    "running_engine",
]

AGENT = "agent1"  # dialplan/pjsip.conf: SIPp phone on 127.0.0.1:5071
AGENT_PORT = 5071
CUSTOMER = "+14155550100"  # dialled as PJSIP/+14155550100@trunk: SIPp on 127.0.0.1:5080
CUSTOMER_PORT = 5080


# The engine runs in the test's own process: the loop's lateness there is the test's work
# as much as the engine's, and a CI box's Asterisk may answer slowly while the suite loads
# it, so shedding IVR callers by lateness or slow answers is off unless a test sets it.
TEST_IVR = IvrSettings(shed_lag_ms=60_000, shed_answer_ms=None)


@contextlib.asynccontextmanager
async def running_engine(
    db_url: str,
    sandbox: Sandbox,
    workdir: Path,
    *,
    ari_url: str = ARI_URL.removesuffix("/ari"),
    app: str = "ctc-e2e",
    agi: bool = False,
    ivr: IvrSettings = TEST_IVR,
    tcp_port: int | None = None,
    quality: QualitySettings | None = None,
    transcripts: TranscriptSettings | None = None,
    **calls: Any,
) -> AsyncIterator[Engine]:
    """An engine over the sandbox (its API on a Unix socket in ``workdir``, and on
    127.0.0.1:``tcp_port`` too when given), resynced and ready."""
    settings = Settings(
        agi=AgiSettings(enabled=agi),  # FastAGI on 127.0.0.1:4573 (dialplan's CTC_AGI)
        database=DatabaseSettings(url=db_url),
        api=ApiSettings(
            socket=workdir / "engine.sock",
            socket_mode="0600",
            tcp=TcpSettings()
            if tcp_port is None
            else TcpSettings(enabled=True, host="127.0.0.1", port=tcp_port),
        ),
        ari=AriSettings(
            url=ari_url,
            username="ctc",
            password=ARI_PASSWORD,
            app=app,
            recording_dir=sandbox.root / "var/spool/asterisk/recording",
        ),
        calls=CallSettings(**calls),
        ivr=ivr,
        quality=quality or QualitySettings(),
        transcripts=transcripts or TranscriptSettings(),
    )
    async with Engine(settings) as engine:
        await asyncio.wait_for(engine.database_ready.wait(), 30)
        assert engine.stasis is not None
        await asyncio.wait_for(engine.stasis.resync.completed.wait(), 30)
        yield engine


async def completed_ivr_call(
    engine: Engine, caller: SippPhone, *, within: float = 40.0
) -> CallWatcher:
    """Start ``caller`` (a SIPp phone calling into the IVR) and walk its call to the end:
    the session it makes is stored, ends ``completed`` within ``within`` s, and SIPp exits
    cleanly. The watcher subscribed before the call, so it holds the call's whole trail."""
    watch = CallWatcher(engine)
    with caller:
        created = await watch.until_event("session.created", within=20)
        watch.session_id = created.session_id
        end = await watch.until("completed", "failed", "canceled", within=within)
        assert end.status_to == "completed", watch.trail()
        assert await caller.wait_async(30) == 0, caller.report()
    return watch


class CallWatcher:
    """Collects one session's events (subscribe before acting) and waits for statuses."""

    def __init__(self, engine: Engine, session_id: uuid.UUID | None = None) -> None:
        self.engine = engine
        self.session_id = session_id
        assert engine.events is not None
        self._sub = engine.events.subscribe(session_id=session_id)
        self.events: list[CallEvent] = []

    def close(self) -> None:
        self._sub.close()

    async def until(self, *statuses: str, within: float = 30.0) -> CallEvent:
        """Wait for the session to enter one of ``statuses``; return that event."""
        for event in self.events:
            if event.status_to in statuses:
                return event
        async with asyncio.timeout(within):
            async for event in self._sub:
                self.events.append(event)
                if event.status_to in statuses:
                    return event
        raise AssertionError(f"event stream ended before {statuses}: {self.trail()}")

    async def until_event(
        self, event_type: str, within: float = 30.0, *, count: int = 1
    ) -> CallEvent:
        """Wait for the ``count``-th event of ``event_type`` (the first by default); return
        it."""
        seen = [event for event in self.events if event.event_type == event_type]
        if len(seen) >= count:
            return seen[count - 1]
        async with asyncio.timeout(within):
            async for event in self._sub:
                self.events.append(event)
                if event.event_type == event_type:
                    seen.append(event)
                    if len(seen) == count:
                        return event
        raise AssertionError(f"event stream ended before {count} {event_type}: {self.trail()}")

    def trail(self) -> list[tuple[str, str | None]]:
        return [(e.event_type, e.status_to) for e in self.events]

    async def session(self) -> StoredSession:
        assert self.session_id is not None
        found = await self.engine.store.sessions.by_id(self.session_id)
        assert found is not None
        return found


async def call_api(engine: Engine, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """``method /api/v1/<path>`` over the engine's Unix socket: (status, JSON body)."""
    async with socket_api(engine.settings.api.socket) as api:
        status, data, _ = await api.call(method, f"/api/v1/{path}", json=body, headers=None)
    return status, data


async def initiate(engine: Engine, *, tenant: str | None = None, **body: Any) -> dict[str, Any]:
    """Place a click-to-call from AGENT to CUSTOMER (unless ``body`` says otherwise)."""
    payload = {"agent_number": AGENT, "customer_number": CUSTOMER, **body}
    async with socket_api(engine.settings.api.socket) as api:
        status, data, _ = await api.call(
            "POST",
            "/api/v1/click-to-call/initiate",
            json=payload,
            headers=tenant_headers(tenant) if tenant else None,
        )
    assert status == 202, data
    placed: dict[str, Any] = data
    return placed


async def end_call(engine: Engine, session_id: str) -> dict[str, Any]:
    """End the call as the ERP does (``POST …/end``); the ended session."""
    status, data = await call_api(
        engine,
        "POST",
        f"click-to-call/sessions/{session_id}/end",
        {"reason": "ended from the ERP"},
    )
    assert status == 200, data
    ended: dict[str, Any] = data
    return ended

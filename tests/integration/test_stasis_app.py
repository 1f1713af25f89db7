"""The Stasis app against a stand-in ARI and a real database: the event socket, the resync
after it connects, the event table and the click-to-call flow, wired as the daemon wires
them (no Asterisk: the stand-in answers REST calls and sends the events a test gives it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from engine.asterisk.flows.stasis import StasisApp
from engine.asterisk.links.ari import AriClient
from engine.asterisk.naming import call_bridge_id, leg_channel_id
from engine.config.settings import CallSettings
from engine.devtools.databases import create_database, drop_database
from engine.domain.call import CallStatus
from engine.domain.click_to_call import Leg
from engine.events import EventBus
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.records import NewSession
from engine.store.repositories import Store

WITHIN = 10.0


class FakeAri:
    """Answers ARI's REST calls with 2xx and records them; sends events on its socket."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.seen = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ari/events", self._events)
        app.router.add_route("*", "/ari/{path:.*}", self._rest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        for ws in self.sockets:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        self.requests.append((request.method, path))
        self.seen.set()
        if request.method == "GET" and path in ("/channels", "/bridges"):
            return web.json_response([])
        if request.method == "GET":
            return web.json_response({})
        if request.method == "POST" and path.startswith("/channels/") and path.count("/") == 2:
            return web.json_response({"id": path.rpartition("/")[2]})  # originate
        return web.Response(status=204)

    async def _events(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for _ in ws:
            pass
        return ws

    async def send(self, event: dict[str, Any]) -> None:
        await self.sockets[-1].send_str(json.dumps(event))

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WITHIN):
            while not predicate():
                self.seen.clear()
                await self.seen.wait()


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    url = await create_database()
    try:
        await migrate(url, default_migrations_dir())
        db = Database(url)
        await db.start()
        try:
            async with EventBus() as events:
                yield Store.over(db, events=events)
        finally:
            await db.close()
    finally:
        await drop_database(url)


@pytest.fixture
async def ari() -> AsyncIterator[FakeAri]:
    fake = FakeAri()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


async def _status(store: Store, session_id: Any, status: CallStatus) -> None:
    async with asyncio.timeout(WITHIN):
        while True:
            session = await store.sessions.by_id(session_id)
            if session is not None and session.status is status:
                return
            await asyncio.sleep(0.02)


async def test_a_call_placed_by_the_resync_runs_to_its_end_over_the_event_table(
    store: Store, ari: FakeAri
) -> None:
    tenant = await store.tenants.create("t-stasis", "Stasis")
    session, _ = await store.sessions.create(
        NewSession(tenant_id=tenant.id, agent_number="1001", customer_number="+4930123456")
    )
    agent, customer = (
        leg_channel_id(session.id, Leg.AGENT),
        leg_channel_id(session.id, Leg.CUSTOMER),
    )
    async with AriClient(ari.url, "u", "p") as client:
        app = StasisApp(client, store, CallSettings())
        async with app:
            # the link connects, the resync finds the queued call (its start lost) and dials
            async with asyncio.timeout(WITHIN):
                await app.resync.completed.wait()
            assert app.click_to_call.ready
            await ari.until(lambda: ("POST", f"/channels/{agent}") in ari.requests)
            await _status(store, session.id, CallStatus.DIALING_AGENT)

            await ari.send({"type": "StasisStart", "channel": {"id": agent}, "args": ["c2c"]})
            await ari.until(lambda: ("POST", f"/channels/{customer}") in ari.requests)
            await _status(store, session.id, CallStatus.DIALING_CUSTOMER)

            await ari.send({"type": "StasisStart", "channel": {"id": customer}, "args": ["c2c"]})
            bridge = call_bridge_id(session.id)
            await ari.until(lambda: ("POST", f"/bridges/{bridge}/addChannel") in ari.requests)
            await _status(store, session.id, CallStatus.CONNECTED)

            # an event of a channel that is not ours is dropped; the agent hangs up
            await ari.send({"type": "ChannelDestroyed", "channel": {"id": "PJSIP/x-1"}})
            await ari.send({"type": "ChannelDestroyed", "channel": {"id": agent}, "cause": 16})
            await ari.until(lambda: ("DELETE", f"/channels/{customer}") in ari.requests)
            await _status(store, session.id, CallStatus.COMPLETED)
            await ari.until(lambda: ("DELETE", f"/bridges/{bridge}") in ari.requests)
        assert app.is_closed
    assert app.resync.count == 1


async def test_a_dropped_socket_reconnects_and_resyncs(store: Store, ari: FakeAri) -> None:
    async with AriClient(ari.url, "u", "p") as client:
        app = StasisApp(client, store, CallSettings())
        async with app:
            async with asyncio.timeout(WITHIN):
                await app.resync.completed.wait()
            app.resync.completed.clear()
            await app.link.drop()
            async with asyncio.timeout(WITHIN):
                await app.resync.completed.wait()
            assert app.link.connections == 2
            assert app.resync.count == 2

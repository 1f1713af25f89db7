"""The Stasis app against a stand-in ARI and a real database: the event socket, the resync
after it connects, the event table and the click-to-call flow, wired as the daemon wires
them (no Asterisk: the stand-in answers REST calls and sends the events a test gives it)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from engine.app.ivr_admission import ANSWER_WINDOW, IvrAdmission
from engine.asterisk.flows.click_to_call import ChannelFact
from engine.asterisk.flows.stasis import StasisApp
from engine.asterisk.links.ari import AriClient
from engine.asterisk.naming import (
    call_bridge_id,
    leg_channel_id,
    recording_name,
    target_channel_id,
)
from engine.config.settings import CallSettings, IvrSettings, QualitySettings
from engine.devtools.databases import create_database, drop_database
from engine.domain.call import CallStatus
from engine.domain.click_to_call import Leg, RecordingFinished
from engine.domain.event_types import CallEventType
from engine.domain.ivr import HttpLookup, IvrAction, IvrMenu, IvrOption, LookupResult
from engine.domain.netpolicy import OutboundPolicy
from engine.events import EventBus
from engine.store.database import Database
from engine.store.migrations import default_migrations_dir, migrate
from engine.store.records import NewSession, StoredSession
from engine.store.repositories import Store
from tests.support.waiting import eventually

WITHIN = 10.0


class FakeAri:
    """Answers ARI's REST calls with 2xx and records them; sends events on its socket.
    ``channels`` are what it lists; originating one of them answers 409, as Asterisk does
    for a channel id that exists. Recordings are live or stored by name (404 otherwise);
    stopping a live one stores it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.channels: list[dict[str, Any]] = []
        self.live_recordings: set[str] = set()
        self.stored_recordings: set[str] = set()
        self.recording_errors = 0  # answer this many recording requests with a 500
        self.stop_races_end = False  # a stop finds the recording just ended (404, stored)
        self.originated: list[str] = []  # the endpoint of every originate, in order
        self.refused_endpoints: set[str] = set()  # originating these answers 500, as Asterisk
        self.event_filters: list[Any] = []  # the body of every PUT …/eventFilter
        self.refuse_filters = False  # answer them 404, as an Asterisk without the app
        self.answer_delay = 0.0  # seconds before a channel's answer is done, as a busy PBX
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
        if request.method == "GET" and path == "/channels":
            return web.json_response(self.channels)
        if request.method == "GET" and path == "/bridges":
            return web.json_response([])
        if path.startswith("/recordings/"):
            return self._recording(request.method, path)
        if request.method == "PUT" and path.endswith("/eventFilter"):
            if self.refuse_filters:
                return web.json_response({"message": "Application not found"}, status=404)
            self.event_filters.append(await request.json())
            return web.json_response({"name": path.split("/")[2]})
        if request.method == "GET":
            return web.json_response({})
        if request.method == "POST" and path.endswith("/answer"):
            await asyncio.sleep(self.answer_delay)
        if request.method == "POST" and path.startswith("/channels/") and path.count("/") == 2:
            channel_id = path.rpartition("/")[2]  # originate
            endpoint = request.query.get("endpoint", "")
            self.originated.append(endpoint)
            if endpoint in self.refused_endpoints:  # e.g. no such PJSIP endpoint
                return web.json_response({"error": "Allocation failed"}, status=500)
            if any(ch["id"] == channel_id for ch in self.channels):
                return web.json_response(
                    {"message": "Channel with given unique ID already exists"}, status=409
                )
            return web.json_response({"id": channel_id})
        return web.Response(status=204)

    def _recording(self, method: str, path: str) -> web.Response:
        _, _, kind, name, *action = path.split("/")
        if self.recording_errors:
            self.recording_errors -= 1
            return web.json_response({"message": "Internal Server Error"}, status=500)
        if kind == "live" and name in self.live_recordings:
            if method == "POST" and action == ["stop"]:
                self.live_recordings.discard(name)
                self.stored_recordings.add(name)
                if self.stop_races_end:
                    return web.json_response({"message": "Recording not found"}, status=404)
                return web.Response(status=204)
            return web.json_response({"name": name, "state": "recording"})
        if kind == "stored" and name in self.stored_recordings and method == "GET":
            return web.json_response({"name": name, "format": "wav"})
        return web.json_response({"message": "Recording not found"}, status=404)

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
                store = Store.over(db, events=events)
                async with store.journal:  # as the daemon: click-to-calls are written behind
                    yield store
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
            # written behind while it lived; over (no recording to wait for), it is let go
            await _end_handled(app, session.id)
            await store.journal.flush()
            assert store.ownership.owner(session.id) is store.ownership.write_through
            # a late fact of the released call changes nothing and looks no transfer up
            await app.click_to_call.handle(session.id, ChannelFact(customer, up=False))
            assert not app.click_to_call.transfers.follows(session.id)
            # a channel that plays no role (a former target's) may look it up: forgotten
            stale = target_channel_id(session.id, uuid.uuid4())
            await app.click_to_call.handle(session.id, ChannelFact(stale, up=False))
            assert not app.click_to_call.transfers.follows(session.id)
            assert await _event_types(store, session.id) == [
                "session.created",
                "agent.dialing",
                "agent.answered",
                "customer.dialing",
                "customer.answered",
                "agent.hangup",
            ]
        assert app.is_closed
    assert app.resync.count == 1


async def test_a_call_postgresql_has_behind_asterisk_is_adopted_and_caught_up_by_the_resync(
    store: Store, ari: FakeAri
) -> None:
    # an engine that stopped had written "dialing_agent" only: its batch with the agent's
    # answer and the customer's dialing was lost, while both phones answered
    tenant = await store.tenants.create("t-behind", "Behind")
    session, _ = await store.sessions.create(
        NewSession(tenant_id=tenant.id, agent_number="1001", customer_number="+4930123456")
    )
    await store.sessions.transition(
        tenant.id, session.id, CallStatus.DIALING_AGENT, event_type=CallEventType.AGENT_DIALING
    )
    agent, customer = (
        leg_channel_id(session.id, Leg.AGENT),
        leg_channel_id(session.id, Leg.CUSTOMER),
    )
    ari.channels = [{"id": agent, "state": "Up"}, {"id": customer, "state": "Up"}]
    async with AriClient(ari.url, "u", "p") as client:
        app = StasisApp(client, store, CallSettings())
        async with app:
            async with asyncio.timeout(WITHIN):
                await app.resync.completed.wait()
            await _status(store, session.id, CallStatus.CONNECTED)
            assert store.ownership.owner(session.id) is store.journal
            # the customer's channel existed: Asterisk's 409 meant "dialed", not a failure
            assert ("POST", f"/channels/{customer}") in ari.requests
            bridge = call_bridge_id(session.id)
            assert ("POST", f"/bridges/{bridge}/addChannel") in ari.requests

            await ari.send({"type": "ChannelDestroyed", "channel": {"id": customer}, "cause": 16})
            await _status(store, session.id, CallStatus.COMPLETED)
            await _end_handled(app, session.id)
            await store.journal.flush()
            assert store.ownership.owner(session.id) is store.ownership.write_through
    assert await _event_types(store, session.id) == [
        "session.created",
        "agent.dialing",
        "session.resync",
        "agent.answered",
        "customer.dialing",
        "customer.answered",
        "customer.hangup",
    ]


async def _recorded_call_ended(store: Store, ari: FakeAri, app: StasisApp) -> StoredSession:
    """A recorded click-to-call through ``app`` (started), up to the customer's hangup:
    ended, its recording's end not told yet."""
    tenant = await store.tenants.create(f"t-{uuid.uuid4().hex[:8]}", "Recorded")
    await store.recording.set_default(tenant.id, is_enabled=True)
    session, _ = await store.sessions.create(
        NewSession(tenant_id=tenant.id, agent_number="1001", customer_number="+4930123456")
    )
    store.sessions.adopt(session)  # as the API's use case: written behind from now on
    app.click_to_call.start_call(session)
    agent, customer = (
        leg_channel_id(session.id, Leg.AGENT),
        leg_channel_id(session.id, Leg.CUSTOMER),
    )
    await _status(store, session.id, CallStatus.DIALING_AGENT)
    await ari.send({"type": "StasisStart", "channel": {"id": agent}, "args": ["c2c"]})
    await _status(store, session.id, CallStatus.DIALING_CUSTOMER)
    await ari.send({"type": "StasisStart", "channel": {"id": customer}, "args": ["c2c"]})
    await _status(store, session.id, CallStatus.CONNECTED)
    await ari.until(
        lambda: ("POST", f"/bridges/{call_bridge_id(session.id)}/record") in ari.requests
    )
    await ari.send({"type": "ChannelDestroyed", "channel": {"id": customer}, "cause": 16})
    await _status(store, session.id, CallStatus.COMPLETED)
    ended = await store.sessions.by_id(session.id)
    if ended is None or ended.recording_path is None:
        raise AssertionError(f"session {session.id} ended without a recording started")
    return ended


async def _end_handled(app: StasisApp, session_id: uuid.UUID) -> None:
    """Wait for the handler of the call's end to finish: it lets the call go from the journal
    after what a test sees (the status, a request to Asterisk), before it gives the call's
    lock back."""
    async with asyncio.timeout(WITHIN), app.click_to_call.lock(session_id):
        pass


async def _recording_settled(store: Store, session: StoredSession) -> dict[str, Any]:
    """Wait for the session's recording's end to be stored; its recording.finished payload."""

    async def settled() -> bool:
        current = await store.sessions.by_id(session.id)
        return current is not None and current.recording_duration_ms is not None

    await eventually(settled, within=WITHIN, what="the recording's end was stored")
    await store.journal.flush()
    events = await store.sessions.events(session.tenant_id, session.id)
    finished = [e for e in events if e.event_type == CallEventType.RECORDING_FINISHED]
    assert len(finished) == 1
    return dict(finished[0].payload)


@asynccontextmanager
async def _stasis_app(
    ari: FakeAri, store: Store, settings: CallSettings
) -> AsyncIterator[StasisApp]:
    """The Stasis app over ``ari``, started and resynced once."""
    async with AriClient(ari.url, "u", "p") as client, StasisApp(client, store, settings) as app:
        async with asyncio.timeout(WITHIN):
            await app.resync.completed.wait()
        yield app


# long enough that a test's call never waits for the timer
NO_TIMER = CallSettings(recording_end_timeout=3600)
SOON = CallSettings(recording_end_timeout=0.05)


async def test_a_recording_whose_end_asterisk_never_tells_is_settled_from_its_stored_file(
    store: Store, ari: FakeAri
) -> None:
    async with _stasis_app(ari, store, SOON) as app:
        session = await _recorded_call_ended(store, ari, app)
        name = recording_name(session.id)
        ari.stored_recordings.add(name)
        payload = await _recording_settled(store, session)
        assert ("GET", f"/recordings/live/{name}") in ari.requests
        assert ("GET", f"/recordings/stored/{name}") in ari.requests
        # the bridge's time from the answer to the end stands in for Asterisk's count
        assert session.connected_at is not None
        assert session.ended_at is not None
        bridged = round((session.ended_at - session.connected_at).total_seconds() * 1000)
        assert payload == {"duration_ms": bridged, "estimated": True}
        # the call is over: released from the journal once written
        await _end_handled(app, session.id)
        await store.journal.flush()
        assert store.ownership.owner(session.id) is store.ownership.write_through
        # Asterisk telling the end after all adds nothing
        await app.click_to_call.handle(session.id, RecordingFinished(4000))
        assert (await _recording_settled(store, session)) == payload


async def test_a_recording_still_live_after_its_call_ended_is_stopped_then_settled(
    store: Store, ari: FakeAri
) -> None:
    async with _stasis_app(ari, store, SOON) as app:
        session = await _recorded_call_ended(store, ari, app)
        name = recording_name(session.id)
        ari.live_recordings.add(name)
        payload = await _recording_settled(store, session)
        # stopped as the call ended (not live yet here), then by the engine that found it
        stops = [r for r in ari.requests if r == ("POST", f"/recordings/live/{name}/stop")]
        assert len(stops) == 2
        assert payload["estimated"] is True


async def test_a_recording_that_ends_as_it_is_stopped_is_not_taken_for_a_missing_one(
    store: Store, ari: FakeAri
) -> None:
    async with _stasis_app(ari, store, SOON) as app:
        session = await _recorded_call_ended(store, ari, app)
        name = recording_name(session.id)
        ari.live_recordings.add(name)
        ari.stop_races_end = True  # the stop answers 404: it had just ended
        payload = await _recording_settled(store, session)
        assert ("POST", f"/recordings/live/{name}/stop") in ari.requests
        assert payload["estimated"] is True  # found stored the next time, not "failed"


async def test_ari_failing_to_say_what_became_of_a_recording_is_asked_again_later(
    store: Store, ari: FakeAri
) -> None:
    async with _stasis_app(ari, store, SOON) as app:
        session = await _recorded_call_ended(store, ari, app)
        name = recording_name(session.id)
        ari.stored_recordings.add(name)
        ari.recording_errors = 3  # three questions answered 500, one by one
        payload = await _recording_settled(store, session)
        assert payload["estimated"] is True
        asked = [r for r in ari.requests if r == ("GET", f"/recordings/live/{name}")]
        assert len(asked) == 4


async def test_a_recording_end_told_in_time_leaves_no_question_for_ari(
    store: Store, ari: FakeAri
) -> None:
    async with _stasis_app(ari, store, NO_TIMER) as app:
        session = await _recorded_call_ended(store, ari, app)
        name = recording_name(session.id)
        assert app.click_to_call.recordings_awaited == 1
        await ari.send({"type": "RecordingFinished", "recording": {"name": name, "duration": 3}})
        payload = await _recording_settled(store, session)
        assert payload == {"duration_ms": 3000}
        # the end told, the call's timer went with it; ARI was only told to stop it, as
        # the call ended (before its bridge went), and never asked about it
        assert app.click_to_call.recordings_awaited == 0
        asked = [r for r in ari.requests if r[1].startswith("/recordings/")]
        assert asked == [("POST", f"/recordings/live/{name}/stop")]


async def test_a_recording_asterisk_has_neither_live_nor_stored_ends_as_failed(
    store: Store, ari: FakeAri
) -> None:
    async with _stasis_app(ari, store, SOON) as app:
        session = await _recorded_call_ended(store, ari, app)
        payload = await _recording_settled(store, session)
        assert payload == {"duration_ms": None, "failure": "Asterisk has no such recording"}
        assert (await store.sessions.get(session.tenant_id, session.id)).recording_duration_ms == 0


async def test_a_recording_failed_event_ends_the_recording_with_its_cause(
    store: Store, ari: FakeAri
) -> None:
    async with _stasis_app(ari, store, NO_TIMER) as app:
        session = await _recorded_call_ended(store, ari, app)
        recording = {"name": recording_name(session.id), "state": "failed", "cause": "disk full"}
        await ari.send({"type": "RecordingFailed", "recording": recording})
        payload = await _recording_settled(store, session)
        assert payload == {"duration_ms": None, "failure": "disk full"}


async def test_a_recording_end_missed_while_the_link_was_down_is_settled_on_reconnect(
    store: Store, ari: FakeAri
) -> None:
    async with _stasis_app(ari, store, NO_TIMER) as app:
        session = await _recorded_call_ended(store, ari, app)
        ari.stored_recordings.add(recording_name(session.id))
        await store.journal.flush()
        assert store.ownership.owner(session.id) is store.journal  # kept for the end
        app.resync.completed.clear()
        await app.link.drop()
        async with asyncio.timeout(WITHIN):
            await app.resync.completed.wait()
        assert (await _recording_settled(store, session))["estimated"] is True
        await _end_handled(app, session.id)
        await store.journal.flush()
        assert store.ownership.owner(session.id) is store.ownership.write_through


async def test_a_recording_an_earlier_engine_left_waiting_is_settled_by_the_resync(
    store: Store, ari: FakeAri
) -> None:
    async with _stasis_app(ari, store, NO_TIMER) as app:
        session = await _recorded_call_ended(store, ari, app)
    await store.journal.flush()
    # the engine stopped before its recording's end was told; the next one starts
    ari.stored_recordings.add(recording_name(session.id))
    async with _stasis_app(ari, store, NO_TIMER):
        assert (await _recording_settled(store, session))["estimated"] is True


async def _event_types(store: Store, session_id: uuid.UUID) -> list[str]:
    """The session's events in PostgreSQL, in order; their seq numbered without a gap."""
    rows = await store.db.fetch(
        "SELECT seq, event_type FROM call_event WHERE session_id = $1 ORDER BY seq", session_id
    )
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    return [r["event_type"] for r in rows]


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


async def test_each_connect_has_asterisk_send_only_the_event_types_the_flows_take_until_close(
    store: Store, ari: FakeAri
) -> None:
    async with AriClient(ari.url, "u", "p", app="ctc") as client:
        app = StasisApp(client, store, CallSettings(), quality=QualitySettings())
        async with app:
            async with asyncio.timeout(WITHIN):
                await app.resync.completed.wait()
            app.resync.completed.clear()
            await app.link.drop()
            async with asyncio.timeout(WITHIN):
                await app.resync.completed.wait()
    assert ("PUT", "/applications/ctc/eventFilter") in ari.requests
    # set at each connect; the close sets every event back (Asterisk keeps the filter on
    # its app, which may outlive the socket: the next to connect to the app gets all)
    assert len(ari.event_filters) == 3
    assert ari.event_filters[-1] == {}
    allowed = [entry["type"] for entry in ari.event_filters[1]["allowed"]]
    assert set(allowed) == app.router.event_types
    # what the flows and the quality monitor take, and none of what no handler takes
    assert {"StasisStart", "StasisEnd", "ChannelDestroyed", "ChannelVarset"} <= set(allowed)
    assert {"RecordingFinished", "PlaybackFinished", "ChannelHangupRequest"} <= set(allowed)
    assert not {"Dial", "ChannelStateChange", "ChannelConnectedLine"} & set(allowed)
    assert set(ari.event_filters[1]) == {"allowed"}


async def test_a_refused_event_filter_leaves_every_event_coming_and_the_resync_runs(
    store: Store, ari: FakeAri
) -> None:
    ari.refuse_filters = True
    async with (
        AriClient(ari.url, "u", "p") as client,
        StasisApp(client, store, CallSettings()) as app,
    ):
        async with asyncio.timeout(WITHIN):
            await app.resync.completed.wait()
    assert ari.event_filters == []
    assert app.resync.count == 1


async def test_a_queued_call_whose_legs_asterisk_has_is_failed_never_dialled_again(
    store: Store, ari: FakeAri
) -> None:
    # an engine originated the agent's leg and died before its journal wrote the dial
    tenant = await store.tenants.create("t-dialled", "Dialled")
    session, _ = await store.sessions.create(
        NewSession(tenant_id=tenant.id, agent_number="1001", customer_number="+4930123456")
    )
    agent = leg_channel_id(session.id, Leg.AGENT)
    ari.channels = [{"id": agent, "state": "Ring"}]
    async with (
        AriClient(ari.url, "u", "p") as client,
        StasisApp(client, store, CallSettings()) as app,
    ):
        async with asyncio.timeout(WITHIN):
            await app.resync.completed.wait()
        await _status(store, session.id, CallStatus.FAILED)
        await store.journal.flush()
    assert ("DELETE", f"/channels/{agent}") in ari.requests
    assert ("POST", f"/channels/{agent}") not in ari.requests  # never dialled again
    assert await _event_types(store, session.id) == ["session.created", "session.resync"]


async def test_the_resync_leaves_a_call_this_process_is_dialling_though_postgresql_says_queued(
    store: Store, ari: FakeAri
) -> None:
    tenant = await store.tenants.create("t-ahead", "Ahead")
    async with (
        AriClient(ari.url, "u", "p") as client,
        StasisApp(client, store, CallSettings()) as app,
    ):
        async with asyncio.timeout(WITHIN):
            await app.resync.completed.wait()
        session, _ = await store.sessions.create(
            NewSession(tenant_id=tenant.id, agent_number="1001", customer_number="+4930123456")
        )
        # the journal has the dial; Asterisk has the leg
        store.sessions.adopt(session)
        await store.sessions.transition(
            tenant.id, session.id, CallStatus.DIALING_AGENT, event_type=CallEventType.AGENT_DIALING
        )
        # PostgreSQL behind it: the row still says queued (the batch not written yet)
        await store.journal.flush()
        await store.db.execute(
            "UPDATE click_to_call_session SET status = 'queued' WHERE id = $1", session.id
        )
        agent = leg_channel_id(session.id, Leg.AGENT)
        ari.channels = [{"id": agent, "state": "Ring"}]
        await app.resync.run()
        current = await store.sessions.get(tenant.id, session.id)
        assert current.status is CallStatus.DIALING_AGENT
        assert ("DELETE", f"/channels/{agent}") not in ari.requests


class _NoErp:
    async def ask(self, lookup: HttpLookup, policy: OutboundPolicy) -> LookupResult:
        raise AssertionError("these menus make no lookup")


async def test_asterisk_answering_ivr_callers_slowly_limits_the_callers_in_the_menu(
    store: Store, ari: FakeAri
) -> None:
    # an Asterisk that takes 20 ms to answer, twice ivr.shed_answer_ms here: once a window
    # of callers was answered so, the calls in progress are limited to half of them, and a
    # new caller is handed back to the dialplan (OVERLOADED, continue) with nothing stored
    tenant = await store.tenants.by_slug("default")
    await store.ivr.save(
        tenant.id, {"main": IvrMenu("main", options={"1": IvrOption(IvrAction.HANGUP)})}
    )
    admission = IvrAdmission(IvrSettings(shed_answer_ms=10), lag=lambda: 0.0)
    ari.answer_delay = 0.02
    callers = [f"PJSIP/caller-{i:04d}" for i in range(ANSWER_WINDOW)]
    late = "PJSIP/caller-late"
    async with AriClient(ari.url, "u", "p") as client:
        app = StasisApp(
            client, store, CallSettings(), menus=store.ivr.book, erp=_NoErp(), admission=admission
        )
        async with app:
            async with asyncio.timeout(WITHIN):
                await app.resync.completed.wait()
            for channel in callers:
                await ari.send(
                    {"type": "StasisStart", "channel": {"id": channel}, "args": ["ivr", "main"]}
                )
            # answered, each caller waits in the menu for a key
            limit = await eventually(
                lambda: admission.call_limit.limit if admission.call_limit is not None else None,
                within=WITHIN,
                what="a limit set from the slow answers",
            )
            assert limit == ANSWER_WINDOW // 2
            await ari.send(
                {"type": "StasisStart", "channel": {"id": late}, "args": ["ivr", "main"]}
            )
            await ari.until(lambda: ("POST", f"/channels/{late}/continue") in ari.requests)
            assert ("POST", f"/channels/{late}/variable") in ari.requests
            assert ("POST", f"/channels/{late}/answer") not in ari.requests
            assert admission.in_progress == ANSWER_WINDOW  # the callers in the menu keep it

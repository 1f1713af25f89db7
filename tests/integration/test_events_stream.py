"""``GET /api/v1/events``: Server-Sent Events over the real Unix socket and PostgreSQL."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from engine.api import sse
from engine.config.settings import AgiSettings, ApiSettings, AriSettings, DatabaseSettings, Settings
from engine.daemon import Engine
from engine.domain.event_types import CallEventType
from tests.support.calls import move_call, place_call
from tests.support.http import Api
from tests.support.sse import EVENTS, WAIT, open_stream
from tests.support.tenants import new_tenant, tenant_headers

C2C = "/api/v1/click-to-call"


async def _event_ids(api: Api, tenant: str, sid: str) -> list[int]:
    _, detail, _ = await api.call("GET", f"{C2C}/sessions/{sid}", headers=tenant_headers(tenant))
    return [e["id"] for e in detail["events"]]


# -- live -------------------------------------------------------------------------------------


async def test_a_call_s_events_arrive_live_and_in_order(api_engine: Engine, unix_api: Api) -> None:
    t = (await new_tenant(api_engine.store)).slug
    async with open_stream(api_engine, t) as stream:
        sid = await place_call(unix_api, t)
        for target in ("dialing_agent", "agent_answered", "canceled"):
            await move_call(unix_api, t, sid, target)
        got = await stream.events(4)

    assert [(e["event"], e["data"]["seq"], e["data"]["status_to"]) for e in got] == [
        (CallEventType.SESSION_CREATED, 1, "queued"),
        (CallEventType.STATUS_CHANGED, 2, "dialing_agent"),
        (CallEventType.STATUS_CHANGED, 3, "agent_answered"),
        (CallEventType.STATUS_CHANGED, 4, "canceled"),
    ]
    assert [e["id"] for e in got] == await _event_ids(unix_api, t, sid)
    first, last = got[0]["data"], got[-1]["data"]
    assert first["session_id"] == sid
    assert first["id"] == got[0]["id"]
    assert (last["status_from"], last["payload"]) == ("agent_answered", {"source": "api"})
    assert last["occurred_at"]
    assert "tenant_id" not in last


async def test_a_tenant_sees_only_its_own_events(api_engine: Engine, unix_api: Api) -> None:
    a, b = (await new_tenant(api_engine.store)).slug, (await new_tenant(api_engine.store)).slug
    async with open_stream(api_engine, a) as stream_a, open_stream(api_engine, b) as stream_b:
        sid_a = await place_call(unix_api, a)
        await move_call(unix_api, a, sid_a, "canceled")
        sid_b = await place_call(unix_api, b)  # after A's: any leak would arrive before it
        await move_call(unix_api, b, sid_b, "canceled")
        got_b = await stream_b.events(2)
        got_a = await stream_a.events(2)
    assert {e["data"]["session_id"] for e in got_b} == {sid_b}
    assert {e["data"]["session_id"] for e in got_a} == {sid_a}

    # nor can it ask for another tenant's session, or replay another tenant's history
    connector = aiohttp.UnixConnector(path=str(api_engine.settings.api.socket))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(
            f"http://ctc{EVENTS}", params={"session_id": sid_a}, headers=tenant_headers(b)
        ) as resp,
    ):
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"
    async with open_stream(api_engine, b, params={"after": "0"}) as replay_b:
        assert {e["data"]["session_id"] for e in await replay_b.events(2)} == {sid_b}


async def test_session_filter(api_engine: Engine, unix_api: Api) -> None:
    t = (await new_tenant(api_engine.store)).slug
    other, wanted = await place_call(unix_api, t), await place_call(unix_api, t)
    async with open_stream(api_engine, t, params={"session_id": wanted}) as stream:
        await move_call(unix_api, t, other, "canceled")
        await move_call(unix_api, t, wanted, "dialing_agent")
        got = await stream.event()
    assert got is not None
    assert (got["data"]["session_id"], got["data"]["status_to"]) == (wanted, "dialing_agent")


# -- replay -----------------------------------------------------------------------------------


async def test_last_event_id_replays_then_goes_live_without_gaps_or_repeats(
    api_engine: Engine, unix_api: Api
) -> None:
    t = (await new_tenant(api_engine.store)).slug
    sid = await place_call(unix_api, t)
    for target in ("dialing_agent", "agent_answered", "dialing_customer"):
        await move_call(unix_api, t, sid, target)
    before = await _event_ids(unix_api, t, sid)  # 4 events, the client saw 2
    async with open_stream(
        api_engine, t, headers={"Last-Event-ID": str(before[1])}, params={"after": "0"}
    ) as stream:  # the header wins over ?after= (EventSource keeps the URL it started with)
        replayed = await stream.events(2)
        await move_call(unix_api, t, sid, "connected")
        await move_call(unix_api, t, sid, "completed")
        live = await stream.events(2)
    ids = [e["id"] for e in replayed + live]
    assert ids == before[2:] + (await _event_ids(unix_api, t, sid))[4:]
    assert [e["data"]["seq"] for e in replayed + live] == [3, 4, 5, 6]


async def test_after_query_parameter_and_bad_last_event_id(
    api_engine: Engine, unix_api: Api
) -> None:
    t = (await new_tenant(api_engine.store)).slug
    sid = await place_call(unix_api, t)
    await move_call(unix_api, t, sid, "canceled")
    ids = await _event_ids(unix_api, t, sid)
    async with open_stream(api_engine, t, params={"after": str(ids[0])}) as stream:
        got = await stream.event()
    assert got is not None
    assert got["id"] == ids[1]

    for bad in ("abc", "-1", "12a", "9" * 19):
        status, err, _ = await unix_api.call(
            "GET", EVENTS, headers={**tenant_headers(t), "Last-Event-ID": bad}
        )
        assert status == 422, bad
        assert err["error"]["details"][0]["field"] == "Last-Event-ID"
    status, err, _ = await unix_api.call(
        "GET", EVENTS, params={"after": "-5"}, headers=tenant_headers(t)
    )
    assert status == 422
    assert err["error"]["details"][0]["field"] == "after"


async def test_a_large_backlog_comes_in_pieces(
    api_engine: Engine, unix_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "REPLAY_LIMIT", 2)
    t = (await new_tenant(api_engine.store)).slug
    sid = await place_call(unix_api, t)
    for target in ("dialing_agent", "agent_answered", "canceled"):
        await move_call(unix_api, t, sid, target)
    ids = await _event_ids(unix_api, t, sid)
    async with open_stream(api_engine, t, params={"after": "0"}) as stream:
        first = await stream.events(2)
        assert await stream.event() is None  # the stream ends after one piece
    async with open_stream(
        api_engine, t, headers={"Last-Event-ID": str(first[-1]["id"])}
    ) as stream:
        second = await stream.events(2)
    assert [e["id"] for e in first + second] == ids


# -- keepalive and shutdown -------------------------------------------------------------------


async def test_keepalive_comments_while_idle(
    api_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "KEEPALIVE", 0.01)
    t = (await new_tenant(api_engine.store)).slug
    async with open_stream(api_engine, t) as stream:
        blocks = [await stream.block(), await stream.block()]
    assert blocks[0] == [f"retry: {sse.RETRY_MS}"]
    assert blocks[1] == [": keepalive"]


async def test_shutdown_ends_open_streams_cleanly(migrated_db: str) -> None:
    with tempfile.TemporaryDirectory(prefix="ctc-sse-") as tmp:
        settings = Settings(
            agi=AgiSettings(enabled=False),  # port 4573 is the e2e engines'
            ari=AriSettings(enabled=False),
            database=DatabaseSettings(url=migrated_db),
            api=ApiSettings(socket=Path(tmp) / "engine.sock", socket_mode="0600"),
        )
        engine = await Engine(settings).start()
        try:
            await asyncio.wait_for(engine.database_ready.wait(), WAIT)
            async with open_stream(engine, "default") as one, open_stream(engine, "default"):
                assert await one.block() == [f"retry: {sse.RETRY_MS}"]
                # aiohttp would wait its shutdown_timeout (10 s) per open handler and then
                # cancel it, cutting the chunked body short: a clean end proves it did not
                closing = asyncio.create_task(engine.close())
                assert await one.block() is None  # clean end of stream, no payload error
                await asyncio.wait_for(closing, WAIT)
        finally:
            await engine.close()


# -- resume after a late commit ---------------------------------------------------------------


async def test_a_resume_replays_an_event_that_committed_after_a_higher_id_was_sent(
    api_engine: Engine, unix_api: Api
) -> None:
    tenant = await new_tenant(api_engine.store)
    sid = await place_call(unix_api, tenant.slug)
    late, early = await asyncpg.connect(api_engine.db.url), await asyncpg.connect(api_engine.db.url)
    insert = (
        "INSERT INTO call_event (tenant_id, session_id, seq, event_type, payload) "
        "VALUES ($1, $2, $3, 'recording.paused', '{}') RETURNING id"
    )
    try:
        async with open_stream(api_engine, tenant.slug) as stream:
            slow = late.transaction()
            await slow.start()
            low = await late.fetchval(insert, tenant.id, uuid.UUID(sid), 100)
            high = await early.fetchval(insert, tenant.id, uuid.UUID(sid), 101)  # commits
            assert low < high
            got = await stream.event()
            assert got is not None
            assert got["id"] == high
        await slow.commit()  # the lower id becomes visible after the client left
    finally:
        await late.close()
        await early.close()
    # the cursor the client echoes back gets the late event; the bare id would not
    async with open_stream(
        api_engine, tenant.slug, headers={"Last-Event-ID": got["cursor"]}
    ) as stream:
        resumed = await stream.event()
    assert resumed is not None
    assert (resumed["id"], resumed["data"]["seq"]) == (low, 100)

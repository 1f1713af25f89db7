"""The routes the web console reads besides the seed's: the tenant of a token, calls per
minute with the answer rate and ring times, the agent board, a session's recording; and
the console's own pages, served on TCP only."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from engine.api.console import PAGES
from engine.app.recordings import RecordingDownloads
from engine.daemon import Engine
from engine.domain.event_types import CallEventType
from engine.errors import Conflict, NotFound
from tests.support.calls import C2C, CONNECT, initiate_body, move_call, place_call
from tests.support.http import Api
from tests.support.tenants import bearer_headers, new_tenant, tenant_headers

API = "/api/v1"
# a URL of another origin in an attribute, a CSS url() or a fetch()
_ELSEWHERE = re.compile(r"""(src|href|action|url|fetch)\s*[=(]\s*["'`]?(https?:)?//""")


async def _get(api: Api, path: str, slug: str, **params: Any) -> Any:
    status, body, _ = await api.call("GET", path, params=params, headers=tenant_headers(slug))
    assert status == 200, body
    return body


async def test_the_console_is_served_on_tcp_without_a_token_and_only_from_its_own_origin(
    tcp_api: Api, unix_api: Api, api_engine: Engine
) -> None:
    base = f"http://127.0.0.1:{api_engine.api.tcp_port}"
    session = tcp_api._session
    async with session.get(f"{base}/", allow_redirects=False) as resp:
        assert (resp.status, resp.headers["Location"]) == (302, "/console/")
    async with session.get(f"{base}/console/") as resp:
        page = await resp.text()
        assert resp.status == 200
        assert resp.content_type == "text/html"
        policy = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert '<script type="module" src="js/main.js">' in page
    for name, (body, _) in PAGES.items():  # nothing is loaded from anywhere else
        assert _ELSEWHERE.search(body.decode()) is None, name
    async with session.get(f"{base}/console/js/main.js") as resp:
        assert (resp.status, resp.content_type) == (200, "text/javascript")
    for missing in ("/console/nope.js", "/console/../pyproject.toml", "/console/js/"):
        async with session.get(f"{base}{missing}") as resp:
            assert resp.status == 404, missing
    # the Unix socket is for programs, not browsers
    status, _, _ = await unix_api.call("GET", "/console/")
    assert status == 404


async def test_the_tenant_route_names_the_tenant_a_token_acts_for(
    api_engine: Engine, tcp_api: Api
) -> None:
    tenant = await new_tenant(api_engine.store, name="Acme Sales")
    token = (await api_engine.store.tenants.issue_token(tenant.slug, "console")).token
    status, body, _ = await tcp_api.call("GET", f"{API}/tenant", headers=bearer_headers(token))
    assert (status, body) == (
        200,
        {"slug": tenant.slug, "name": "Acme Sales", "callback_url": None},
    )
    status, body, _ = await tcp_api.call("GET", f"{API}/tenant")
    assert (status, body["error"]["code"]) == (401, "unauthorized")


async def test_call_activity_counts_the_calls_of_each_minute_their_answers_and_ring_times(
    api_engine: Engine, unix_api: Api
) -> None:
    tenant = await new_tenant(api_engine.store)
    other = await new_tenant(api_engine.store)
    await place_call(unix_api, tenant.slug, *CONNECT, "completed")  # answered
    await place_call(unix_api, tenant.slug, "dialing_agent", "no_answer")  # never answered
    await place_call(unix_api, tenant.slug, "dialing_agent")  # still ringing
    await place_call(unix_api, other.slug, *CONNECT)

    activity = await _get(unix_api, f"{C2C}/stats/activity", tenant.slug, minutes=15)
    assert len(activity["minutes"]) == 15
    assert activity["minutes"][-1]["minute"] < activity["until"]
    assert (activity["placed"], activity["answered"], activity["decided"]) == (3, 1, 2)
    assert activity["answer_rate"] == 0.5  # answered / decided: the ringing call counts neither way
    assert sum(m["placed"] for m in activity["minutes"]) == 3
    ring = activity["ring_times"]
    assert [bucket["from_ms"] for bucket in ring][:3] == [0, 2000, 5000]
    # the answered call and the unanswered one rang (for milliseconds: the first bucket)
    assert ring[0]["count"] == 2
    assert sum(bucket["count"] for bucket in ring) == 2

    empty = await _get(unix_api, f"{C2C}/stats/activity", (await new_tenant(api_engine.store)).slug)
    assert (empty["placed"], empty["answer_rate"], len(empty["minutes"])) == (0, None, 60)

    status, body, _ = await unix_api.call(
        "GET", f"{C2C}/stats/activity?minutes=0", headers=tenant_headers(tenant.slug)
    )
    assert status == 422
    assert body["error"]["details"][0]["field"] == "minutes"


async def _call_of(api: Api, slug: str, agent_id: str, *statuses: str) -> str:
    status, body, _ = await api.call(
        "POST",
        f"{C2C}/initiate",
        json=initiate_body(agent_id=agent_id),
        headers=tenant_headers(slug),
    )
    assert status == 202, body
    await move_call(api, slug, body["id"], *statuses)
    return str(body["id"])


async def _report(api: Api, slug: str, agent_id: str, activity: str) -> None:
    status, body, _ = await api.call(
        "POST",
        f"{API}/agent-activity",
        json={"agent_id": agent_id, "activity": activity},
        headers=tenant_headers(slug),
    )
    assert status == 201, body


async def test_the_agent_board_trusts_a_live_call_then_the_agents_report_then_its_last_call(
    api_engine: Engine, unix_api: Api
) -> None:
    tenant = await new_tenant(api_engine.store)
    await _report(unix_api, tenant.slug, "ana", "break")
    await _report(unix_api, tenant.slug, "bo", "available")
    bo_call = await _call_of(unix_api, tenant.slug, "bo", *CONNECT)
    cy_call = await _call_of(unix_api, tenant.slug, "cy", "dialing_agent")
    dee_call = await _call_of(unix_api, tenant.slug, "dee", *CONNECT, "completed")
    await _call_of(unix_api, (await new_tenant(api_engine.store)).slug, "eve", "dialing_agent")

    board = await _get(unix_api, f"{API}/agents", tenant.slug)
    states = {a["agent"]: (a["state"], a["source"], a["last_session_id"]) for a in board["items"]}
    assert states == {
        "ana": ("break", "activity", None),
        "bo": ("on_call", "calls", bo_call),  # a live call beats the report
        "cy": ("ringing", "calls", cy_call),
        "dee": ("available", "calls", dee_call),  # its call ended, no wrap-up set
    }
    assert [a["agent"] for a in board["items"]] == ["ana", "bo", "cy", "dee"]
    assert {a["agent"]: a["calls"] for a in board["items"]}["bo"] == 1


async def test_a_recording_is_served_only_from_inside_the_recording_folder_once_the_call_ended(
    api_engine: Engine, unix_api: Api, tmp_path: Path
) -> None:
    store = api_engine.store
    folder = tmp_path / "recording"
    folder.mkdir()
    (folder / "c2c-1.wav").write_bytes(b"RIFF....WAVE")
    (tmp_path / "elsewhere.wav").write_bytes(b"RIFF....WAVE")
    recordings = RecordingDownloads(store, folder)
    tenant = await new_tenant(store)

    async def recorded(path: Path, *statuses: str) -> uuid.UUID:
        session_id = uuid.UUID(await place_call(unix_api, tenant.slug, *statuses))
        await store.sessions.append_event(
            tenant.id,
            session_id,
            CallEventType.RECORDING_STARTED,
            payload={},
            changes={"recording_path": str(path)},
        )
        return session_id

    ended = await recorded(folder / "c2c-1.wav", *CONNECT, "completed")
    with pytest.raises(Conflict):  # ended, but Asterisk may still be writing the file
        await recordings.file(tenant, ended)
    await store.sessions.append_event(
        tenant.id,
        ended,
        CallEventType.RECORDING_FINISHED,
        payload={"duration_ms": 4000},
        changes={"recording_duration_ms": 4000},
    )
    found = await recordings.file(tenant, ended)
    assert found.path == (folder / "c2c-1.wav").resolve()
    assert (found.media_type, found.filename) == ("audio/wav", f"{ended}.wav")

    live = await recorded(folder / "c2c-1.wav", *CONNECT)
    with pytest.raises(Conflict):  # still being written
        await recordings.file(tenant, live)
    for path in (tmp_path / "elsewhere.wav", folder / "../elsewhere.wav", folder / "gone.wav"):
        outside = await recorded(path, *CONNECT, "completed")
        with pytest.raises(NotFound):
            await recordings.file(tenant, outside)
    unrecorded = uuid.UUID(await place_call(unix_api, tenant.slug, "canceled"))
    with pytest.raises(NotFound):
        await recordings.file(tenant, unrecorded)
    with pytest.raises(NotFound):  # another tenant's session is no session
        await recordings.file(await new_tenant(store), ended)

    # this engine runs without ARI: it records nothing, so it serves nothing
    status, body, _ = await unix_api.call(
        "GET", f"{C2C}/sessions/{ended}/recording", headers=tenant_headers(tenant.slug)
    )
    assert (status, body["error"]["code"]) == (404, "not_found")

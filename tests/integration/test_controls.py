"""In-call controls through the real API with ARI disabled: every refusal, in order."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from engine.app.controls import (
    CallControlService,
    Hold,
    InCallControl,
    Mute,
    RecordingAction,
    RecordingControl,
    SendDtmf,
    Unhold,
)
from engine.app.ports import MuteDirection
from engine.asterisk.flows.controls import CallControls
from engine.asterisk.links.ari import AriNotFound
from engine.daemon import Engine
from engine.domain.click_to_call import Leg
from engine.errors import Conflict
from tests.support.calls import CONNECT, session_in
from tests.support.http import Api
from tests.support.tenants import tenant_headers

C2C = "/api/v1/click-to-call"

CONTROLS: list[tuple[str, dict[str, Any]]] = [
    ("hold", {"leg": "customer"}),
    ("unhold", {"leg": "agent"}),
    ("mute", {"leg": "customer", "direction": "in"}),
    ("unmute", {"leg": "agent", "direction": "both"}),
    ("dtmf", {"leg": "customer", "digits": "123#"}),
    ("recording", {"action": "pause"}),
]


@pytest.mark.parametrize(("action", "body"), CONTROLS)
async def test_a_session_that_is_not_connected_is_409(
    api_engine: Engine, unix_api: Api, action: str, body: dict[str, Any]
) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, "dialing_agent")
    status, err, _ = await unix_api.call(
        "POST", f"{C2C}/sessions/{sid}/{action}", json=body, headers=tenant_headers(slug)
    )
    assert status == 409, err
    assert err["error"]["code"] == "conflict"
    assert "dialing_agent" in err["error"]["message"]


@pytest.mark.parametrize(("action", "body"), CONTROLS)
async def test_unknown_or_malformed_session_is_404(
    unix_api: Api, action: str, body: dict[str, Any]
) -> None:
    for sid in (uuid.uuid4(), "not-a-uuid"):
        status, err, _ = await unix_api.call("POST", f"{C2C}/sessions/{sid}/{action}", json=body)
        assert status == 404, err
        assert err["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("hold", {}, "leg"),
        ("hold", {"leg": "supervisor"}, "leg"),
        ("unhold", {"leg": "customer", "extra": 1}, "extra"),
        ("mute", {"leg": "agent", "direction": "sideways"}, "direction"),
        ("unmute", {"direction": "in"}, "leg"),
        ("dtmf", {"leg": "customer", "digits": "12x"}, "digits"),
        ("dtmf", {"leg": "customer", "digits": ""}, "digits"),
        ("dtmf", {"leg": "customer", "digits": "1" * 33}, "digits"),
        ("dtmf", {"leg": "customer"}, "digits"),
        ("recording", {"action": "stop"}, "action"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    api_engine: Engine, unix_api: Api, action: str, body: dict[str, Any], field: str
) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, *CONNECT)
    status, err, _ = await unix_api.call(
        "POST", f"{C2C}/sessions/{sid}/{action}", json=body, headers=tenant_headers(slug)
    )
    assert status == 422, err
    assert err["error"]["code"] == "validation_error"
    assert field in [d["field"] for d in err["error"]["details"]], err


async def test_digits_accept_the_whole_dtmf_alphabet_before_needing_asterisk(
    api_engine: Engine, unix_api: Api
) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, *CONNECT)
    status, err, _ = await unix_api.call(
        "POST",
        f"{C2C}/sessions/{sid}/dtmf",
        json={"leg": "agent", "digits": "0123456789*#ABCD"},
        headers=tenant_headers(slug),
    )
    assert status == 503, err  # valid input, connected call, but no ARI here
    assert err["error"]["code"] == "unavailable"


@pytest.mark.parametrize(("action", "body"), CONTROLS)
async def test_a_connected_call_without_ari_is_503_and_records_nothing(
    api_engine: Engine, unix_api: Api, action: str, body: dict[str, Any]
) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, *CONNECT)
    status, err, _ = await unix_api.call(
        "POST", f"{C2C}/sessions/{sid}/{action}", json=body, headers=tenant_headers(slug)
    )
    assert status == 503, err
    assert err["error"]["code"] == "unavailable"
    _, detail, _ = await unix_api.call("GET", f"{C2C}/sessions/{sid}", headers=tenant_headers(slug))
    assert not [e for e in detail["events"] if e["event_type"].startswith("control.")]


async def test_an_ended_session_is_409(api_engine: Engine, unix_api: Api) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, *CONNECT, "completed")
    status, err, _ = await unix_api.call(
        "POST",
        f"{C2C}/sessions/{sid}/hold",
        json={"leg": "customer"},
        headers=tenant_headers(slug),
    )
    assert status == 409, err
    assert err["error"]["code"] == "conflict"


async def test_openapi_documents_the_controls(unix_api: Api) -> None:
    _, doc, _ = await unix_api.call("GET", "/api/v1/openapi.json")
    for action in ("hold", "unhold", "mute", "unmute", "dtmf", "recording"):
        op = doc["paths"][f"{C2C}/sessions/{{session_id}}/{action}"]["post"]
        assert {"200", "404", "409", "422", "503"} <= set(op["responses"])


class _GoneAri:
    """An AriClient stand-in whose every call answers 404 (the leg has hung up)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, params: Any = None) -> None:
        self.calls.append((method, path))
        raise AriNotFound(f"ARI {method} {path}: 404 Channel not found")


@pytest.mark.parametrize(
    "control",
    [
        Hold(Leg.CUSTOMER),
        Unhold(Leg.AGENT),
        Mute(Leg.CUSTOMER, MuteDirection.IN),
        SendDtmf(Leg.AGENT, "1"),
    ],
)
async def test_a_leg_that_is_gone_is_a_conflict_and_records_nothing(
    api_engine: Engine, unix_api: Api, control: Hold | Unhold | Mute | SendDtmf
) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, *CONNECT)
    tenant = await api_engine.store.tenants.by_slug(slug)
    assert tenant is not None
    ari = _GoneAri()
    controls = CallControlService(api_engine.store, CallControls(ari))  # type: ignore[arg-type]
    with pytest.raises(Conflict, match="leg is gone"):
        await controls.apply(tenant, uuid.UUID(sid), control)
    assert ari.calls[0][1].startswith(f"/channels/c2c-{sid}-{control.leg.value}/")
    events = await api_engine.store.sessions.events(tenant.id, uuid.UUID(sid))
    assert not [e for e in events if e.event_type.startswith("control.")]


async def test_a_recording_that_is_gone_is_a_conflict(api_engine: Engine, unix_api: Api) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, *CONNECT)
    tenant = await api_engine.store.tenants.by_slug(slug)
    assert tenant is not None
    await api_engine.store.sessions.append_event(
        tenant.id, uuid.UUID(sid), "recording.started", changes={"recording_path": "/tmp/x.wav"}
    )
    ari = _GoneAri()
    controls = CallControlService(api_engine.store, CallControls(ari))  # type: ignore[arg-type]
    pause: InCallControl = RecordingControl(RecordingAction.PAUSE)
    with pytest.raises(Conflict, match="not live"):
        await controls.apply(tenant, uuid.UUID(sid), pause)
    assert ari.calls == [("POST", f"/recordings/live/c2c-{sid}/pause")]


class _Ari:
    """An AriClient stand-in that accepts every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    async def request(self, method: str, path: str, params: Any = None) -> None:
        self.calls.append((method, path, params))


@pytest.mark.parametrize(
    ("control", "ari_calls", "event_type", "payload"),
    [
        (
            Hold(Leg.CUSTOMER),
            [
                ("POST", "customer/moh", {"mohClass": "default"}),
                ("POST", "customer/mute", {"direction": "in"}),
            ],
            "control.hold",
            {"leg": "customer"},
        ),
        (
            Unhold(Leg.AGENT),
            [("DELETE", "agent/moh", None), ("DELETE", "agent/mute", {"direction": "in"})],
            "control.unhold",
            {"leg": "agent"},
        ),
        (
            Mute(Leg.CUSTOMER, MuteDirection.OUT),
            [("POST", "customer/mute", {"direction": "out"})],
            "control.mute",
            {"leg": "customer", "direction": "out"},
        ),
        (
            SendDtmf(Leg.AGENT, "12#"),
            [("POST", "agent/dtmf", {"dtmf": "12#"})],
            "control.dtmf",
            {"leg": "agent", "digits": "12#"},
        ),
    ],
)
async def test_a_control_makes_its_ari_calls_and_records_its_event(
    api_engine: Engine,
    unix_api: Api,
    control: InCallControl,
    ari_calls: list[tuple[str, str, Any]],
    event_type: str,
    payload: dict[str, Any],
) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, *CONNECT)
    tenant = await api_engine.store.tenants.by_slug(slug)
    ari = _Ari()
    controls = CallControlService(api_engine.store, CallControls(ari))  # type: ignore[arg-type]
    await controls.apply(tenant, uuid.UUID(sid), control)
    assert ari.calls == [
        (method, f"/channels/c2c-{sid}-{where}", params) for method, where, params in ari_calls
    ]
    events = await api_engine.store.sessions.events(tenant.id, uuid.UUID(sid))
    assert (events[-1].event_type, events[-1].payload) == (
        event_type,
        {"source": "api", **payload},
    )


async def test_recording_pause_and_resume_name_the_live_recording(
    api_engine: Engine, unix_api: Api
) -> None:
    slug, sid = await session_in(api_engine.store, unix_api, *CONNECT)
    tenant = await api_engine.store.tenants.by_slug(slug)
    ari = _Ari()
    controls = CallControlService(api_engine.store, CallControls(ari))  # type: ignore[arg-type]
    pause = RecordingControl(RecordingAction.PAUSE)
    with pytest.raises(Conflict, match="not being recorded"):
        await controls.apply(tenant, uuid.UUID(sid), pause)
    assert ari.calls == []
    await api_engine.store.sessions.append_event(
        tenant.id, uuid.UUID(sid), "recording.started", changes={"recording_path": "/tmp/x.wav"}
    )
    await controls.apply(tenant, uuid.UUID(sid), pause)
    await controls.apply(tenant, uuid.UUID(sid), RecordingControl(RecordingAction.RESUME))
    path = f"/recordings/live/c2c-{sid}/pause"
    assert ari.calls == [("POST", path, None), ("DELETE", path, None)]
    events = await api_engine.store.sessions.events(tenant.id, uuid.UUID(sid))
    assert [(e.event_type, e.payload) for e in events[-2:]] == [
        ("recording.paused", {"source": "api", "name": f"c2c-{sid}"}),
        ("recording.resumed", {"source": "api", "name": f"c2c-{sid}"}),
    ]

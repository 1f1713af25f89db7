"""The in-call control routes (hold, unhold, mute, unmute, DTMF, recording), built from one
table: each row is a path, its body model and how the body becomes an
:data:`~engine.app.controls.InCallControl`. They act on connected calls only (409
otherwise) and need Asterisk (503 without ARI, after the 404 and 409 checks)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from engine.api.endpoints import ApiRequest, Handler, json_response, router
from engine.api.models import DtmfIn, LegIn, MuteIn, RecordingControlIn, SessionOut
from engine.api.routes.common import C2C, error_responses, path_session_id, session_out, use_cases
from engine.app.controls import (
    Hold,
    InCallControl,
    Mute,
    RecordingAction,
    RecordingControl,
    SendDtmf,
    Unhold,
    Unmute,
)
from engine.app.ports import MuteDirection
from engine.domain.click_to_call import Leg

__all__ = ["CONTROL_ROUTES", "ControlRoute"]


@dataclasses.dataclass(frozen=True, slots=True)
class ControlRoute:
    action: str  # the last path segment
    operation_id: str
    summary: str
    body: type[BaseModel]
    control: Callable[[Any], InCallControl]  # the validated body -> the control
    description: str | None = None


CONTROL_ROUTES = (
    ControlRoute(
        "hold",
        "hold_leg",
        "Put a party on hold (it hears music; the other side stops hearing it)",
        LegIn,
        lambda body: Hold(Leg(body.leg)),
    ),
    ControlRoute(
        "unhold",
        "unhold_leg",
        "Take a party off hold",
        LegIn,
        lambda body: Unhold(Leg(body.leg)),
    ),
    ControlRoute(
        "mute",
        "mute_leg",
        "Mute a party (in: it is not heard; out: it hears nothing)",
        MuteIn,
        lambda body: Mute(Leg(body.leg), MuteDirection(body.direction)),
    ),
    ControlRoute(
        "unmute",
        "unmute_leg",
        "Unmute a party",
        MuteIn,
        lambda body: Unmute(Leg(body.leg), MuteDirection(body.direction)),
    ),
    ControlRoute(
        "dtmf",
        "send_dtmf",
        "Send DTMF digits to a party",
        DtmfIn,
        lambda body: SendDtmf(Leg(body.leg), body.digits),
    ),
    ControlRoute(
        "recording",
        "control_recording",
        "Pause or resume the call's recording",
        RecordingControlIn,
        lambda body: RecordingControl(RecordingAction(body.action)),
        description="409 when the call is not being recorded.",
    ),
)


def _handler(route: ControlRoute) -> Handler:
    async def control_call(req: ApiRequest) -> web.StreamResponse:
        control = route.control(req.body_as(route.body))
        session = await use_cases(req).controls.apply(
            req.require_tenant(), path_session_id(req), control
        )
        return json_response(session_out(session))

    return control_call


for _route in CONTROL_ROUTES:
    router.route(
        "POST",
        f"{C2C}/sessions/{{session_id}}/{_route.action}",
        summary=_route.summary,
        tags=("click-to-call",),
        body=_route.body,
        responses={200: SessionOut, **error_responses(400, 401, 404, 409, 422, 503)},
        operation_id=_route.operation_id,
        description=_route.description,
    )(_handler(_route))

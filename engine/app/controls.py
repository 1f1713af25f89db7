"""In-call controls of a connected click-to-call: hold, unhold, mute, unmute, DTMF and
recording pause/resume.

A control is a plain dataclass (:data:`InCallControl`); :meth:`CallControlService.apply`
checks the session (NotFound unless the tenant's, Conflict unless ``connected``), has the
:class:`~engine.app.ports.InCallControls` port do the telephony, and records what it did
as a ``call_event``. The order of the refusals is part of the contract: an unknown session
is NotFound and a call that is not connected is Conflict even with ARI disabled; only a
valid request on a connected call learns that controls need Asterisk (FeatureUnavailable).
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Mapping
from typing import Any

import structlog

from engine.app.forwarding import forward, owner_elsewhere
from engine.app.ports import InCallControls, MuteDirection, OwnerLink
from engine.domain.call import CallStatus
from engine.domain.click_to_call import Leg
from engine.domain.event_types import CallEventType
from engine.errors import Conflict, FeatureUnavailable, InvalidInput
from engine.store.records import StoredSession, Tenant
from engine.store.repositories import Store

__all__ = [
    "CallControlService",
    "Hold",
    "InCallControl",
    "Mute",
    "RecordingAction",
    "RecordingControl",
    "SendDtmf",
    "Unhold",
    "Unmute",
    "decode_control",
    "encode_control",
]

log = structlog.get_logger(__name__)


class RecordingAction(enum.StrEnum):
    PAUSE = "pause"
    RESUME = "resume"


@dataclasses.dataclass(frozen=True, slots=True)
class Hold:
    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class Unhold:
    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class Mute:
    leg: Leg
    direction: MuteDirection = MuteDirection.BOTH


@dataclasses.dataclass(frozen=True, slots=True)
class Unmute:
    leg: Leg
    direction: MuteDirection = MuteDirection.BOTH


@dataclasses.dataclass(frozen=True, slots=True)
class SendDtmf:
    leg: Leg
    digits: str


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingControl:
    action: RecordingAction


InCallControl = Hold | Unhold | Mute | Unmute | SendDtmf | RecordingControl


class CallControlService:
    """The in-call controls; ``controls`` is None when ARI is not enabled; ``owners``
    reaches the engine that owns a session when it is another one (None: a lone engine)."""

    def __init__(
        self,
        store: Store,
        controls: InCallControls | None = None,
        *,
        owners: OwnerLink | None = None,
    ) -> None:
        self._store = store
        self._controls = controls
        self.owners = owners

    async def apply(
        self, tenant: Tenant, session_id: uuid.UUID, control: InCallControl
    ) -> StoredSession:
        """Carry out ``control`` on the session's call; return the session as stored."""
        session = await self._store.sessions.get(tenant.id, session_id)
        if session.status is not CallStatus.CONNECTED:
            raise Conflict(
                f"session {session_id} is {session.status.value}; in-call controls need a "
                "connected call"
            )
        link = owner_elsewhere(self.owners, session)
        if link is not None:  # its channels are on the owner's Asterisk
            await forward(link, session, tenant, {"op": "control", **encode_control(control)})
            return await self._store.sessions.get(tenant.id, session_id)
        if self._controls is None:
            raise FeatureUnavailable("in-call controls need Asterisk (ARI is not enabled)")
        event_type, payload = await self._carry_out(self._controls, session, control)
        updated, _ = await self._store.sessions.append_event(
            session.tenant_id, session.id, event_type, payload={"source": "api", **payload}
        )
        log.info(event_type, call_id=str(session.id), tenant_id=str(session.tenant_id), **payload)
        return updated

    @staticmethod
    async def _carry_out(
        port: InCallControls, session: StoredSession, control: InCallControl
    ) -> tuple[CallEventType, dict[str, Any]]:
        """Do the telephony; return the event type and payload that record it."""
        match control:
            case Hold(leg):
                await port.hold(session, leg)
                return CallEventType.CONTROL_HOLD, {"leg": leg.value}
            case Unhold(leg):
                await port.unhold(session, leg)
                return CallEventType.CONTROL_UNHOLD, {"leg": leg.value}
            case Mute(leg, direction):
                await port.mute(session, leg, direction)
                return CallEventType.CONTROL_MUTE, {"leg": leg.value, "direction": direction.value}
            case Unmute(leg, direction):
                await port.unmute(session, leg, direction)
                return CallEventType.CONTROL_UNMUTE, {
                    "leg": leg.value,
                    "direction": direction.value,
                }
            case SendDtmf(leg, digits):
                await port.send_dtmf(session, leg, digits)
                return CallEventType.CONTROL_DTMF, {"leg": leg.value, "digits": digits}
            case RecordingControl(action):
                if session.recording_path is None:
                    raise Conflict(f"session {session.id} is not being recorded")
                if action is RecordingAction.PAUSE:
                    return CallEventType.RECORDING_PAUSED, {
                        "name": await port.pause_recording(session)
                    }
                return CallEventType.RECORDING_RESUMED, {
                    "name": await port.resume_recording(session)
                }


def encode_control(control: InCallControl) -> dict[str, Any]:
    """An in-call control as a command's JSON fields."""
    match control:
        case Hold(leg) | Unhold(leg):
            return {"control": type(control).__name__.lower(), "leg": leg.value}
        case Mute(leg, direction) | Unmute(leg, direction):
            name = type(control).__name__.lower()
            return {"control": name, "leg": leg.value, "direction": direction.value}
        case SendDtmf(leg, digits):
            return {"control": "dtmf", "leg": leg.value, "digits": digits}
        case RecordingControl(action):
            return {"control": "recording", "action": action.value}


def decode_control(fields: Mapping[str, Any]) -> InCallControl:
    """The control :func:`encode_control` wrote (InvalidInput for anything else)."""
    try:
        match fields.get("control"):
            case "hold":
                return Hold(Leg(fields["leg"]))
            case "unhold":
                return Unhold(Leg(fields["leg"]))
            case "mute":
                return Mute(Leg(fields["leg"]), MuteDirection(fields["direction"]))
            case "unmute":
                return Unmute(Leg(fields["leg"]), MuteDirection(fields["direction"]))
            case "dtmf":
                return SendDtmf(Leg(fields["leg"]), str(fields["digits"]))
            case "recording":
                return RecordingControl(RecordingAction(fields["action"]))
    except (KeyError, ValueError) as exc:
        raise InvalidInput("control", f"malformed forwarded control: {exc}") from exc
    raise InvalidInput("control", f"unknown forwarded control {fields.get('control')!r}")

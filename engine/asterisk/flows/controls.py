"""In-call controls on a connected click-to-call: hold, mute, DTMF, recording pause.

Each control checks that the session is ``connected`` (409 ``conflict`` otherwise), makes
its ARI calls on the leg's channel (``c2c-<uuid>-agent|customer``) or the call's live
recording (``c2c-<uuid>``), and records what it did as a ``call_event``. ARI answering 404
means the leg (or the recording) is already gone: that is a conflict too, not a 404 of ours.

Hold plays music on hold to the held party and mutes what it says (direction ``in``), so
the held party hears music and the other side hears nothing of them; unhold undoes both
(it also lifts an inbound mute set before the hold).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

import structlog

from engine.asterisk.links.ari import AriClient, AriNotFound
from engine.domain.call import CallStatus
from engine.domain.click_to_call import Leg
from engine.domain.event_types import CallEventType
from engine.errors import Conflict
from engine.store.records import StoredSession
from engine.store.repositories import Store

__all__ = ["CallControls", "MuteDirection", "RecordingAction", "require_connected"]

log = structlog.get_logger(__name__)

MuteDirection = Literal["in", "out", "both"]
RecordingAction = Literal["pause", "resume"]
MOH_CLASS = "default"


async def require_connected(
    store: Store, tenant_id: uuid.UUID, session_id: uuid.UUID
) -> StoredSession:
    """The session (NotFound unless the tenant's); Conflict unless it is connected."""
    session = await store.sessions.get(tenant_id, session_id)
    if session.status is not CallStatus.CONNECTED:
        raise Conflict(
            f"session {session_id} is {session.status.value}; in-call controls need a "
            "connected call"
        )
    return session


def _channel(session: StoredSession, leg: Leg) -> str:
    stored = session.agent_channel_id if leg is Leg.AGENT else session.customer_channel_id
    return stored or f"c2c-{session.id}-{leg.value}"


def recording_name(session: StoredSession) -> str:
    return f"c2c-{session.id}"


class CallControls:
    """In-call controls over ARI; every one is recorded as a call event."""

    def __init__(self, ari: AriClient, store: Store) -> None:
        self._ari = ari
        self._store = store

    async def hold(self, tenant_id: uuid.UUID, session_id: uuid.UUID, leg: Leg) -> StoredSession:
        session = await require_connected(self._store, tenant_id, session_id)
        channel = _channel(session, leg)
        await self._ari_call(leg, "POST", f"/channels/{channel}/moh", {"mohClass": MOH_CLASS})
        await self._ari_call(leg, "POST", f"/channels/{channel}/mute", {"direction": "in"})
        return await self._record(session, CallEventType.CONTROL_HOLD, {"leg": leg.value})

    async def unhold(self, tenant_id: uuid.UUID, session_id: uuid.UUID, leg: Leg) -> StoredSession:
        session = await require_connected(self._store, tenant_id, session_id)
        channel = _channel(session, leg)
        await self._ari_call(leg, "DELETE", f"/channels/{channel}/moh")
        await self._ari_call(leg, "DELETE", f"/channels/{channel}/mute", {"direction": "in"})
        return await self._record(session, CallEventType.CONTROL_UNHOLD, {"leg": leg.value})

    async def mute(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        leg: Leg,
        direction: MuteDirection,
        *,
        on: bool = True,
    ) -> StoredSession:
        session = await require_connected(self._store, tenant_id, session_id)
        await self._ari_call(
            leg,
            "POST" if on else "DELETE",
            f"/channels/{_channel(session, leg)}/mute",
            {"direction": direction},
        )
        return await self._record(
            session,
            CallEventType.CONTROL_MUTE if on else CallEventType.CONTROL_UNMUTE,
            {"leg": leg.value, "direction": direction},
        )

    async def dtmf(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, leg: Leg, digits: str
    ) -> StoredSession:
        session = await require_connected(self._store, tenant_id, session_id)
        await self._ari_call(
            leg, "POST", f"/channels/{_channel(session, leg)}/dtmf", {"dtmf": digits}
        )
        return await self._record(
            session, CallEventType.CONTROL_DTMF, {"leg": leg.value, "digits": digits}
        )

    async def recording(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID, action: RecordingAction
    ) -> StoredSession:
        session = await require_connected(self._store, tenant_id, session_id)
        if session.recording_path is None:
            raise Conflict(f"session {session_id} is not being recorded")
        name = recording_name(session)
        try:
            await self._ari.request(
                "POST" if action == "pause" else "DELETE", f"/recordings/live/{name}/pause"
            )
        except AriNotFound as exc:
            raise Conflict(f"the recording of session {session_id} is not live") from exc
        event = (
            CallEventType.RECORDING_PAUSED if action == "pause" else CallEventType.RECORDING_RESUMED
        )
        return await self._record(session, event, {"name": name})

    async def _ari_call(
        self, leg: Leg, method: str, path: str, params: Mapping[str, Any] | None = None
    ) -> None:
        try:
            await self._ari.request(method, path, params)
        except AriNotFound as exc:
            raise Conflict(f"the {leg.value} leg is gone") from exc

    async def _record(
        self, session: StoredSession, event_type: CallEventType, payload: dict[str, Any]
    ) -> StoredSession:
        updated, _ = await self._store.sessions.append_event(
            session.tenant_id, session.id, event_type, payload={"source": "api", **payload}
        )
        log.info(event_type, call_id=str(session.id), tenant_id=str(session.tenant_id), **payload)
        return updated

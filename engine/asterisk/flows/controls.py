"""In-call controls over ARI: the :class:`~engine.app.ports.InCallControls` port.

Each control makes its ARI calls on the leg's channel (``c2c-<uuid>-agent|customer``) or the
call's live recording (``c2c-<uuid>``); the use case (:mod:`engine.app.controls`) checks the
session first and records the event after. ARI answering 404 means the leg (or the
recording) is already gone: that is a conflict, not a 404 of ours.

Hold plays music on hold to the held party and mutes what it says (direction ``in``), so
the held party hears music and the other side hears nothing of them; unhold undoes both
(it also lifts an inbound mute set before the hold).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.app.ports import MuteDirection
from engine.asterisk.links.ari import AriClient, AriNotFound
from engine.asterisk.naming import current_leg_channel, recording_name
from engine.domain.click_to_call import Leg
from engine.errors import Conflict
from engine.store.records import StoredSession

__all__ = ["CallControls"]

MOH_CLASS = "default"


class CallControls:
    """In-call controls over ARI (the use case records each as a call event)."""

    def __init__(self, ari: AriClient) -> None:
        self._ari = ari

    async def hold(self, session: StoredSession, leg: Leg) -> None:
        channel = current_leg_channel(session, leg)
        await self._ari_call(leg, "POST", f"/channels/{channel}/moh", {"mohClass": MOH_CLASS})
        await self._ari_call(leg, "POST", f"/channels/{channel}/mute", {"direction": "in"})

    async def unhold(self, session: StoredSession, leg: Leg) -> None:
        channel = current_leg_channel(session, leg)
        await self._ari_call(leg, "DELETE", f"/channels/{channel}/moh")
        await self._ari_call(leg, "DELETE", f"/channels/{channel}/mute", {"direction": "in"})

    async def mute(self, session: StoredSession, leg: Leg, direction: MuteDirection) -> None:
        channel = current_leg_channel(session, leg)
        await self._ari_call(
            leg, "POST", f"/channels/{channel}/mute", {"direction": direction.value}
        )

    async def unmute(self, session: StoredSession, leg: Leg, direction: MuteDirection) -> None:
        channel = current_leg_channel(session, leg)
        await self._ari_call(
            leg, "DELETE", f"/channels/{channel}/mute", {"direction": direction.value}
        )

    async def send_dtmf(self, session: StoredSession, leg: Leg, digits: str) -> None:
        channel = current_leg_channel(session, leg)
        await self._ari_call(leg, "POST", f"/channels/{channel}/dtmf", {"dtmf": digits})

    async def pause_recording(self, session: StoredSession) -> str:
        return await self._recording_pause(session, "POST")

    async def resume_recording(self, session: StoredSession) -> str:
        return await self._recording_pause(session, "DELETE")

    async def _recording_pause(self, session: StoredSession, method: str) -> str:
        name = recording_name(session.id)
        try:
            await self._ari.request(method, f"/recordings/live/{name}/pause")
        except AriNotFound as exc:
            raise Conflict(f"the recording of session {session.id} is not live") from exc
        return name

    async def _ari_call(
        self, leg: Leg, method: str, path: str, params: Mapping[str, Any] | None = None
    ) -> None:
        try:
            await self._ari.request(method, path, params)
        except AriNotFound as exc:
            raise Conflict(f"the {leg.value} leg is gone") from exc

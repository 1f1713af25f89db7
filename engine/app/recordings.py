"""A session's recording as a file to download or play (the console's player).

Asterisk writes a click-to-call's recording under ``ari.recording_dir`` and the session
row keeps its path (:mod:`engine.asterisk.flows.click_to_call`). A path is served only
when it is a file inside that directory once resolved: a row is data, and a path that
points elsewhere (edited by hand, or from an engine configured with another directory)
names no recording here. Until the call has ended and its recording's end is known (Asterisk
says so, or the engine found the file: :mod:`engine.asterisk.flows.click_to_call`) the
file may still be growing: 409.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path
from typing import Final

import structlog

from engine.errors import Conflict, NotFound
from engine.store.records import Tenant
from engine.store.repositories import Store

__all__ = ["MEDIA_TYPES", "RecordingDownloads", "RecordingFile"]

log = structlog.get_logger(__name__)

# The formats Asterisk's channel recording writes that a browser may play, by suffix.
MEDIA_TYPES: Final = {
    ".wav": "audio/wav",
    ".wav49": "audio/wav",
    ".gsm": "audio/gsm",
    ".ulaw": "audio/basic",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
}


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingFile:
    path: Path
    media_type: str
    filename: str  # what a download saves it as: <session id><suffix>


class RecordingDownloads:
    def __init__(self, store: Store, recording_dir: Path | None) -> None:
        self._store = store
        self._dir = recording_dir  # None without ARI: the engine records nothing

    async def file(self, tenant: Tenant, session_id: uuid.UUID) -> RecordingFile:
        """The tenant's session's recording (NotFound when it has none on this host,
        Conflict until the call has ended and its recording's end is known)."""
        session = await self._store.sessions.get(tenant.id, session_id)
        if session.recording_path is None or self._dir is None:
            raise NotFound("recording of session", session_id)
        if not session.status.is_terminal:
            raise Conflict(
                f"session {session_id} is {session.status.value}: its recording is not finished"
            )
        path = await asyncio.to_thread(self._inside_dir, Path(session.recording_path))
        if path is None:
            log.warning(
                "recording.not_served",
                call_id=str(session_id),
                path=session.recording_path,
                recording_dir=str(self._dir),
            )
            raise NotFound("recording of session", session_id)
        if session.recording_duration_ms is None:
            # the call ended, Asterisk may still be writing the file (its end is not known)
            raise Conflict(f"session {session_id}'s recording is not finished yet")
        return RecordingFile(
            path=path,
            media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"),
            filename=f"{session_id}{path.suffix.lower()}",
        )

    def _inside_dir(self, path: Path) -> Path | None:
        """``path`` resolved, if it is a file inside the recording directory."""
        if self._dir is None:
            return None
        resolved = path.resolve()
        if not resolved.is_relative_to(self._dir.resolve()) or not resolved.is_file():
            return None
        return resolved

"""Recording files in Asterisk's recording spool, as the engine's host sees it
(``ari.recording_dir``): what the recording retention deletes.

Only files under that directory are deleted: a session's ``recording_path`` is data in the
database, and a path that resolves elsewhere (``..``, a symlink out, a directory the
configuration no longer names) is refused, not followed. The deletion runs in a worker
thread: a spool on network storage can take its time, and every call shares the event
loop. The engine's user needs write access to the spool directory (Asterisk owns the
files; ``ctc doctor`` checks that the directory is writable).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from engine.app.ports import FileDeletion

__all__ = ["SpoolRecordingFiles"]

log = structlog.get_logger(__name__)


class SpoolRecordingFiles:
    """:class:`~engine.app.ports.RecordingFiles` over a local directory."""

    def __init__(self, recording_dir: Path) -> None:
        self._root = recording_dir

    async def delete(self, path: str) -> FileDeletion:
        return await asyncio.to_thread(self._delete, path)

    def _delete(self, path: str) -> FileDeletion:
        root = self._root.resolve()
        stored = Path(path)
        target = (stored if stored.is_absolute() else root / stored).resolve()
        if not target.is_relative_to(root) or target == root:
            log.warning("retention.recording_outside_spool", path=path, spool=str(root))
            return "refused"
        try:
            target.unlink()
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            log.error("retention.recording_not_deleted", path=path, error=str(exc))
            return "failed"
        return "deleted"

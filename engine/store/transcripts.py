"""The transcript queue and its results (``call_transcript``), and each tenant's switch.

Rows are queued by PostgreSQL itself (sql/0013_transcripts.sql: a trigger on the
``recording.finished`` event of a tenant that has transcripts on). The worker claims a due
row with ``FOR UPDATE SKIP LOCKED`` and a lease, so several engines on one database never
run the same one and a row whose engine died is taken up again once its lease runs out.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import asyncpg

from engine.domain.transcripts import Transcript
from engine.store.database import Database
from engine.store.records import StoredTranscript, TranscriptJob

__all__ = ["TranscriptRepository"]

_STORED = (
    "session_id, state, attempts, last_error, backend, model, language, transcript, words, "
    "audio_ms, decode_ms, created_at, finished_at"
)


def _stored(row: asyncpg.Record) -> StoredTranscript:
    return StoredTranscript(
        session_id=row["session_id"],
        state=row["state"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        backend=row["backend"],
        model=row["model"],
        language=row["language"],
        text=row["transcript"],
        words=row["words"],
        audio_ms=row["audio_ms"],
        decode_ms=row["decode_ms"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
    )


class TranscriptRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def set_enabled(self, tenant_id: uuid.UUID, enabled: bool) -> None:
        """Turn the tenant's transcripts on or off (recordings that end from now on)."""
        await self._db.execute(
            "UPDATE tenant SET transcripts_enabled = $2, updated_at = now() WHERE id = $1",
            tenant_id,
            enabled,
        )

    async def enabled(self, tenant_id: uuid.UUID) -> bool:
        found: bool | None = await self._db.fetchval(
            "SELECT transcripts_enabled FROM tenant WHERE id = $1", tenant_id
        )
        return bool(found)

    async def claim(self, lease: timedelta) -> TranscriptJob | None:
        """Take the oldest due row (queued and due, or running past its lease); None when
        there is none. Its attempt is counted as it is taken."""
        row = await self._db.fetchrow(
            "UPDATE call_transcript SET state = 'running', attempts = attempts + 1, "
            "leased_until = now() + $1, started_at = now(), last_error = NULL "
            "WHERE id = (SELECT id FROM call_transcript "
            "  WHERE (state = 'queued' AND run_after <= now()) "
            "     OR (state = 'running' AND leased_until < now()) "
            "  ORDER BY run_after, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
            "RETURNING id, tenant_id, session_id, recording_path, attempts",
            lease,
        )
        if row is None:
            return None
        return TranscriptJob(
            id=row["id"],
            tenant_id=row["tenant_id"],
            session_id=row["session_id"],
            recording_path=row["recording_path"],
            attempts=row["attempts"],
        )

    async def complete(self, job: TranscriptJob, transcript: Transcript, decode_ms: int) -> None:
        await self._db.execute(
            "UPDATE call_transcript SET state = 'completed', leased_until = NULL, "
            "backend = $2, model = $3, language = $4, transcript = $5, words = $6, "
            "audio_ms = $7, decode_ms = $8, finished_at = now() WHERE id = $1",
            job.id,
            transcript.backend,
            transcript.model,
            transcript.language,
            transcript.text,
            [dataclasses.asdict(word) for word in transcript.words],
            transcript.audio_ms,
            decode_ms,
        )

    async def fail(self, job: TranscriptJob, error: str, retry_in: timedelta | None) -> None:
        """Record the failure; the row is due again after ``retry_in``, or failed for good
        when it is None."""
        if retry_in is None:
            await self._db.execute(
                "UPDATE call_transcript SET state = 'failed', leased_until = NULL, "
                "last_error = $2, finished_at = now() WHERE id = $1",
                job.id,
                error[:2000],
            )
            return
        await self._db.execute(
            "UPDATE call_transcript SET state = 'queued', leased_until = NULL, "
            "last_error = $2, run_after = now() + $3 WHERE id = $1",
            job.id,
            error[:2000],
            retry_in,
        )

    async def for_session(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID
    ) -> StoredTranscript | None:
        row = await self._db.fetchrow(
            f"SELECT {_STORED} FROM call_transcript WHERE tenant_id = $1 AND session_id = $2",
            tenant_id,
            session_id,
        )
        return None if row is None else _stored(row)

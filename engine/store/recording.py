"""Which recording policy applies to a call (``call_recording_config``)."""

from __future__ import annotations

import uuid

from engine.store.database import Database
from engine.store.records import RecordingPolicy

__all__ = ["RecordingPolicyRepository"]


class RecordingPolicyRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def for_call(
        self, tenant_id: uuid.UUID, provider_id: uuid.UUID | None, direction: str
    ) -> RecordingPolicy | None:
        """The most specific row for this provider and direction, else the tenant default.

        A specific row that is disabled wins over an enabled default (that is how a
        tenant turns recording off for one carrier).
        """
        row = await self._db.fetchrow(
            "SELECT is_enabled, record, format, storage_path, beep, max_duration_s, "
            "pause_allowed FROM call_recording_config WHERE tenant_id = $1 "
            "AND (provider_id IS NULL OR provider_id = $2) "
            "AND (direction IS NULL OR direction = $3) "
            "ORDER BY provider_id IS NULL, direction IS NULL, is_default DESC LIMIT 1",
            tenant_id,
            provider_id,
            direction,
        )
        return None if row is None else RecordingPolicy(**dict(row))

    async def set_default(
        self, tenant_id: uuid.UUID, *, is_enabled: bool = True, fmt: str = "wav"
    ) -> None:
        """Make (or replace) the tenant's default policy."""
        await self._db.execute(
            "INSERT INTO call_recording_config (tenant_id, is_enabled, format, is_default) "
            "VALUES ($1, $2, $3, true) ON CONFLICT (tenant_id) WHERE is_default "
            "DO UPDATE SET is_enabled = EXCLUDED.is_enabled, format = EXCLUDED.format, "
            "updated_at = now()",
            tenant_id,
            is_enabled,
            fmt,
        )

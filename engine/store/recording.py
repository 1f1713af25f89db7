"""Which recording policy applies to a call (``call_recording_config``).

Every click-to-call reads its policy when the customer answers, so the policy found is kept
for a few seconds (:mod:`engine.store.read_cache`): a change made by this process is seen at
once, one made elsewhere within that time.
"""

from __future__ import annotations

import uuid

from engine.store.database import Database
from engine.store.read_cache import ReadCache
from engine.store.records import RecordingPolicy

__all__ = ["RecordingPolicyRepository"]

# what a policy is chosen by: (tenant, provider, direction)
_CallKind = tuple[uuid.UUID, uuid.UUID | None, str]


class RecordingPolicyRepository:
    def __init__(self, db: Database, *, cache_ttl: float = 5.0) -> None:
        self._db = db
        # None: no policy applies
        self._policies: ReadCache[_CallKind, RecordingPolicy | None] = ReadCache(cache_ttl)

    async def for_call(
        self, tenant_id: uuid.UUID, provider_id: uuid.UUID | None, direction: str
    ) -> RecordingPolicy | None:
        """The most specific row for this provider and direction, else the tenant default.

        A specific row that is disabled wins over an enabled default (that is how a
        tenant turns recording off for one carrier).
        """

        async def read() -> RecordingPolicy | None:
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

        return await self._policies.get((tenant_id, provider_id, direction), read)

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
        self._policies.clear()  # this process sees the change at once

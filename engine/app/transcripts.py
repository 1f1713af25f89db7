"""Transcripts of recorded calls, as the API and the CLI read them, and each tenant's
switch (off by default; transcripts are made by the daemon's worker,
:mod:`engine.transcription.worker`)."""

from __future__ import annotations

import uuid

from engine.errors import NotFound
from engine.store.records import QualityMetric, StoredTranscript, Tenant
from engine.store.repositories import Store

__all__ = ["CallQualityReads", "TranscriptService"]


class TranscriptService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def of_session(self, tenant: Tenant, session_id: uuid.UUID) -> StoredTranscript:
        """The session's transcript row (queued, running, completed or failed); NotFound
        when the session is not the tenant's or none was queued for it."""
        await self._store.sessions.get(tenant.id, session_id)  # NotFound for another tenant's
        found = await self._store.transcripts.for_session(tenant.id, session_id)
        if found is None:
            raise NotFound("transcript of session", session_id)
        return found

    async def set_enabled(self, slug: str, enabled: bool) -> Tenant:
        """Turn tenant ``slug``'s transcripts on or off: recordings that end from now on."""
        tenant = await self._store.tenants.by_slug(slug)
        await self._store.transcripts.set_enabled(tenant.id, enabled)
        return tenant

    async def enabled(self, slug: str) -> bool:
        tenant = await self._store.tenants.by_slug(slug)
        return await self._store.transcripts.enabled(tenant.id)


class CallQualityReads:
    """A call's quality rows (samples and each leg's final figures with MOS)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def of_session(self, tenant: Tenant, session_id: uuid.UUID) -> list[QualityMetric]:
        await self._store.sessions.get(tenant.id, session_id)  # NotFound for another tenant's
        return await self._store.quality.for_session(tenant.id, session_id)

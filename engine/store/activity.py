"""Agent activity log and the log of webhooks carriers sent us."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from engine.errors import NotFound
from engine.store.database import Database, returned
from engine.store.records import AgentActivity, WebhookLogEntry

__all__ = ["ActivityRepository", "WebhookRepository"]


class ActivityRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        tenant_id: uuid.UUID,
        agent_id: str,
        activity: str,
        *,
        session_id: uuid.UUID | None = None,
        details: Mapping[str, Any] | None = None,
        occurred_at: datetime | None = None,
    ) -> AgentActivity:
        try:
            row = await self._db.fetchrow(
                "INSERT INTO agent_activity_log (tenant_id, agent_id, activity, session_id, "
                "details, occurred_at) VALUES ($1, $2, $3, $4, $5, coalesce($6, now())) "
                "RETURNING id, tenant_id, agent_id, activity, session_id, details, occurred_at",
                tenant_id,
                agent_id,
                activity,
                session_id,
                dict(details or {}),
                occurred_at,
            )
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFound("session", session_id) from exc
        return AgentActivity(**dict(returned(row, "INSERT INTO agent_activity_log")))

    async def latest_per_agent(self, tenant_id: uuid.UUID) -> list[AgentActivity]:
        """Each agent's newest report, by agent."""
        rows = await self._db.fetch(
            "SELECT DISTINCT ON (agent_id) id, tenant_id, agent_id, activity, session_id, "
            "details, occurred_at FROM agent_activity_log WHERE tenant_id = $1 "
            "ORDER BY agent_id, occurred_at DESC, id DESC",
            tenant_id,
        )
        return [AgentActivity(**dict(r)) for r in rows]


class WebhookRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        tenant_id: uuid.UUID,
        provider_type: str,
        *,
        payload: Mapping[str, Any],
        headers: Mapping[str, str],
        provider_call_id: str | None,
        event_type: str | None,
    ) -> WebhookLogEntry:
        """Log a webhook as received, linked to the tenant's session with that call id."""
        row = await self._db.fetchrow(
            "INSERT INTO click_to_call_webhook_log (tenant_id, provider_type, session_id, "
            "provider_call_id, event_type, payload, headers, processing_status) "
            "VALUES ($1, $2, (SELECT id FROM click_to_call_session WHERE tenant_id = $1 "
            "  AND provider_call_id = $3 LIMIT 1), $3, $4, $5, $6, 'received') "
            "RETURNING id, provider_type, session_id, provider_call_id, event_type, "
            "processing_status, received_at",
            tenant_id,
            provider_type,
            provider_call_id,
            event_type,
            dict(payload),
            dict(headers),
        )
        return WebhookLogEntry(**dict(returned(row, "INSERT INTO click_to_call_webhook_log")))

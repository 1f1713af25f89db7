"""Agent activity log and the log of webhooks carriers sent us."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from engine import json_text
from engine.errors import NotFound
from engine.store.database import Connection, Database, returned
from engine.store.guards import AgentJudge, agent_facts, lock
from engine.store.records import AgentActivity, NewActivity, NewWebhookLog, WebhookLogEntry

__all__ = ["ActivityRepository", "WebhookRepository"]

_LOG_COLS = (
    "id, provider_type, session_id, provider_call_id, event_type, processing_status, received_at"
)


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

    async def record_many(self, rows: Sequence[NewActivity]) -> None:
        """Write ``rows`` in one statement, in their order (their ids ascending)."""
        if not rows:
            return
        try:
            await self._db.execute(
                "INSERT INTO agent_activity_log (tenant_id, agent_id, activity, session_id, "
                "details, occurred_at) SELECT tenant_id, agent_id, activity, session_id, "
                "details::jsonb, coalesce(occurred_at, now()) FROM unnest($1::uuid[], "
                "$2::text[], $3::text[], $4::uuid[], $5::text[], $6::timestamptz[]) "
                "WITH ORDINALITY AS r(tenant_id, agent_id, activity, session_id, details, "
                "occurred_at, n) ORDER BY n",
                [r.tenant_id for r in rows],
                [r.agent_id for r in rows],
                [r.activity for r in rows],
                [r.session_id for r in rows],
                [json_text.dumps(dict(r.details)) for r in rows],
                [r.occurred_at for r in rows],
            )
        except asyncpg.ForeignKeyViolationError as exc:
            sessions = sorted({str(r.session_id) for r in rows})
            raise NotFound("session", ", ".join(sessions)) from exc

    async def reserve(
        self,
        tenant_id: uuid.UUID,
        agent_id: str,
        session_id: uuid.UUID,
        judge: AgentJudge,
        *,
        details: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Offer the call ``session_id`` to the agent if ``judge`` finds it free: under the
        agent's lock (:mod:`engine.store.guards`), its facts are read and, when free, its
        ``ringing`` row is logged, in one transaction. None when reserved, else the state
        that kept the agent (no row is written)."""
        async with self._db.transaction() as conn:
            await lock(conn, "agent", tenant_id, agent_id)
            busy = judge(*await agent_facts(conn, tenant_id, agent_id, datetime.now(UTC)))
            if busy is not None:
                return busy
            try:
                await conn.execute(
                    "INSERT INTO agent_activity_log (tenant_id, agent_id, activity, session_id, "
                    "details) VALUES ($1, $2, 'ringing', $3, $4)",
                    tenant_id,
                    agent_id,
                    session_id,
                    dict(details or {}),
                )
            except asyncpg.ForeignKeyViolationError as exc:
                raise NotFound("session", session_id) from exc
        return None

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

    async def log(
        self, entry: NewWebhookLog, *, conn: Connection | None = None
    ) -> WebhookLogEntry | None:
        """Log one carrier webhook as judged; None when its ``dedupe_key`` was logged
        before for the provider (a replay: the caller logs it again without the key).
        On ``conn``: inside the caller's transaction (the fact it applies with it)."""
        row = await (conn or self._db).fetchrow(
            "INSERT INTO click_to_call_webhook_log (tenant_id, provider_type, provider_id, "
            "session_id, provider_call_id, event_type, payload, headers, signature_valid, "
            "processing_status, error, dedupe_key) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            "ON CONFLICT (provider_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING "
            f"RETURNING {_LOG_COLS}",
            entry.tenant_id,
            entry.provider_type,
            entry.provider_id,
            entry.session_id,
            entry.provider_call_id,
            entry.event_type,
            dict(entry.payload),
            dict(entry.headers),
            entry.signature_valid,
            entry.processing_status,
            entry.error,
            entry.dedupe_key,
        )
        return None if row is None else WebhookLogEntry(**dict(row))

    async def seen(self, provider_id: uuid.UUID, dedupe_key: str) -> bool:
        """Whether a verified webhook with this key was logged for the provider."""
        found = await self._db.fetchval(
            "SELECT 1 FROM click_to_call_webhook_log WHERE provider_id = $1 AND dedupe_key = $2",
            provider_id,
            dedupe_key,
        )
        return found is not None

    async def settle(
        self, log_id: int, processing_status: str, *, error: str | None = None
    ) -> WebhookLogEntry:
        """Record what became of a logged webhook (processed, ignored and why, error)."""
        row = await self._db.fetchrow(
            "UPDATE click_to_call_webhook_log SET processing_status = $2, error = $3 "
            f"WHERE id = $1 RETURNING {_LOG_COLS}",
            log_id,
            processing_status,
            error,
        )
        return WebhookLogEntry(**dict(returned(row, "UPDATE click_to_call_webhook_log")))

    async def session_of_call(
        self, tenant_id: uuid.UUID, provider_id: uuid.UUID, provider_call_id: str
    ) -> uuid.UUID | None:
        """The tenant's session placed through ``provider_id`` whose carrier call id is
        ``provider_call_id``: both the tenant and the provider must match."""
        found = await self._db.fetchval(
            "SELECT id FROM click_to_call_session WHERE provider_id = $2 "
            "AND provider_call_id = $3 AND tenant_id = $1 ORDER BY created_at DESC LIMIT 1",
            tenant_id,
            provider_id,
            provider_call_id,
        )
        return found if isinstance(found, uuid.UUID) else None

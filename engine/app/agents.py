"""The agent activity use case: record what an agent reports (login, available, break...)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.store.records import AgentActivity, Tenant
from engine.store.repositories import Store

__all__ = ["ActivityReport", "AgentActivityService"]


@dataclasses.dataclass(frozen=True, slots=True)
class ActivityReport:
    agent_id: str
    activity: str  # login, logout, available, busy, break, wrap_up, on_call, offline
    session_id: uuid.UUID | None = None  # the call it is about, if any
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    occurred_at: datetime | None = None  # now when None


class AgentActivityService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(self, tenant: Tenant, report: ActivityReport) -> AgentActivity:
        """Append the report to the agent's activity log (NotFound for an unknown session)."""
        return await self._store.activity.record(
            tenant.id,
            report.agent_id,
            report.activity,
            session_id=report.session_id,
            details=report.details,
            occurred_at=report.occurred_at,
        )

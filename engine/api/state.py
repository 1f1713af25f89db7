"""What every request handler can reach: the use cases, health, metrics, and the caps on
open event streams (for ``GET /api/v1/events``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from engine.api.sse import StreamLimits
from engine.app.use_cases import UseCases
from engine.errors import StoreError
from engine.health import HealthReport
from engine.metrics import Metrics
from engine.store.database import Database

__all__ = ["API_STATE", "METRICS_NEED_TOKEN", "ApiState"]


@dataclasses.dataclass(slots=True)
class ApiState:
    use_cases: UseCases
    database: Database  # pinged by /readyz
    health: HealthReport
    metrics: Metrics
    openapi: dict[str, Any]
    # open event streams of both listeners (Unix socket and TCP), and their caps
    streams: StreamLimits = dataclasses.field(default_factory=StreamLimits)

    async def check_database(self) -> None:
        """Ping PostgreSQL and put the answer in the health report."""
        try:
            await self.database.ping()
        except StoreError as exc:
            self.health.set("database", "down", str(exc))
        else:
            self.health.set("database", "up")


API_STATE: web.AppKey[ApiState] = web.AppKey("api_state", ApiState)
# Whether /metrics answers 401 without a valid token (TCP with api.tcp.metrics_token_required).
METRICS_NEED_TOKEN: web.AppKey[bool] = web.AppKey("metrics_need_token", bool)

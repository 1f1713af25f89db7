"""What the route modules share: the path prefixes, the error responses' declaration, the
session id of a path and the session's answer shape."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from typing import Final, TypeVar

from pydantic import BaseModel

from engine.api.endpoints import ApiRequest
from engine.api.models import ErrorOut, SessionOut, StatsOut
from engine.api.state import API_STATE
from engine.app.use_cases import UseCases
from engine.store.records import StatsReport, StoredSession

__all__ = [
    "API",
    "C2C",
    "error_responses",
    "listing_out",
    "path_session_id",
    "session_out",
    "stats_out",
    "use_cases",
]

_L = TypeVar("_L", bound=BaseModel)

API: Final = "/api/v1"
C2C: Final = f"{API}/click-to-call"


def error_responses(*statuses: int) -> dict[int, type[ErrorOut]]:
    """``statuses`` declared as answering the one error body."""
    return dict.fromkeys(statuses, ErrorOut)


def listing_out(listing: type[_L], item: type[BaseModel], rows: Iterable[object]) -> _L:
    """The answer listing ``rows``: ``listing``'s ``items``, each row read into ``item``
    from its attributes."""
    return listing(items=[item.model_validate(row, from_attributes=True) for row in rows])


def use_cases(req: ApiRequest) -> UseCases:
    return req.raw.app[API_STATE].use_cases


def path_session_id(req: ApiRequest) -> uuid.UUID:
    return req.path_uuid("session_id", "session")


def session_out(session: StoredSession) -> SessionOut:
    return SessionOut.model_validate(session, from_attributes=True)


def stats_out(report: StatsReport, bucket: str) -> StatsOut:
    """The stats' answer: the period's totals at the top (as before the breakdowns came),
    then the breakdowns."""
    totals = report.totals
    return StatsOut.model_validate(
        {
            "total": totals.total,
            "live": totals.live,
            "by_status": report.by_status,
            "connected": totals.connected,
            "connect_rate": totals.connect_rate,
            "avg_ring_ms": totals.avg_ring_ms,
            "avg_talk_ms": totals.avg_talk_ms,
            "total_talk_ms": totals.total_talk_ms,
            "timezone": report.timezone,
            "bucket": bucket,
            "by_agent": [dataclasses.asdict(g) for g in report.by_agent],
            "by_provider": [dataclasses.asdict(g) for g in report.by_provider],
            "by_direction": [dataclasses.asdict(g) for g in report.by_direction],
            "buckets": [dataclasses.asdict(g) for g in report.buckets],
            "cost": [dataclasses.asdict(c) for c in report.cost],
            "avg_mos": report.avg_mos,
            "mos_legs": report.mos_legs,
        }
    )

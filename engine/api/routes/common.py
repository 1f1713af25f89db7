"""What the route modules share: the path prefixes, the error responses' declaration, the
session id of a path and the session's answer shape."""

from __future__ import annotations

import uuid
from typing import Final

from engine.api.endpoints import ApiRequest
from engine.api.models import ErrorOut, SessionOut
from engine.api.state import API_STATE
from engine.app.use_cases import UseCases
from engine.store.records import StoredSession

__all__ = ["API", "C2C", "error_responses", "path_session_id", "session_out", "use_cases"]

API: Final = "/api/v1"
C2C: Final = f"{API}/click-to-call"


def error_responses(*statuses: int) -> dict[int, type[ErrorOut]]:
    """``statuses`` declared as answering the one error body."""
    return dict.fromkeys(statuses, ErrorOut)


def use_cases(req: ApiRequest) -> UseCases:
    return req.raw.app[API_STATE].use_cases


def path_session_id(req: ApiRequest) -> uuid.UUID:
    return req.path_uuid("session_id", "session")


def session_out(session: StoredSession) -> SessionOut:
    return SessionOut.model_validate(session, from_attributes=True)

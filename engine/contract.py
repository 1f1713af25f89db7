"""The ERP contract: the two public wire formats of a call event, side by side.

An ERP learns what its calls do in two ways, and both carry the same facts:

* **Status callbacks** (:class:`StatusCallback`): for each status change of a session
  with a callback URL, the engine POSTs this JSON body, signed (:data:`SIGNATURE_HEADER`)
  and identified (:data:`EVENT_ID_HEADER`); :mod:`engine.notifier` says how it is signed,
  retried and ordered. The store builds the body (:func:`status_callback`) in the same
  transaction as the change and keeps it in the outbox, so what is sent is what was built.
* **The event stream** (:class:`StreamEventOut`): every event of the tenant's calls, as
  the ``data:`` of one Server-Sent Event on ``GET /api/v1/events`` (:func:`stream_event`).

Both are pydantic models, so the OpenAPI document describes them from the same source
(the stream under its endpoint, the callback under the document's ``webhooks``). The
module lives outside ``engine.api`` because the store builds the callback body, and only
the API, the CLI, the daemon and the dev tools may import ``engine.api``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from engine.domain.call import CallStatus
from engine.domain.event_types import CallEventType
from engine.store.records import CallEvent, StoredSession

__all__ = [
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "CallEventOut",
    "StatusCallback",
    "StreamEventOut",
    "status_callback",
    "stream_event",
]

# The headers of every status callback (see engine.notifier for the signature scheme).
SIGNATURE_HEADER: Final = "X-CTC-Signature"
EVENT_ID_HEADER: Final = "X-CTC-Event-Id"


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True)


class StatusCallback(_Wire):
    """The JSON body an ERP receives for one status change of a session."""

    event_id: int = Field(description="The call_event id; also sent as X-CTC-Event-Id")
    event_type: CallEventType
    session_id: uuid.UUID
    seq: int = Field(description="The event's position in its session (1, 2, ...)")
    status: CallStatus = Field(description="The session's status after the change")
    previous_status: CallStatus | None
    occurred_at: datetime
    external_ref: str | None
    agent_number: str | None
    customer_number: str | None
    hangup_cause: int | None = Field(description="Q.850 cause, once a leg has ended")
    ring_ms: int | None
    talk_ms: int | None
    recording_path: str | None

    @field_serializer("occurred_at", when_used="json")
    def _iso(self, value: datetime) -> str:
        # datetime.isoformat ("+00:00", not pydantic's "Z"): the bytes ERPs have received
        return value.isoformat()


def status_callback(session: StoredSession, event: CallEvent) -> StatusCallback:
    """The callback body for ``event``, which brought ``session`` to its current state."""
    return StatusCallback(
        event_id=event.id,
        event_type=event.event_type,
        session_id=session.id,
        seq=event.seq,
        status=session.status,
        previous_status=None if event.status_from is None else CallStatus(event.status_from),
        occurred_at=event.occurred_at,
        external_ref=session.external_ref,
        agent_number=session.agent_number,
        customer_number=session.customer_number,
        hangup_cause=session.hangup_cause,
        ring_ms=session.ring_ms,
        talk_ms=session.talk_ms,
        recording_path=session.recording_path,
    )


class CallEventOut(_Wire):
    """One event of a session, as a session's detail lists it."""

    id: int
    seq: int
    event_type: str = Field(description="A CallEventType (the callStatus webhook lists them)")
    status_from: str | None
    status_to: str | None
    payload: dict[str, Any]
    occurred_at: datetime


class StreamEventOut(CallEventOut):
    """The ``data:`` of one message on ``GET /api/v1/events`` (its SSE ``id`` is ``id``)."""

    session_id: uuid.UUID


def stream_event(event: CallEvent) -> StreamEventOut:
    """The event-stream body of ``event``."""
    return StreamEventOut.model_validate(event, from_attributes=True)

"""The records of a call as the store hands them out: plain frozen dataclasses.

Why a module of their own: the event bus, the journal, the ERP contract, the API and the
call flows all pass these records around, while only the store's repositories know SQL.
Kept apart, a module that needs a :class:`CallEvent` imports this one (which imports only
the domain), never a repository, so no import runs in a circle through the store.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import asyncpg

from engine.domain.call import CallSession, CallStatus, Direction

__all__ = [
    "EVENT_COLUMNS",
    "SESSION_COLUMNS",
    "CallEvent",
    "DtmfRow",
    "NewSession",
    "StoredSession",
    "writable_changes",
]

# Columns a caller may set alongside a transition or event (telephony handles, outcome).
_WRITABLE: Final = frozenset(
    {
        "agent_channel_id",
        "customer_channel_id",
        "bridge_id",
        "provider_call_id",
        "hangup_cause",
        "hangup_cause_text",
        "end_reason",
        "end_estimated",
        "recording_path",
        "recording_duration_ms",
        "caller_id",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredSession:
    id: uuid.UUID
    tenant_id: uuid.UUID
    provider_id: uuid.UUID | None
    direction: Direction
    status: CallStatus
    agent_number: str | None
    customer_number: str | None
    caller_id: str | None
    agent_id: str | None
    external_ref: str | None
    callback_url: str | None
    metadata: dict[str, Any]
    idempotency_key: str | None
    request_hash: str | None
    agent_channel_id: str | None
    customer_channel_id: str | None
    bridge_id: str | None
    provider_call_id: str | None
    hangup_cause: int | None
    hangup_cause_text: str | None
    end_reason: str | None
    recording_path: str | None
    recording_duration_ms: int | None
    ring_ms: int | None
    talk_ms: int | None
    created_at: datetime
    dialing_agent_at: datetime | None
    agent_answered_at: datetime | None
    dialing_customer_at: datetime | None
    connected_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime
    version: int
    caller_number: str | None = None
    dialed_number: str | None = None
    ivr_menu: str | None = None
    # ended_at/talk_ms/ring_ms taken when the engine noticed the end, not from Asterisk
    end_estimated: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record | Mapping[str, Any]) -> StoredSession:
        values = dict(row)
        values["status"] = CallStatus(values["status"])
        values["direction"] = Direction(values["direction"])
        return cls(**values)

    def machine(self) -> CallSession:
        return CallSession(
            status=self.status,
            created_at=self.created_at,
            direction=self.direction,
            dialing_agent_at=self.dialing_agent_at,
            agent_answered_at=self.agent_answered_at,
            dialing_customer_at=self.dialing_customer_at,
            connected_at=self.connected_at,
            ended_at=self.ended_at,
        )


# the columns of click_to_call_session, in StoredSession's field order
SESSION_COLUMNS: Final[tuple[str, ...]] = tuple(f.name for f in dataclasses.fields(StoredSession))


def writable_changes(changes: Mapping[str, Any] | None) -> dict[str, Any]:
    """``changes`` as a dict, checked to name only the columns a caller may set."""
    if not changes:
        return {}
    unknown = set(changes) - _WRITABLE
    if unknown:
        # a programming error, not user input: the column list is fixed here
        raise ValueError(f"not writable session columns: {sorted(unknown)}")
    return dict(changes)


@dataclasses.dataclass(frozen=True, slots=True)
class NewSession:
    tenant_id: uuid.UUID
    agent_number: str | None
    customer_number: str | None
    direction: Direction = Direction.CLICK_TO_CALL
    provider_id: uuid.UUID | None = None
    caller_id: str | None = None
    agent_id: str | None = None
    external_ref: str | None = None
    callback_url: str | None = None
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    idempotency_key: str | None = None
    request_hash: str | None = None
    caller_number: str | None = None
    dialed_number: str | None = None
    ivr_menu: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CallEvent:
    id: int
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    seq: int
    # a CallEventType when written by this engine; read back as the stored text, so a type
    # this version does not know (written by a newer engine) is still readable
    event_type: str
    status_from: str | None
    status_to: str | None
    payload: dict[str, Any]
    occurred_at: datetime
    # an outbox row was written with it (so the notifier has something to deliver)
    callback_queued: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CallEvent:
        return cls(**dict(row))


# the columns of call_event, in CallEvent's field order (callback_queued is not one)
EVENT_COLUMNS: Final[tuple[str, ...]] = tuple(
    f.name for f in dataclasses.fields(CallEvent) if f.name != "callback_queued"
)


@dataclasses.dataclass(frozen=True, slots=True)
class DtmfRow:
    """One ``call_dtmf_interaction`` row (see sql/0002_call_policy.sql)."""

    tenant_id: uuid.UUID
    session_id: uuid.UUID
    menu_id: uuid.UUID
    menu_version: int
    option_id: uuid.UUID | None
    digit: str | None
    input_value: str | None
    outcome: str
    attempt: int
    ms_since_prompt: int | None
    channel_id: str | None
    occurred_at: datetime

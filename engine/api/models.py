"""Request and response bodies of the control API.

These models are the contract: handlers validate with them, and ``/api/v1/openapi.json``
is generated from them, so the document cannot drift from what the routes accept.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)

from engine.contract import CallEventOut
from engine.domain.call import CallStatus, Direction
from engine.domain.providers import ProviderType

__all__ = [
    "AgentActivityIn",
    "AgentActivityOut",
    "AgentStateListOut",
    "AgentStateOut",
    "CallActivityOut",
    "CallActivityQuery",
    "CallsInMinuteOut",
    "DtmfIn",
    "EndCallIn",
    "ErrorBody",
    "ErrorOut",
    "EventsQuery",
    "HealthOut",
    "InitiateIn",
    "IvrMenuIn",
    "IvrMenuListOut",
    "IvrMenuOut",
    "IvrOptionIn",
    "LegIn",
    "MuteIn",
    "ProviderIn",
    "ProviderListOut",
    "ProviderOut",
    "RecordingControlIn",
    "RingTimeCountOut",
    "SessionDetailOut",
    "SessionListOut",
    "SessionListQuery",
    "SessionOut",
    "StatsOut",
    "StatsQuery",
    "StatusPatchIn",
    "TenantOut",
    "TransferIn",
    "TransferOut",
    "WebhookAcceptedOut",
]

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# An agent is a phone number or a PBX endpoint name (PJSIP/agent1, 1001).
AgentTarget = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=80, pattern=r"^[\w+@./:-]+$"),
]


def _utc_representable(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None
    if utc in (datetime.min, datetime.max):  # asyncpg stores these as -/+infinity
        raise ValueError("out of range")
    return value


# A time the database can take: stored as UTC, so year 1 at +14:00 is not one.
Instant = Annotated[datetime, AfterValidator(_utc_representable)]
Activity = Literal["login", "logout", "available", "busy", "break", "wrap_up", "on_call", "offline"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorBody(_Out):
    code: str = Field(description="Stable machine-readable error code")
    message: str
    details: Any = None


class ErrorOut(_Out):
    error: ErrorBody


class InitiateIn(_In):
    """Place a click-to-call: ring the agent first, then the customer, then bridge."""

    agent_number: AgentTarget = Field(
        description="Agent's phone (E.164) or PBX extension/endpoint", examples=["1001"]
    )
    customer_number: ShortText = Field(
        description="Customer's number; E.164, or national with default_region",
        examples=["+14155550100"],
    )
    default_region: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None, description="ISO country for numbers written without +country code"
    )
    caller_id: ShortText | None = Field(default=None, description="Caller ID shown (E.164)")
    provider_id: uuid.UUID | None = Field(
        default=None, description="Carrier to use; the tenant's default provider when omitted"
    )
    agent_id: ShortText | None = Field(default=None, description="The ERP's user id of the agent")
    external_ref: ShortText | None = Field(
        default=None, description="The ERP's own reference (lead, ticket, order)"
    )
    callback_url: AnyHttpUrl | None = Field(
        default=None, description="Status callbacks for this call (overrides the tenant's URL)"
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Stored and echoed back")


class SessionOut(_Out):
    id: uuid.UUID
    status: CallStatus
    direction: Direction
    agent_number: str | None
    customer_number: str | None
    caller_id: str | None
    provider_id: uuid.UUID | None
    agent_id: str | None
    external_ref: str | None
    metadata: dict[str, Any]
    hangup_cause: int | None
    hangup_cause_text: str | None
    end_reason: str | None
    caller_number: str | None = Field(default=None, description="Inbound: caller ID as received")
    dialed_number: str | None = Field(default=None, description="Inbound: the number dialled")
    ivr_menu: str | None = Field(default=None, description="Inbound: the menu entered")
    recording_path: str | None
    recording_duration_ms: int | None
    recording_deleted_at: datetime | None = Field(
        default=None,
        description="When the recording file was deleted; recording_path then names a file "
        "that no longer exists",
    )
    recording_deleted_reason: Literal["retention", "missing"] | None = Field(
        default=None,
        description="retention: deleted by the recording retention policy; missing: the file "
        "was already gone when retention came for it",
    )
    ring_ms: int | None
    talk_ms: int | None
    created_at: datetime
    dialing_agent_at: datetime | None
    agent_answered_at: datetime | None
    dialing_customer_at: datetime | None
    connected_at: datetime | None
    ended_at: datetime | None
    end_estimated: bool = Field(
        default=False,
        description="ended_at (and ring_ms, talk_ms) were taken when the engine noticed the "
        "call gone after a restart, not from Asterisk: an upper bound",
    )
    updated_at: datetime


class SessionDetailOut(SessionOut):
    events: list[CallEventOut]
    events_pruned: bool = Field(
        default=False,
        description="The oldest events were deleted by retention (retention.call_events_days):"
        " the timeline starts later, or is empty",
    )


class EventsQuery(_In):
    session_id: uuid.UUID | None = Field(default=None, description="Only this session's events")
    after: int | None = Field(
        default=None,
        ge=0,
        le=2**63 - 1,
        description="Replay events with a greater id first (the Last-Event-ID header wins)",
    )


class SessionListQuery(_In):
    status: list[CallStatus] = Field(default_factory=list, description="Repeat to OR statuses")
    direction: Direction | None = None
    agent_id: str | None = None
    customer_number: str | None = Field(default=None, description="E.164")
    external_ref: str | None = None
    created_after: Instant | None = None
    created_before: Instant | None = None
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, description="next_cursor of the previous page")


class SessionListOut(_Out):
    items: list[SessionOut]
    next_cursor: str | None


class StatusPatchIn(_In):
    status: CallStatus
    reason: ShortText | None = None
    hangup_cause: int | None = Field(default=None, ge=0, le=127)


class EndCallIn(_In):
    reason: ShortText | None = None


class TransferIn(_In):
    type: Literal["blind", "attended"] = Field(
        description="blind: the target replaces the leg as soon as it answers; attended: "
        "the customer is held while the agent talks to the target first, then completes or "
        "cancels"
    )
    target: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)
    ] = Field(description="An agent endpoint name or an E.164 number", examples=["agent2"])
    leg: Literal["agent", "customer"] = Field(
        default="agent",
        description="The leg being replaced (released once the target is connected): "
        "`agent` hands the customer over to the target; `customer` keeps the agent and "
        "connects it to the target instead of the customer. The other leg stays "
        "(`from_leg` of the transfer).",
    )


class TransferOut(_Out):
    id: uuid.UUID
    session_id: uuid.UUID
    transfer_type: Literal["blind", "attended"]
    from_leg: Literal["agent", "customer"] = Field(
        description="The leg that stays and is connected to the target"
    )
    target_type: str
    target: str | None
    target_channel_id: str | None
    consult_bridge_id: str | None
    state: Literal[
        "initiated", "consulting", "completed", "canceled", "failed", "busy", "no_answer"
    ]
    failure_cause: str | None
    hangup_cause: int | None
    requested_at: datetime
    answered_at: datetime | None
    completed_at: datetime | None


CallLeg = Literal["customer", "agent"]


class LegIn(_In):
    leg: CallLeg = Field(description="Which party: the customer or the agent")


class MuteIn(_In):
    leg: CallLeg
    direction: Literal["in", "out", "both"] = Field(
        default="both",
        description="in: the party is not heard; out: the party hears nothing; both",
    )


class DtmfIn(_In):
    leg: CallLeg
    digits: str = Field(
        pattern=r"^[0-9*#A-D]{1,32}$",
        description="DTMF digits to send to the party (0-9, *, #, A-D; at most 32)",
        examples=["123#"],
    )


class RecordingControlIn(_In):
    action: Literal["pause", "resume"]


class ProviderIn(_In):
    name: ShortText
    provider_type: ProviderType
    is_active: bool = True
    is_default: bool = False
    priority: int = Field(default=100, ge=0, le=10_000)
    max_concurrent_calls: int | None = Field(default=None, ge=1, le=2**31 - 1)
    calls_per_second: float | None = Field(
        default=None, ge=0.01, le=10_000, description="Stored to 2 decimal places"
    )
    config: dict[str, Any] = Field(default_factory=dict, description="Non-secret settings")
    credentials: dict[str, str] = Field(
        default_factory=dict, description="Secrets (API keys); stored, never returned"
    )
    webhook_secret: str | None = Field(default=None, min_length=8, description="Never returned")


class ProviderOut(_Out):
    id: uuid.UUID
    name: str
    provider_type: ProviderType
    is_active: bool
    is_default: bool
    priority: int
    max_concurrent_calls: int | None
    calls_per_second: float | None
    config: dict[str, Any]
    has_credentials: bool
    has_webhook_secret: bool
    created_at: datetime
    updated_at: datetime


class ProviderListOut(_Out):
    items: list[ProviderOut]


class ProviderTestOut(_Out):
    outcome: Literal["ok", "refused", "unsupported", "unreachable", "misconfigured"]
    detail: str


class AgentActivityIn(_In):
    agent_id: ShortText
    activity: Activity
    session_id: uuid.UUID | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    occurred_at: Instant | None = Field(default=None, description="Defaults to now")


class AgentActivityOut(_Out):
    id: int
    agent_id: str
    activity: Activity
    session_id: uuid.UUID | None
    details: dict[str, Any]
    occurred_at: datetime


class WebhookAcceptedOut(_Out):
    id: int
    provider_type: ProviderType
    session_id: uuid.UUID | None
    provider_call_id: str | None
    processing_status: str


class StatsQuery(_In):
    created_after: Instant | None = None
    created_before: Instant | None = None
    agent_id: str | None = None


class StatsOut(_Out):
    total: int
    live: int
    by_status: dict[str, int]
    connected: int
    connect_rate: float | None = Field(description="connected / finished calls")
    avg_ring_ms: int | None
    avg_talk_ms: int | None
    total_talk_ms: int


class CallActivityQuery(_In):
    minutes: int = Field(default=60, ge=1, le=1440, description="The last N minutes")


class CallsInMinuteOut(_Out):
    minute: datetime = Field(description="The minute's start (UTC)")
    placed: int = Field(description="Sessions created in that minute")
    answered: int = Field(description="...of which the customer answered")
    decided: int = Field(description="...answered, or ended without an answer")


class RingTimeCountOut(_Out):
    from_ms: int = Field(description="The bucket's lower bound; it ends at the next one's")
    count: int


class CallActivityOut(_Out):
    since: datetime
    until: datetime
    minutes: list[CallsInMinuteOut] = Field(description="Every minute, oldest first")
    placed: int
    answered: int
    decided: int = Field(description="Calls answered, or ended without an answer")
    answer_rate: float | None = Field(description="answered / decided calls")
    ring_times: list[RingTimeCountOut] = Field(description="How long calls rang")


class AgentStateOut(_Out):
    agent: str = Field(description="The ERP's agent_id, else the number or endpoint dialled")
    state: str = Field(description="ringing or on_call (a live call), a reported activity, or idle")
    since: datetime
    source: Literal["calls", "activity"] = Field(
        description="calls: the engine's sessions; activity: POST agent-activity"
    )
    calls: int = Field(description="Sessions in the last 24 hours (or still live)")
    last_session_id: uuid.UUID | None
    last_status: CallStatus | None
    last_customer: str | None


class AgentStateListOut(_Out):
    items: list[AgentStateOut]


class TenantOut(_Out):
    slug: str
    name: str


class HealthOut(_Out):
    status: Literal["ok", "degraded", "down"]
    components: dict[str, dict[str, Any]]


# -- IVR menus --------------------------------------------------------------------------------
# The shape of one entry under ``menus:`` in a menus YAML file (engine/ivr_yaml.py). The
# loader there validates a PUT body (so API and `ctc ivr import` accept exactly the same
# menus); these models document that shape and carry it back out.

IvrActionName = Literal[
    "submenu",
    "back",
    "repeat",
    "transfer",
    "record_message",
    "http_lookup",
    "set_variable",
    "hangup",
]


class _Sparse(_In):
    """Serialised without unset (None) fields, like the YAML export."""

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class IvrOptionIn(_Sparse):
    """What one key (or the fallback) does; only the fields of its action are accepted."""

    action: IvrActionName
    prompt: str | None = Field(default=None, description="Played before the action")
    menu: str | None = Field(default=None, description="submenu: the menu to go to")
    next: str | None = Field(
        default=None, description="Menu after set_variable, record_message, http_lookup"
    )
    target_type: Literal["agent", "endpoint", "number", "routing_rule"] | None = None
    target: str | None = Field(
        default=None, description="transfer: agent, endpoint, E.164 number or routing rule name"
    )
    failure_prompt: str | None = None
    max_duration_s: int | None = None
    beep: bool | None = None
    silence_s: int | None = None
    url: str | None = None
    method: Literal["GET", "POST"] | None = None
    params: dict[str, str] | None = None
    timeout_ms: int | None = None
    result_variable: str | None = None
    say: Literal["digits", "number"] | None = None
    routes: dict[str, str] | None = Field(default=None, description="Lookup value -> menu")
    name: str | None = Field(default=None, description="set_variable: the variable")
    value: str | None = None


class IvrMenuIn(_Sparse):
    """One IVR menu. Option keys are 0-9, *, # or timeout, invalid, collected."""

    description: str | None = None
    greeting: str | None = None
    invalid_prompt: str | None = None
    timeout_prompt: str | None = None
    timeout_ms: int | None = Field(default=None, description="100-600000 (default 5000)")
    inter_digit_timeout_ms: int | None = Field(default=None, description="100-60000")
    max_retries: int | None = Field(default=None, description="0-20 (default 3)")
    input_mode: Literal["single_digit", "fixed_length", "until_terminator"] | None = None
    input_length: int | None = None
    terminator: Literal["#", "*"] | None = None
    variable: str | None = None
    options: dict[str, IvrOptionIn] | None = None
    fallback: IvrOptionIn | None = None


class IvrMenuOut(_Out):
    name: str
    version: int = Field(description="Bumped on every change")
    menu: IvrMenuIn = Field(description="The menu, in the shape PUT accepts")


class IvrMenuListOut(_Out):
    items: list[IvrMenuOut]

"""Request and response bodies of the control API.

These models are the contract: handlers validate with them, and ``/api/v1/openapi.json``
is generated from them, so the document cannot drift from what the routes accept.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

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
    "ERROR_CODES",
    "AgentActivityIn",
    "AgentActivityOut",
    "AgentStateListOut",
    "AgentStateOut",
    "BillingExportQuery",
    "BillingLineListOut",
    "BillingLineOut",
    "CallActivityOut",
    "CallActivityQuery",
    "CallbackListOut",
    "CallbackListQuery",
    "CallbackOut",
    "CallbackReplayIn",
    "CallsInMinuteOut",
    "CostTotalOut",
    "DtmfIn",
    "EndCallIn",
    "ErrorBody",
    "ErrorOut",
    "EventsQuery",
    "HealthOut",
    "InitiateIn",
    "IssuedTokenOut",
    "IvrMenuIn",
    "IvrMenuListOut",
    "IvrMenuOut",
    "IvrOptionIn",
    "LegIn",
    "MuteIn",
    "ProviderIn",
    "ProviderListOut",
    "ProviderOut",
    "ProviderPatchIn",
    "ProviderRemovedOut",
    "QualityListOut",
    "QualityMetricOut",
    "RateCardEndQuery",
    "RateCardListOut",
    "RateCardOut",
    "RateCardPatchIn",
    "RateCardsQuery",
    "RatesImportedOut",
    "RecordingControlIn",
    "RerateIn",
    "RerateOut",
    "RingTimeCountOut",
    "RoutingExplainIn",
    "RoutingExplainOut",
    "RoutingRuleIn",
    "RoutingRuleListOut",
    "RoutingRuleOut",
    "RoutingSettingsIO",
    "SecretRotationIn",
    "SecretRotationOut",
    "SessionDetailOut",
    "SessionListOut",
    "SessionListQuery",
    "SessionOut",
    "StatsGroupOut",
    "StatsOut",
    "StatsQuery",
    "StatusPatchIn",
    "TenantOut",
    "TenantUpdateIn",
    "TokenIn",
    "TokenListOut",
    "TokenOut",
    "TranscriptOut",
    "TranscriptWordOut",
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


# every `error.code` the API answers with, by status (ErrorBody's description lists them)
ERROR_CODES: Final[dict[str, str]] = {
    "invalid_json": "400: the body is not JSON (or nested deeper than 32 levels)",
    "invalid_encoding": "400: the body is not UTF-8",
    "unauthorized": "401: no valid bearer token (TCP), or a revoked one",
    "not_found": "404: no such route, or an id of nothing the tenant has",
    "call_rejected": "403: the pre-dial check refused the call (a compliance rule or a number "
    "list); details name the field, rule, rule_type, reason and the rejected session_id",
    "method_not_allowed": "405: the route exists for other methods (see Allow)",
    "conflict": "409: the state does not allow it (e.g. a transfer in flight, an "
    "Idempotency-Key reused with another body)",
    "agent_busy": "409: the agent the call names by agent_id is ringing, on a call or in "
    "wrap-up; details give its state; nothing was stored or dialled",
    "illegal_transition": "409: the call state machine refuses the status change",
    "not_supported": "409: the session's carrier does not offer the operation (an Exotel or "
    "mCube transfer, ...)",
    "body_too_large": "413: the body exceeds api.max_body_bytes",
    "unsupported_media_type": "415: the body is not application/json",
    "validation_error": "422: a field is wrong; details name each field",
    "too_many_streams": "429: too many event streams open (see Retry-After)",
    "carrier_error": "502: the carrier refused or failed the request (its answer in the message)",
    "unavailable": "503: PostgreSQL is unreachable, Asterisk (ARI) is not connected for a "
    "call or in-call control, or a secret cannot be stored or read (no key configured); "
    "retry later",
    "node_unavailable": "503: the engine that owns the call (another node sharing the "
    "database) did not carry out the control or transfer within node.forward_timeout; it "
    "was not carried out; retry later",
    "internal_error": "500: a bug; the engine's log has it",
}


class ErrorBody(_Out):
    code: str = Field(
        description="Stable machine-readable error code: "
        + "; ".join(f"`{code}` ({text})" for code, text in ERROR_CODES.items())
    )
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
    agent_id: ShortText | None = Field(
        default=None,
        description="The ERP's user id of the agent: names the agent in its states and "
        "routing rules (without it, agent_number does). The agent is reserved (ringing) when "
        "the call is stored; one ringing, on a call or in wrap-up is refused (409 agent_busy)",
    )
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
    node: str | None = Field(
        default=None,
        description="The engine (node name) that owns the call when several share one "
        "database: the one that dials it and carries out its controls. null: queued and "
        "not claimed yet (node.claim_queue), or written by a tool",
    )


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
    weight: int = Field(
        default=1, ge=0, le=1000, description="Share of calls among equal priorities"
    )
    max_concurrent_calls: int | None = Field(default=None, ge=1, le=2**31 - 1)
    calls_per_second: float | None = Field(
        default=None, ge=0.01, le=10_000, description="Stored to 2 decimal places"
    )
    config: dict[str, Any] = Field(default_factory=dict, description="Non-secret settings")
    credentials: dict[str, str] = Field(
        default_factory=dict,
        description="Secrets (API keys): each value `env:NAME`, `file:/path` or the secret "
        "itself (stored sealed); never returned",
    )
    webhook_secret: str | None = Field(default=None, min_length=8, description="Never returned")


class ProviderPatchIn(_In):
    """Only the fields given change; ``config`` and ``credentials`` replace the stored ones."""

    priority: int | None = Field(default=None, ge=0, le=10_000)
    weight: int | None = Field(default=None, ge=0, le=1000)
    is_default: bool | None = None
    is_active: bool | None = None
    max_concurrent_calls: int | None = Field(default=None, ge=1, le=2**31 - 1)
    config: dict[str, Any] | None = None
    credentials: dict[str, str] | None = Field(
        default=None, description="`env:NAME`, `file:/path` or the secret; never returned"
    )
    webhook_secret: str | None = Field(default=None, min_length=8, description="Never returned")


class ProviderRemovedOut(_Out):
    id: uuid.UUID
    outcome: Literal["deleted", "disabled"] = Field(
        description="deleted; or disabled (inactive, not the default) because calls or "
        "other rows name it"
    )


class ProviderOut(_Out):
    id: uuid.UUID
    name: str
    provider_type: ProviderType
    is_active: bool
    is_default: bool
    priority: int
    weight: int
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
    timezone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA zone of the buckets (default: the tenant's, UTC unless set)",
    )
    bucket: Literal["hour", "day"] = Field(default="day", description="Width of `buckets`")


class StatsGroupOut(_Out):
    key: str | None = Field(
        description="The agent (agent_id, else its number), provider id, direction or "
        "bucket start (ISO 8601 in the stats' zone); null: sessions without one"
    )
    total: int
    live: int
    connected: int
    connect_rate: float | None = Field(description="ASR: connected / finished calls")
    avg_ring_ms: int | None
    avg_talk_ms: int | None = Field(description="ACD: average talk time of connected calls")
    total_talk_ms: int


class CostTotalOut(_Out):
    currency: str = Field(description="ISO 4217; XXX: legs no rate card matched (amount 0)")
    legs: int
    billable_seconds: int
    amount_minor: int = Field(description="In the currency's minor units (cents, paise)")


class StatsOut(_Out):
    total: int
    live: int
    by_status: dict[str, int]
    connected: int
    connect_rate: float | None = Field(description="ASR: connected / finished calls")
    avg_ring_ms: int | None
    avg_talk_ms: int | None = Field(description="ACD: average talk time of connected calls")
    total_talk_ms: int
    timezone: str = Field(description="The zone of `buckets`")
    bucket: Literal["hour", "day"]
    by_agent: list[StatsGroupOut] = Field(description="Busiest first")
    by_provider: list[StatsGroupOut] = Field(description="Busiest first")
    by_direction: list[StatsGroupOut]
    buckets: list[StatsGroupOut] = Field(description="Hours or days that had calls, in order")
    cost: list[CostTotalOut] = Field(description="Billing lines of the period's calls")
    avg_mos: float | None = Field(
        description="Average MOS of the legs' end-of-call quality summaries (1-5)"
    )
    mos_legs: int = Field(description="How many legs `avg_mos` averages")


class RateCardOut(_Out):
    id: uuid.UUID
    name: str
    destination_prefix: str
    direction: Literal["inbound", "outbound"]
    provider_id: uuid.UUID | None
    rate_per_minute_minor: int = Field(description="In 10^-rate_scale minor units")
    rate_scale: int
    pulse: str = Field(description="MIN/INCREMENT seconds, e.g. 30/6")
    connection_fee_minor: int
    minimum_charge_minor: int
    currency: str
    priority: int
    effective_from: datetime | None
    effective_to: datetime | None


class RateCardListOut(_Out):
    items: list[RateCardOut]


class RateCardsQuery(_In):
    at: Instant | None = Field(default=None, description="Only the cards effective then")


class RateCardPatchIn(_In):
    """The columns to change (the others stay); `as_of` makes it a change from then on."""

    rate_per_minute_minor: float | None = Field(
        default=None, ge=0, description="Per minute in minor units, up to 6 decimals"
    )
    currency: str | None = Field(default=None, description="ISO 4217, e.g. USD")
    pulse: str | None = Field(default=None, description="MIN/INCREMENT seconds, e.g. 30/6")
    connection_fee_minor: int | None = Field(default=None, ge=0)
    minimum_charge_minor: int | None = Field(default=None, ge=0)
    priority: int | None = Field(default=None, ge=0, le=1_000_000)
    name: str | None = Field(default=None, max_length=200)
    effective_from: Instant | None = None
    effective_to: Instant | None = None
    as_of: Instant | None = Field(
        default=None,
        description="The change starts then: the card ends at `as_of` and a new card with "
        "the changes starts at it (the answer); without it the card is corrected in place",
    )


class RateCardEndQuery(_In):
    at: Instant | None = Field(
        default=None, description="When the card stops rating legs (default: now)"
    )


class RatesImportedOut(_Out):
    imported: int


class BillingLineOut(_Out):
    session_id: uuid.UUID
    leg: str
    destination_number: str | None
    matched_prefix: str | None
    rate_config_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    duration_s: int
    billable_seconds: int
    rate_per_minute_minor: int
    rate_scale: int
    connection_fee_minor: int
    minimum_charge_minor: int
    amount_minor: int
    currency: str
    billed_at: datetime = Field(description="When the leg ended")
    unrated_reason: str | None
    end_estimated: bool = Field(
        description="The call's end was noticed after a restart, not seen: the talk time "
        "and amount are an upper bound"
    )
    invoice_ref: str | None


class BillingLineListOut(_Out):
    items: list[BillingLineOut]


class BillingExportQuery(_In):
    month: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM (UTC)")


class RerateIn(_In):
    from_: Instant = Field(alias="from", description="Legs that ended at or after this")
    to: Instant = Field(description="...and before this")


class RerateOut(_Out):
    sessions: int
    inserted: int
    changed: int
    unchanged: int
    invoiced: int = Field(description="Lines already invoiced: never rewritten")


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
    state: Literal["available", "ringing", "on_call", "wrap_up", "break", "offline"] = Field(
        description="Only an available agent is offered a call by a routing rule"
    )
    since: datetime
    in_state_s: float = Field(description="Seconds in this state")
    source: Literal["calls", "activity"] = Field(
        description="calls: the engine's calls decided it; activity: POST agent-activity"
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
    callback_url: str | None = Field(
        default=None, description="Where the tenant's status callbacks go (null: none)"
    )


class TenantUpdateIn(_In):
    """Change the tenant's callback URL (the networks it may reach are the admin's:
    `ctc tenant update --allow-cidr`)."""

    callback_url: AnyHttpUrl | None = Field(
        description="Where status callbacks go; null: none (a call's own callback_url still "
        "applies)"
    )


class SecretRotationIn(_In):
    grace_seconds: float = Field(
        default=86400,
        ge=0,
        le=30 * 86400,
        description="Seconds the current secret keeps signing beside the new one (0: at once)",
    )


class SecretRotationOut(_Out):
    callback_secret: str = Field(description="The new HMAC key; shown once, in this answer")
    previous_valid_until: datetime | None = Field(
        description="Until when callbacks also carry a signature made with the previous "
        "secret (null: they no longer do)"
    )


class TokenIn(_In):
    name: str = Field(default="", max_length=200, description="A label for the token")


class TokenOut(_Out):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The token's first characters, to tell tokens apart")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenListOut(_Out):
    items: list[TokenOut]


class IssuedTokenOut(_Out):
    id: uuid.UUID
    token: str = Field(description="The bearer token; shown once, only its hash is kept")


CallbackState = Literal["pending", "delivered", "dead"]


class CallbackListQuery(_In):
    state: list[CallbackState] = Field(
        default_factory=list, description="Repeat to OR states; `dead`: retries exhausted"
    )
    session_id: uuid.UUID | None = None
    limit: int = Field(default=50, ge=1, le=1000)


class CallbackOut(_Out):
    id: int = Field(description="The outbox row's id (what replay takes)")
    session_id: uuid.UUID
    event_id: int = Field(description="The X-CTC-Event-Id the callback is sent with")
    event_type: str | None
    state: CallbackState
    url: str
    attempts: int
    last_status: int | None = Field(description="HTTP status of the last attempt, if any")
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None


class CallbackListOut(_Out):
    items: list[CallbackOut]


class CallbackReplayIn(_In):
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        default_factory=list, max_length=1000, description="Callbacks (dead or delivered)"
    )
    all_failed: bool = Field(default=False, description="Every dead callback of the tenant")


class HealthOut(_Out):
    status: Literal["ok", "degraded", "down"]
    # this engine's node name (settings node.name); like components' details, shown only
    # to a trusted caller (a token, or the local socket)
    node: str | None = None
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


class TranscriptWordOut(_Out):
    word: str
    start_ms: int = Field(description="From the recording's start")
    end_ms: int
    confidence: float | None = Field(default=None, description="0-1, as the backend scores it")


class TranscriptOut(_Out):
    """A recorded call's transcript: made offline on the engine's host after the call."""

    session_id: uuid.UUID
    state: Literal["queued", "running", "completed", "failed"]
    attempts: int
    last_error: str | None = None
    backend: str | None = Field(default=None, description="pocketsphinx or whisper")
    model: str | None = None
    language: str | None = None
    text: str | None = Field(default=None, description="Set once completed")
    words: list[TranscriptWordOut] | None = None
    audio_ms: int | None = None
    decode_ms: int | None = Field(
        default=None,
        description="How long the decoder took (decode_ms / audio_ms: real-time factor)",
    )
    created_at: datetime
    finished_at: datetime | None = None


class QualityMetricOut(_Out):
    """One leg's RTCP figures: a sample during the call, or its final figures at hangup."""

    leg: Literal["agent", "customer", "caller", "target"]
    channel_id: str
    sampled_at: datetime
    is_final: bool
    rx_packets: int | None
    tx_packets: int | None
    rx_lost_packets: int | None = Field(description="Lost on the way to Asterisk")
    tx_lost_packets: int | None = Field(description="Lost on the way to the phone (its RTCP)")
    jitter_ms: float | None
    rtt_ms: float | None = Field(description="Round trip, known only from the phone's RTCP")
    mos: float | None = Field(description="E-model (ITU-T G.107) estimate, 1-5")


class QualityListOut(_Out):
    items: list[QualityMetricOut]


# -- routing rules ------------------------------------------------------------------------------
# The shape of one entry under ``rules:`` in a routing YAML file (engine/routing_yaml.py). The
# loader there validates a PUT body (so API and `ctc routing import` accept exactly the same
# rules); these models document that shape and carry it back out.

StrOrList = str | int | list[str | int]


class RoutingMatchIn(_Sparse):
    """Every key set must hold; a list holds when any of its values does."""

    caller_prefix: StrOrList | None = Field(default=None, description="E.164 prefix, '+49'")
    callee_prefix: StrOrList | None = None
    caller_country: StrOrList | None = Field(default=None, description="ISO 3166 alpha-2")
    callee_country: StrOrList | None = None
    dialed_number: StrOrList | None = Field(default=None, description="The DID or extension")
    ivr_choice: StrOrList | None = Field(default=None, description="The caller's IVR input")
    skill: StrOrList | None = None


class RoutingWindowIn(_In):
    days: list[int] = Field(description="ISO weekdays, 1 = Monday")
    start: str = Field(description="HH:MM local time")
    end: str = Field(description="HH:MM; before start: runs past midnight")


class RoutingScheduleIn(_Sparse):
    time_zone: str | None = Field(default=None, description="IANA zone; default the tenant's")
    windows: list[RoutingWindowIn] | None = None
    holidays: list[str] | None = Field(default=None, description="YYYY-MM-DD: does not apply")


class RoutingRuleIn(_Sparse):
    """One routing rule, as an entry of a routing YAML file."""

    description: str | None = None
    priority: int | None = Field(default=None, description="Lower first; default 100")
    active: bool | None = None
    direction: Literal["inbound", "outbound", "click_to_call", "any"] | None = None
    match: RoutingMatchIn | None = None
    schedule: RoutingScheduleIn | None = None
    strategy: Literal[
        "ring_agent",
        "ring_group_round_robin",
        "ring_group_simultaneous",
        "least_recent",
        "ivr_menu",
        "provider",
    ]
    target: str | None = Field(default=None, description="ring_agent: the agent")
    members: list[str] | None = Field(default=None, description="groups: agents, in order")
    ivr_menu: str | None = Field(default=None, description="ivr_menu: the menu's name")
    provider: str | None = Field(default=None, description="provider: the provider's name")
    ring_timeout_s: int | None = None
    fallback: str | None = Field(default=None, description="The rule tried when this one fails")


class RoutingRuleOut(_Out):
    name: str
    id: uuid.UUID
    rule: RoutingRuleIn


class RoutingRuleListOut(_Out):
    items: list[RoutingRuleOut]


class RoutingSettingsIO(_In):
    time_zone: str = Field(default="UTC", description="IANA zone schedules are read in")
    wrap_up_s: int = Field(default=0, description="An agent's wrap-up after a call (0..3600)")


class RoutingExplainIn(_In):
    number: ShortText | None = Field(default=None, description="The number called (E.164)")
    caller: ShortText | None = None
    dialed: ShortText | None = Field(default=None, description="The DID or extension dialled")
    ivr_choice: ShortText | None = None
    skills: list[ShortText] = Field(default_factory=list)
    direction: Literal["inbound", "outbound", "click_to_call"] = "inbound"
    at: datetime | None = Field(
        default=None, description="Default now; without an offset, the tenant's local time"
    )


class RoutingVerdictOut(_Out):
    rule: str
    priority: int
    applies: bool
    why: str


class RoutingAttemptOut(_Out):
    rule: str | None
    targets: list[str]
    reason: str | None


class RoutingExplainOut(_Out):
    rule: str | None = Field(description="The rule the call follows (null: none applies)")
    reason: str
    at: datetime
    time_zone: str
    considered: list[RoutingVerdictOut]
    plan: str | None = Field(description="What the rule rings now, in words")
    attempts: list[RoutingAttemptOut]
    skipped: dict[str, str] = Field(description="Agents left out, with their state")
    menu: str | None

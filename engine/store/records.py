"""The records of a call as the store hands them out: plain frozen dataclasses.

Why a module of their own: the event bus, the journal, the ERP contract, the API, the use
cases and the call flows all pass these records around (sessions, events, tenants,
providers, transfers, menus, ...), while only the store's repositories know SQL.
Kept apart, a module that needs a :class:`CallEvent` imports this one (which imports only
the domain), never a repository, so no import runs in a circle through the store.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import asyncpg

from engine.domain.call import CallSession, CallStatus, Direction
from engine.domain.ivr import IvrMenu, TransferTargetType
from engine.domain.netpolicy import Network, OutboundPolicy
from engine.domain.providers import ProviderType
from engine.domain.transfer import TransferState, TransferType

__all__ = [
    "EVENT_COLUMNS",
    "SESSION_COLUMNS",
    "AgentActivity",
    "AgentLastCall",
    "ApiTokenInfo",
    "CallEvent",
    "CallsInMinute",
    "CostTotal",
    "DtmfRow",
    "IssuedToken",
    "NewActivity",
    "NewProvider",
    "NewSession",
    "NewTransfer",
    "NewWebhookLog",
    "NodeBeat",
    "ProviderChanges",
    "ProviderSecrets",
    "QualityMetric",
    "RecordingPolicy",
    "RingTimeCount",
    "SecretRotation",
    "SessionFilter",
    "SessionPage",
    "StatsGroup",
    "StatsPeriod",
    "StatsReport",
    "StoredCallback",
    "StoredIvrMenu",
    "StoredNode",
    "StoredProvider",
    "StoredSession",
    "StoredTranscript",
    "StoredTransfer",
    "Tenant",
    "TranscriptJob",
    "WebhookLogEntry",
    "writable_changes",
]

# Columns a caller may set alongside a transition or event (telephony handles, outcome).
_WRITABLE: Final = frozenset(
    {
        "agent_channel_id",
        "customer_channel_id",
        "bridge_id",
        "provider_id",  # the carrier that took the call after a failover
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
    # the recording file is gone (recording_path says what it was): when, and why
    # ("retention": deleted by the recording retention; "missing": gone before it came)
    recording_deleted_at: datetime | None = None
    recording_deleted_reason: str | None = None
    # the engine (node name) that owns the call; None: unclaimed (queued for any node to
    # claim), or written by a tool. Changed only by claims and failover, never by the
    # journal's batches (see engine/store/claims.py)
    node: str | None = None

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
    # a leg that exists as the session is made: the channel of an agent who dialled out
    agent_channel_id: str | None = None
    # stored with no owner (node NULL) for any engine's claim queue to take; False: owned
    # by the engine that creates it (the connection's ctc.node)
    unclaimed: bool = False


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
    # committed by another engine, published here by the event feed (engine/store/event_feed)
    remote: bool = False
    # the session's direction and agent (agent_id, else agent_number) as the engine that
    # changed it held it; direction None: not known here (e.g. read back from PostgreSQL),
    # so a subscriber that needs them reads the session. Not the event's own facts: an
    # event read back equals the one published
    direction: Direction | None = dataclasses.field(default=None, compare=False)
    agent: str | None = dataclasses.field(default=None, compare=False)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CallEvent:
        return cls(**dict(row))


# the columns of call_event, in CallEvent's field order (what the publisher knew is not)
_NOT_COLUMNS: Final = frozenset({"callback_queued", "remote", "direction", "agent"})
EVENT_COLUMNS: Final[tuple[str, ...]] = tuple(
    f.name for f in dataclasses.fields(CallEvent) if f.name not in _NOT_COLUMNS
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


@dataclasses.dataclass(frozen=True, slots=True)
class Tenant:
    id: uuid.UUID
    slug: str
    name: str
    callback_url: str | None
    is_active: bool
    # where this tenant's callbacks and lookups may go; built once, when the row is read,
    # since every call start, inbound call and callback consults it
    policy: OutboundPolicy = dataclasses.field(default_factory=OutboundPolicy)

    @property
    def outbound_allow_cidrs(self) -> tuple[Network, ...]:
        """The networks the tenant allows beyond global addresses (sorted)."""
        return self.policy.allow


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedToken:
    id: uuid.UUID
    tenant: Tenant
    token: str  # shown once, never stored


@dataclasses.dataclass(frozen=True, slots=True)
class StoredProvider:
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    provider_type: str
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
    weight: int = 1  # the share among providers of equal priority (failover.order_candidates)


@dataclasses.dataclass(frozen=True, slots=True)
class NewProvider:
    tenant_id: uuid.UUID
    name: str
    provider_type: ProviderType
    is_active: bool = True
    is_default: bool = False
    priority: int = 100
    max_concurrent_calls: int | None = None
    calls_per_second: float | None = None
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    credentials: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    webhook_secret: str | None = None
    weight: int = 1


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderChanges:
    """What a PATCH of a provider changes: only the fields that are not None (``config`` and
    ``credentials`` replace the stored objects whole)."""

    priority: int | None = None
    weight: int | None = None
    is_default: bool | None = None
    is_active: bool | None = None
    max_concurrent_calls: int | None = None
    config: Mapping[str, Any] | None = None
    credentials: Mapping[str, Any] | None = None
    webhook_secret: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderSecrets:
    """A provider's decrypted secrets (never returned by the API)."""

    credentials: dict[str, Any]
    webhook_secret: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class NewTransfer:
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    transfer_type: TransferType
    # the leg that stays: a click-to-call's agent|customer (a ``Leg`` value), an inbound
    # call's caller (the SQL domain ``call_leg``)
    from_leg: str
    target_type: TransferTargetType
    target: str | None  # None only for a routing rule that rang nobody
    target_channel_id: str | None
    consult_bridge_id: str | None = None
    initiated_by: str = "api"
    option_id: uuid.UUID | None = None  # the IVR option that asked (initiated_by 'ivr')
    routing_rule_id: uuid.UUID | None = None  # target_type 'routing_rule': the rule offering
    # chosen by the caller when the channel ids derive from it; else the database's
    id: uuid.UUID | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredTransfer:
    id: uuid.UUID
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    transfer_type: TransferType
    initiated_by: str
    from_leg: str  # as NewTransfer.from_leg
    target_type: TransferTargetType
    target: str | None
    target_channel_id: str | None
    consult_bridge_id: str | None
    state: TransferState
    failure_cause: str | None
    hangup_cause: int | None
    requested_at: datetime
    answered_at: datetime | None
    completed_at: datetime | None
    option_id: uuid.UUID | None = None
    routing_rule_id: uuid.UUID | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record | Mapping[str, Any]) -> StoredTransfer:
        """A ``call_transfer`` row (its columns named as the fields), enums parsed."""
        fields = dict(row)
        return cls(
            **{
                **fields,
                "transfer_type": TransferType(fields["transfer_type"]),
                "target_type": TransferTargetType(fields["target_type"]),
                "state": TransferState(fields["state"]),
            }
        )


@dataclasses.dataclass(frozen=True, slots=True)
class StoredIvrMenu:
    id: uuid.UUID
    version: int
    menu: IvrMenu


@dataclasses.dataclass(frozen=True, slots=True)
class NewActivity:
    """An ``agent_activity_log`` row to write (``occurred_at`` None: the database's now)."""

    tenant_id: uuid.UUID
    agent_id: str
    activity: str
    session_id: uuid.UUID | None
    details: Mapping[str, Any]
    occurred_at: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AgentActivity:
    id: int
    tenant_id: uuid.UUID
    agent_id: str
    activity: str
    session_id: uuid.UUID | None
    details: dict[str, Any]
    occurred_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookLogEntry:
    id: int
    provider_type: str
    session_id: uuid.UUID | None
    provider_call_id: str | None
    event_type: str | None
    processing_status: str
    received_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class NewWebhookLog:
    """A carrier webhook to log, as judged: ``signature_valid`` False for one refused
    (``processing_status`` 'rejected'); ``dedupe_key`` only on verified ones."""

    tenant_id: uuid.UUID
    provider_type: str
    provider_id: uuid.UUID | None
    payload: Mapping[str, Any]
    headers: Mapping[str, str]
    signature_valid: bool
    processing_status: str
    session_id: uuid.UUID | None = None
    provider_call_id: str | None = None
    event_type: str | None = None
    error: str | None = None
    dedupe_key: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingPolicy:
    is_enabled: bool
    record: str
    format: str
    storage_path: str
    beep: bool
    max_duration_s: int | None
    pause_allowed: bool


@dataclasses.dataclass(frozen=True, slots=True)
class QualityMetric:
    """One ``call_quality_metric`` row: a leg's RTCP figures sampled during the call, or
    its end-of-call summary (``is_final``), with the E-model MOS. None: not known."""

    tenant_id: uuid.UUID
    session_id: uuid.UUID
    channel_id: str
    leg: str
    sampled_at: datetime
    is_final: bool
    rx_packets: int | None
    tx_packets: int | None
    rx_lost_packets: int | None
    tx_lost_packets: int | None
    jitter_ms: float | None
    rtt_ms: float | None
    mos: float | None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class TranscriptJob:
    """A claimed ``call_transcript`` row: which recording to transcribe, and how many
    times it has been tried (this attempt included)."""

    id: int
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    recording_path: str
    attempts: int


@dataclasses.dataclass(frozen=True, slots=True)
class StoredTranscript:
    """A call's transcript row as the API shows it: its state in the queue and, once
    ``completed``, the text and words (``start_ms``/``end_ms`` from the recording's start)."""

    session_id: uuid.UUID
    state: str
    attempts: int
    last_error: str | None
    backend: str | None
    model: str | None
    language: str | None
    text: str | None
    words: Sequence[Mapping[str, Any]] | None
    audio_ms: int | None
    decode_ms: int | None
    created_at: datetime
    finished_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class SessionFilter:
    statuses: Sequence[CallStatus] = ()
    direction: Direction | None = None
    agent_id: str | None = None
    customer_number: str | None = None
    external_ref: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SessionPage:
    items: list[StoredSession]
    next_cursor: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class CallsInMinute:
    """The sessions created in one minute, and how many of them reached the customer."""

    minute: datetime  # the minute's start (UTC)
    placed: int
    answered: int  # connected_at is set: the customer answered
    decided: int  # answered, or ended without an answer


@dataclasses.dataclass(frozen=True, slots=True)
class RingTimeCount:
    """How many sessions rang for at least ``from_ms`` (and less than the next bucket's)."""

    from_ms: int
    count: int


@dataclasses.dataclass(frozen=True, slots=True)
class AgentLastCall:
    """An agent's newest session (the agent is its ``agent_id``, else its ``agent_number``)
    and how many sessions the agent had in the period asked for."""

    agent: str
    session: StoredSession
    calls: int


@dataclasses.dataclass(frozen=True, slots=True)
class NodeBeat:
    """What an engine writes of itself in ``engine_node`` at each heartbeat."""

    name: str
    version: str
    host: str
    pid: int
    started_at: datetime
    max_calls: int | None
    asterisk: str  # its ARI link's health state, or "disabled" / "unknown"


@dataclasses.dataclass(frozen=True, slots=True)
class StoredNode:
    """An engine as ``engine_node`` has it, with what the database counts for it."""

    name: str
    version: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    max_calls: int | None
    asterisk: str
    heartbeat_age: float  # seconds since its last beat, by the database's clock
    live_calls: int  # its sessions that have not ended


@dataclasses.dataclass(frozen=True, slots=True)
class ApiTokenInfo:
    """What is kept of an API token (never the token: only its first characters)."""

    id: uuid.UUID
    name: str
    prefix: str  # "ctc_" and the token's next 6 characters, to tell tokens apart
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class SecretRotation:
    """A tenant's new callback secret (shown once) and until when the previous one still
    signs callbacks (None: it was dropped at once)."""

    tenant: Tenant
    callback_secret: str
    previous_valid_until: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredCallback:
    """One ``callback_outbox`` row as ``ctc callbacks list`` shows it."""

    id: int
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    event_id: int
    event_type: str
    state: str  # pending, delivered or dead
    url: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None


# -- the manager's statistics (engine/store/stats.py) ------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StatsPeriod:
    """Which sessions: created in ``[created_after, created_before)`` (open ends when None),
    optionally of one agent (``agent_id``); hour or day buckets in ``timezone``."""

    created_after: datetime | None = None
    created_before: datetime | None = None
    agent_id: str | None = None
    timezone: str = "UTC"
    bucket: str = "day"  # 'hour' or 'day'


@dataclasses.dataclass(frozen=True, slots=True)
class StatsGroup:
    """The figures of one group of sessions (an agent, a provider, a bucket, ...).

    ``connect_rate`` is the answer-seizure ratio (ASR): of the finished sessions, those
    that connected (calls still in progress count neither way; ``connected`` counts them).
    ``avg_talk_ms`` is the average call duration (ACD) of connected calls; ``avg_ring_ms``
    of those that rang."""

    key: str | None
    total: int
    live: int
    connected: int
    connect_rate: float | None
    avg_ring_ms: int | None
    avg_talk_ms: int | None
    total_talk_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class CostTotal:
    """What the period's sessions cost in one currency (``XXX``: legs no card rated)."""

    currency: str
    legs: int
    billable_seconds: int
    amount_minor: int


@dataclasses.dataclass(frozen=True, slots=True)
class StatsReport:
    timezone: str  # of the buckets
    totals: StatsGroup
    by_status: dict[str, int]
    by_agent: list[StatsGroup]  # key: agent_id, else the agent's number or endpoint
    by_provider: list[StatsGroup]  # key: provider id (None: no provider)
    by_direction: list[StatsGroup]
    buckets: list[StatsGroup]  # key: the bucket's start, ISO 8601 in the period's zone
    cost: list[CostTotal]
    avg_mos: float | None  # over the legs' end-of-call quality summaries
    mos_legs: int

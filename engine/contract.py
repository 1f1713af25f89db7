"""The ERP contract: the two public wire formats of a call event, side by side.

An ERP learns what its calls do in two ways, and both carry the same facts:

* **Status callbacks** (:class:`StatusCallback`): for each status change of a session
  with a callback URL, its creation (``queued``) included, the engine POSTs this JSON body,
  signed (:data:`SIGNATURE_HEADER`) and identified (:data:`EVENT_ID_HEADER`);
  :mod:`engine.notifier` says how it is signed, retried and ordered. The store builds the
  body (:func:`status_callback`) in the same transaction as the change and keeps it in the
  outbox, so what is sent is what was built.
* **The event stream** (:class:`StreamEventOut`): every event of the tenant's calls, as
  the ``data:`` of one Server-Sent Event on ``GET /api/v1/events`` (:func:`stream_event`).

Both are pydantic models, so the OpenAPI document describes them from the same source
(the stream under its endpoint, the callback under the document's ``webhooks``). What each
event type means (:data:`EVENT_DESCRIPTIONS`) and which ones a callback carries
(:data:`CALLBACK_EVENT_TYPES`) live here too: docs/integrator/callbacks.md renders its
tables from them (:func:`callback_fields_markdown`, :func:`event_reference_markdown`) and a
test fails when a new event type or field is not described. The
module lives outside ``engine.api`` because the store builds the callback body, and only
the API, the CLI, the daemon and the dev tools may import ``engine.api``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from engine.domain.call import CallStatus, Direction
from engine.domain.event_types import CallEventType
from engine.store.records import CallEvent, StoredSession

__all__ = [
    "CALLBACK_EVENT_TYPES",
    "EVENT_DESCRIPTIONS",
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "CallEventOut",
    "StatusCallback",
    "StreamEventOut",
    "callback_fields_markdown",
    "event_reference_markdown",
    "status_callback",
    "stream_event",
]

# The headers of every status callback (see engine.notifier for the signature scheme).
SIGNATURE_HEADER: Final = "X-CTC-Signature"
EVENT_ID_HEADER: Final = "X-CTC-Event-Id"


# What each event type means, for the integrator's reference (docs/integrator/callbacks.md
# holds the table event_reference_markdown renders; a unit test fails when they differ, or
# when a CallEventType has no entry here).
EVENT_DESCRIPTIONS: Final[Mapping[CallEventType, str]] = {
    CallEventType.SESSION_CREATED: "The session was stored (status `queued`): accepted by "
    "`initiate`, or an inbound caller reached the IVR. payload: `direction`",
    CallEventType.STATUS_CHANGED: "A status set through `PATCH .../status`. payload: "
    "`source`, `reason`",
    CallEventType.SESSION_ENDED: "Ended through `POST .../end` (or a status set to a terminal "
    "one by the API). payload: `source`, `reason`",
    CallEventType.SESSION_START_EXPIRED: "A `queued` call whose start was lost in an engine "
    "crash and that was older than `calls.queued_start_deadline` when the next engine "
    "started: `failed`, never dialled. payload: `reason`",
    CallEventType.SESSION_RESYNC: "After the link to Asterisk came back, the session was "
    "corrected to what Asterisk had (ended, or a leg found answered). payload: `reason`, "
    "`channel_id` or `channels_present`",
    CallEventType.CALL_FAILED: "The engine could not carry the call on (Asterisk refused a "
    "step). payload: `reason`",
    CallEventType.SESSION_CLAIMED: "Several engines share the database (`node.claim_queue`): "
    "the engine that will dial this queued call claimed it; the session's `node` says it "
    "from now on. payload: `node`, `queued_ms` (how long it waited unclaimed)",
    CallEventType.SESSION_OWNER_LOST: "The engine that owned this live call stopped "
    "heartbeating for longer than `node.failover_after`; another engine ended the call "
    "(`failed`, end_reason `node_lost`): its Asterisk may have carried it on, unmanaged. "
    "payload: `node`, `heartbeat_at`, `ended_by`, `reason`",
    CallEventType.AGENT_DIALING: "The agent's phone is ringing (`dialing_agent`)",
    CallEventType.AGENT_ANSWERED: "The agent answered (`agent_answered`); the customer is "
    "dialled next",
    CallEventType.AGENT_UNANSWERED: "The agent's leg ended before answering: `busy`, "
    "`no_answer` or `failed` by its cause. payload: `hangup_cause`, `hangup_cause_text`",
    CallEventType.AGENT_HANGUP: "The agent hung up: before the customer answered (`canceled`) "
    "or during the conversation (`completed`). payload: `hangup_cause`, `hangup_cause_text`",
    CallEventType.CUSTOMER_DIALING: "The customer's phone is ringing (`dialing_customer`)",
    CallEventType.CUSTOMER_ANSWERED: "The customer answered; agent and customer are bridged "
    "(`connected`)",
    CallEventType.CUSTOMER_UNANSWERED: "The customer's leg ended before answering: `busy`, "
    "`no_answer` or `failed` by its cause. payload: `hangup_cause`, `hangup_cause_text`",
    CallEventType.CUSTOMER_HANGUP: "The customer hung up a connected call (`completed`). "
    "payload: `hangup_cause`, `hangup_cause_text`",
    CallEventType.RECORDING_STARTED: "The call's recording started. payload: `name`, `format`, "
    "`path`",
    CallEventType.RECORDING_PAUSED: "The recording was paused through the API",
    CallEventType.RECORDING_RESUMED: "The recording was resumed through the API",
    CallEventType.RECORDING_FINISHED: "The recording ended; `recording_path` is set. "
    "payload: `duration_ms`, `estimated` (duration taken from the bridged time) or `failure`",
    CallEventType.CONTROL_HOLD: "A party was put on hold. payload: `leg`",
    CallEventType.CONTROL_UNHOLD: "A party was taken off hold. payload: `leg`",
    CallEventType.CONTROL_MUTE: "A party was muted. payload: `leg`, `direction`",
    CallEventType.CONTROL_UNMUTE: "A party was unmuted. payload: `leg`, `direction`",
    CallEventType.CONTROL_DTMF: "Digits were sent to a party. payload: `leg`, `digits`",
    CallEventType.TRANSFER_REQUESTED: "A transfer was asked for. payload: `type`, `target`, "
    "`endpoint`, `leg`",
    CallEventType.TRANSFER_CUSTOMER_HELD: "Attended transfer: the customer hears music while "
    "the agent consults",
    CallEventType.TRANSFER_CUSTOMER_UNHELD: "Attended transfer: the customer is heard again",
    CallEventType.TRANSFER_TARGET_DIALING: "The transfer target is ringing. payload: `endpoint`",
    CallEventType.TRANSFER_TARGET_BRIDGED: "The target answered and joined the call",
    CallEventType.TRANSFER_CONSULT_BRIDGED: "Attended transfer: agent and target talk "
    "privately. payload: `bridge`",
    CallEventType.TRANSFER_CONSULTING: "Attended transfer: the consultation is under way",
    CallEventType.TRANSFER_AGENT_RETURNED: "Attended transfer canceled: the agent is back "
    "with the customer",
    CallEventType.TRANSFER_TARGET_RELEASED: "The target's leg was hung up (transfer "
    "canceled or failed)",
    CallEventType.TRANSFER_AGENT_RELEASED: "The transfer completed and hung the agent up",
    CallEventType.TRANSFER_CUSTOMER_RELEASED: "The transfer completed and hung the customer up",
    CallEventType.TRANSFER_AGENT_REPLACED: "The target now stands in the agent's place",
    CallEventType.TRANSFER_CUSTOMER_REPLACED: "The target now stands in the customer's place",
    CallEventType.TRANSFER_COMPLETED: "The transfer completed",
    CallEventType.TRANSFER_CANCELED: "The transfer was canceled (API or the agent)",
    CallEventType.TRANSFER_FAILED: "The transfer failed. payload: `reason`",
    CallEventType.TRANSFER_BUSY: "The transfer target was busy",
    CallEventType.TRANSFER_NO_ANSWER: "The transfer target did not answer",
    CallEventType.TRANSFER_RESYNC: "A transfer in flight was settled after the link to "
    "Asterisk came back",
    CallEventType.IVR_ANSWERED: "The IVR answered the inbound caller (`connected`). payload: "
    "`menu`, `channel_id`",
    CallEventType.IVR_DTMF: "A key decision in a menu. payload: `menu`, `digit`, `option`, "
    "`value` (collected input), `outcome`, `ms_since_prompt`",
    CallEventType.IVR_LOOKUP: "An ERP lookup was sent. payload: `method`, `url`, `params`",
    CallEventType.IVR_LOOKUP_RESULT: "The lookup's answer or failure. payload: `ok`, `value`, "
    "`error`, `ms`",
    CallEventType.IVR_TRANSFER_STARTED: "The menu transfers the caller to an option's target",
    CallEventType.IVR_TRANSFER_DIALING: "A transfer target is ringing. payload: `target`",
    CallEventType.IVR_TRANSFERRED: "The target answered and was bridged with the caller",
    CallEventType.IVR_TRANSFER_FINISHED: "The menu's transfer ended. payload: `transfer_id`, "
    "`state`, `hangup_cause`, `reason`",
    CallEventType.IVR_RECORDING_MESSAGE: "The caller's message was recorded. payload: `name`",
    CallEventType.IVR_ENDED: "The IVR call ended: `completed` once answered, else `canceled` "
    "or `failed`. payload: `reason`",
    CallEventType.SESSION_REJECTED: "The pre-dial check refused the call (status `rejected`): "
    "it was never dialled. payload: `rule`, `rule_type`, `reason`, `rule_id`",
    CallEventType.COMPLIANCE_WARNING: "A compliance rule in `warn` mode objected; the call "
    "went on. payload: `rule`, `rule_type`, `reason`, `rule_id`",
    CallEventType.CALLER_ID_CHOSEN: "The caller ID presented to the customer, from a caller-ID "
    "profile. payload: `caller_id`, `profile`, `profile_id`, `reason`",
    CallEventType.RECORDING_CONSENT_PLAYED: "The consent announcement was played to both "
    "parties; the recording starts next. payload: `media`",
    CallEventType.RECORDING_REFUSED: "The call was not recorded: a `consent_required` rule "
    "applies and the request's metadata carries no consent. payload: the rule and reason",
    CallEventType.PROVIDER_STATUS: "A carrier's status callback that changed no status (a "
    "repeat, a late or intermediate state). payload: `provider`, `provider_id`, "
    "`provider_status` (the carrier's own word), `provider_call_id`, `leg`, `sequence`, "
    "`confirmed`, `reason`",
    CallEventType.PROVIDER_ATTEMPT: "One attempt to place the call, or its customer leg, "
    "through a provider, in order: the first provider, then each one failed over to. Through "
    "a carrier (Twilio, Exotel, Vonage, mCube) the attempt creates the whole call: payload "
    "`provider`, `provider_id`, `provider_type`, `outcome` (`created`, `not_sent`, `refused`, "
    "`auth_failed`, `rate_limited`, `uncertain`), `decision` (`stop`, `next`, `reconcile`), "
    "`reason`, `provider_status` (the carrier's own word, when it answered), "
    "`provider_call_id` (when a call exists), `reconciled` (the calls found and hung up after "
    "an uncertain attempt). Through a `sip_trunk` (one trunk of the local Asterisk) it "
    "carries the customer leg and is written when the attempt is over: `outcome` "
    "`trunk_unavailable` (SIP 408/480/503/504, no answer at all) or `not_sent` moves the call "
    "to the next trunk, any other is the call's own; payload `provider`, `provider_id`, "
    "`provider_type`, `attempt` (1, 2, …), `endpoint`, `outcome`, `reason`, `sip_code`, "
    "`hangup_cause`, `next_provider` (null: no failover). An engine that restarts mid-placement "
    "through a carrier records either the carrier's live call it found (`reason` says "
    "adopted) or one without a provider (`not_sent`, `next`, the `reason` why it places the "
    "call again)",
    CallEventType.ROUTING_DECIDED: "An IVR transfer to a routing rule: the rule (named by "
    "the menu, or chosen by its conditions), the rules followed, the agents skipped (not "
    "available) and why, in words. payload: `rule`, `routing_rule_id`, `rules`, `skipped`, "
    "`reason`, `selected_by` (`menu` or `conditions`)",
    CallEventType.IVR_TRANSFER_REJECTED: "An IVR transfer's number (a `number` target or a "
    "routing rule's E.164 member) was refused by the pre-dial check, or is not a number: it "
    "is never dialled, the caller hears the failure prompt. payload: `target`, `rule`, "
    "`rule_type`, `reason`",
    CallEventType.QUALITY_LOW_MOS: "A leg's MOS fell below `quality.mos_floor` (once per "
    "call). payload: `leg`, `channel_id`, `mos`, `mos_floor`, `final`, `jitter_ms`, "
    "`rtt_ms`, `rx_packets`, `rx_lost_packets`",
    CallEventType.TRANSCRIPT_COMPLETED: "The call's recording was transcribed (text: `GET "
    ".../sessions/{id}/transcript`). payload: `backend`, `words`, `audio_ms`, `decode_ms`",
    CallEventType.TRANSCRIPT_FAILED: "Transcribing the recording gave up after its last "
    "attempt. payload: `error`, `attempts`",
}

# The event types that can change a session's status. Callbacks are sent for status
# changes only (the write paths send one exactly when an event moves the status), so these
# are the types a callback body can carry; the others are on the event stream and in the
# session's timeline.
CALLBACK_EVENT_TYPES: Final[frozenset[CallEventType]] = frozenset(
    {
        CallEventType.SESSION_CREATED,
        CallEventType.STATUS_CHANGED,
        CallEventType.SESSION_ENDED,
        CallEventType.SESSION_REJECTED,
        CallEventType.SESSION_START_EXPIRED,
        CallEventType.SESSION_RESYNC,
        CallEventType.CALL_FAILED,
        CallEventType.SESSION_OWNER_LOST,
        CallEventType.AGENT_DIALING,
        CallEventType.AGENT_ANSWERED,
        CallEventType.AGENT_UNANSWERED,
        CallEventType.AGENT_HANGUP,
        CallEventType.CUSTOMER_DIALING,
        CallEventType.CUSTOMER_ANSWERED,
        CallEventType.CUSTOMER_UNANSWERED,
        CallEventType.CUSTOMER_HANGUP,
        CallEventType.IVR_ANSWERED,
        CallEventType.IVR_ENDED,
    }
)


def event_reference_markdown() -> str:
    """The event table of docs/integrator/callbacks.md, from :class:`CallEventType`."""
    lines = ["| `event_type` | Callback | What happened |", "|---|---|---|"]
    for member in CallEventType:
        callback = "yes" if member in CALLBACK_EVENT_TYPES else "no"
        description = EVENT_DESCRIPTIONS.get(member, "(undocumented)")
        lines.append(f"| `{member.value}` | {callback} | {description} |")
    return "\n".join(lines) + "\n"


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True)


class StatusCallback(_Wire):
    """The JSON body an ERP receives for one status change of a session (the creation,
    status ``queued``, included).

    Every field is always present; a field that does not apply is ``null`` (the field's
    description says when). The session's own facts are as they stand after the change,
    so an ERP can match and update its record from this body alone."""

    event_id: int = Field(description="The call_event id; also sent as X-CTC-Event-Id")
    event_type: CallEventType = Field(
        description="What happened (see the event reference); only types that change the "
        "status send a callback"
    )
    session_id: uuid.UUID = Field(
        description="The session (the `id` initiate answered; GET .../sessions/{id})"
    )
    seq: int = Field(
        description="The event's position in its session's whole timeline (1, 2, ...). "
        "Callbacks carry only status changes, so consecutive callbacks may skip numbers; "
        "they arrive in increasing seq order"
    )
    status: CallStatus = Field(description="The session's status after the change")
    previous_status: CallStatus | None = Field(
        description="The status before the change; null for the creation (status queued)"
    )
    occurred_at: datetime = Field(description="When the change happened (ISO 8601, UTC)")
    direction: Direction = Field(
        description="click_to_call (placed through the API), inbound (an IVR caller) or outbound"
    )
    external_ref: str | None = Field(
        description="The initiate request's external_ref; null when none was given "
        "(always null for inbound calls)"
    )
    agent_id: str | None = Field(
        description="The initiate request's agent_id (the ERP's user id); null when none"
    )
    metadata: dict[str, Any] = Field(
        description="The initiate request's metadata, as given ({} when none); inbound "
        "calls: the IVR door (`door`) and Asterisk channel (`channel_id`)"
    )
    agent_number: str | None = Field(
        description="The agent's endpoint or E.164 number; null for inbound calls"
    )
    customer_number: str | None = Field(
        description="The customer's E.164 number; inbound calls: the caller's number in "
        "E.164 when it is one, else null"
    )
    caller_id: str | None = Field(
        description="The caller ID presented to the customer; null when the PBX's default"
    )
    caller_number: str | None = Field(
        description="Inbound calls: the caller's number as Asterisk gave it; else null"
    )
    dialed_number: str | None = Field(
        description="Inbound calls: the number the caller dialled (the extension that "
        "reached the engine); else null"
    )
    hangup_cause: int | None = Field(
        description="Q.850 cause, once a leg has ended (16 normal, 17 busy, 19 no answer); "
        "else null"
    )
    end_reason: str | None = Field(
        description="Why the call ended, in words (terminal statuses); null while it runs "
        "or when Asterisk gave only a cause"
    )
    end_estimated: bool = Field(
        description="true when the end time (so ring_ms/talk_ms) is when the engine "
        "noticed the end, not Asterisk's (an upper bound)"
    )
    ring_ms: int | None = Field(
        description="Ringing time before the customer answered; null until known"
    )
    talk_ms: int | None = Field(
        description="Bridged time; null until the call has ended after connecting"
    )
    recording_path: str | None = Field(
        description="The recording file on the engine's host; null when not recorded"
    )

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
        direction=session.direction,
        external_ref=session.external_ref,
        agent_id=session.agent_id,
        metadata=dict(session.metadata),
        agent_number=session.agent_number,
        customer_number=session.customer_number,
        caller_id=session.caller_id,
        caller_number=session.caller_number,
        dialed_number=session.dialed_number,
        hangup_cause=session.hangup_cause,
        end_reason=session.end_reason,
        end_estimated=session.end_estimated,
        ring_ms=session.ring_ms,
        talk_ms=session.talk_ms,
        recording_path=session.recording_path,
    )


def callback_fields_markdown() -> str:
    """The field table of docs/integrator/callbacks.md, from :class:`StatusCallback`."""
    schema = StatusCallback.model_json_schema()
    lines = ["| Field | Type | Meaning |", "|---|---|---|"]
    for name, field in StatusCallback.model_fields.items():
        lines.append(
            f"| `{name}` | {_json_type(schema['properties'][name])} | {field.description or ''} |"
        )
    lines.append("")
    for enum in (CallStatus, Direction):
        values = ", ".join(f"`{member.value}`" for member in enum)
        lines.extend((f"`{enum.__name__}`: {values}.", ""))
    lines.append("`CallEventType`: the event types in the table below.")
    return "\n".join(lines) + "\n"


def _json_type(prop: Mapping[str, Any]) -> str:
    """A property's JSON type as the docs write it: ``string (uuid)``, ``integer or null``."""
    if "anyOf" in prop:
        return " or ".join(_json_type(p) for p in prop["anyOf"])
    if "$ref" in prop:  # an enum: its values are listed below the table
        return f"`{str(prop['$ref']).rpartition('/')[2]}`"
    kind = str(prop.get("type", "any"))
    if "format" in prop:
        kind += f" ({prop['format']})"
    return kind


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
    """The ``data:`` of one message on ``GET /api/v1/events`` (its SSE ``id`` is the
    stream's cursor: ``id`` as a plain number once it settled, else with the ids sent
    above the settled one; see engine/domain/stream_cursor.py)."""

    session_id: uuid.UUID


def stream_event(event: CallEvent) -> StreamEventOut:
    """The event-stream body of ``event``."""
    return StreamEventOut.model_validate(event, from_attributes=True)

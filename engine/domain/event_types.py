"""The types of a call's events: the ``event_type`` of every ``call_event`` row.

They are a public contract: the ERP reads them in status callbacks (``event_type``), on
the event stream (the SSE ``event:`` line and ``data.event_type``) and in a session's
detail. The domain decides most of them (the click-to-call and transfer steps name the
event they record), the adapters name the facts they observe (DTMF, recording, resync), and
every producer takes its name from here, so the list below is every type the engine writes.
A member is a ``str``: it compares equal to its value and is stored as it.

Where a producer picks the type by a leg or a transfer outcome, it asks one of the mappings
below (:func:`leg_hangup`, :func:`leg_released`, :func:`leg_replaced`,
:func:`transfer_outcome`) instead of building the name from a string. They are keyed by the
value of :class:`~engine.domain.click_to_call.Leg` and
:class:`~engine.domain.transfer.TransferState` (both ``StrEnum``, so a member is its own
key): those modules import this one, so importing them here would make a cycle.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from engine.errors import DomainError

__all__ = [
    "CallEventType",
    "leg_hangup",
    "leg_released",
    "leg_replaced",
    "transfer_outcome",
]


class CallEventType(enum.StrEnum):
    # the session itself
    SESSION_CREATED = "session.created"
    STATUS_CHANGED = "status.changed"  # a status set through the API (PATCH .../status)
    SESSION_ENDED = "session.ended"  # ended through the API
    SESSION_START_EXPIRED = "session.start_expired"
    # compliance refused the call before anything was dialled: rule, rule_type, reason
    SESSION_REJECTED = "session.rejected"
    COMPLIANCE_WARNING = "compliance.warning"  # a 'warn' rule objected; the call went on
    CALLER_ID_CHOSEN = "caller_id.chosen"  # the profile, number and reason presented
    SESSION_RESYNC = "session.resync"  # state corrected after the ARI link (re)connected
    CALL_FAILED = "call.failed"
    # several engines on one database: the engine that claimed a queued call (node),
    # and a dead engine's live call ended by another (node, heartbeat_at, ended_by)
    SESSION_CLAIMED = "session.claimed"
    SESSION_OWNER_LOST = "session.owner_lost"

    # click-to-call legs
    AGENT_DIALING = "agent.dialing"
    AGENT_ANSWERED = "agent.answered"
    AGENT_UNANSWERED = "agent.unanswered"
    AGENT_HANGUP = "agent.hangup"
    CUSTOMER_DIALING = "customer.dialing"
    CUSTOMER_ANSWERED = "customer.answered"
    CUSTOMER_UNANSWERED = "customer.unanswered"
    CUSTOMER_HANGUP = "customer.hangup"

    # a carrier's verified webhook that changed no status (stale, replayed elsewhere, raw)
    PROVIDER_STATUS = "provider.status"
    # one attempt to place a call, or its customer leg, through one provider: how it ended
    PROVIDER_ATTEMPT = "provider.attempt"

    # recording
    RECORDING_STARTED = "recording.started"
    RECORDING_PAUSED = "recording.paused"
    RECORDING_RESUMED = "recording.resumed"
    RECORDING_FINISHED = "recording.finished"
    # a consent rule applies: the announcement played to both parties before recording
    RECORDING_CONSENT_PLAYED = "recording.consent_played"
    # a consent rule applies and the session's metadata lacks the consent: not recorded
    RECORDING_REFUSED = "recording.refused"

    # call quality and transcripts
    QUALITY_LOW_MOS = "quality.low_mos"  # a leg's MOS fell below quality.mos_floor
    TRANSCRIPT_COMPLETED = "transcript.completed"  # the call's recording was transcribed
    TRANSCRIPT_FAILED = "transcript.failed"  # ... and gave up after its last attempt

    # in-call controls
    CONTROL_HOLD = "control.hold"
    CONTROL_UNHOLD = "control.unhold"
    CONTROL_MUTE = "control.mute"
    CONTROL_UNMUTE = "control.unmute"
    CONTROL_DTMF = "control.dtmf"

    # transfers: requested, its steps, its outcome (one per terminal transfer state)
    TRANSFER_REQUESTED = "transfer.requested"
    TRANSFER_CUSTOMER_HELD = "transfer.customer_held"
    TRANSFER_CUSTOMER_UNHELD = "transfer.customer_unheld"
    TRANSFER_TARGET_DIALING = "transfer.target_dialing"
    TRANSFER_TARGET_BRIDGED = "transfer.target_bridged"
    TRANSFER_CONSULT_BRIDGED = "transfer.consult_bridged"
    TRANSFER_CONSULTING = "transfer.consulting"
    TRANSFER_AGENT_RETURNED = "transfer.agent_returned"
    TRANSFER_TARGET_RELEASED = "transfer.target_released"
    TRANSFER_AGENT_RELEASED = "transfer.agent_released"
    TRANSFER_CUSTOMER_RELEASED = "transfer.customer_released"
    TRANSFER_AGENT_REPLACED = "transfer.agent_replaced"
    TRANSFER_CUSTOMER_REPLACED = "transfer.customer_replaced"
    TRANSFER_COMPLETED = "transfer.completed"
    TRANSFER_CANCELED = "transfer.canceled"
    TRANSFER_FAILED = "transfer.failed"
    TRANSFER_BUSY = "transfer.busy"
    TRANSFER_NO_ANSWER = "transfer.no_answer"
    TRANSFER_RESYNC = "transfer.resync"

    # inbound IVR
    IVR_ANSWERED = "ivr.answered"
    IVR_DTMF = "ivr.dtmf"
    IVR_LOOKUP = "ivr.lookup"
    IVR_LOOKUP_RESULT = "ivr.lookup_result"
    IVR_TRANSFER_STARTED = "ivr.transfer_started"
    IVR_TRANSFER_DIALING = "ivr.transfer_dialing"
    IVR_TRANSFERRED = "ivr.transferred"
    IVR_TRANSFER_FINISHED = "ivr.transfer_finished"
    IVR_TRANSFER_REJECTED = "ivr.transfer_rejected"  # the pre-dial check refused its number
    IVR_RECORDING_MESSAGE = "ivr.recording_message"
    IVR_ENDED = "ivr.ended"

    # routing: the rule a call follows and why, in words (``reason``)
    ROUTING_DECIDED = "routing.decided"


# keyed by ``Leg`` value: the leg that hung up on a connected call
_LEG_HANGUP: Mapping[str, CallEventType] = {
    "agent": CallEventType.AGENT_HANGUP,
    "customer": CallEventType.CUSTOMER_HANGUP,
}
# keyed by ``Leg`` value: the leg a completed transfer hung up
_LEG_RELEASED: Mapping[str, CallEventType] = {
    "agent": CallEventType.TRANSFER_AGENT_RELEASED,
    "customer": CallEventType.TRANSFER_CUSTOMER_RELEASED,
}
# keyed by ``Leg`` value: the leg whose channel a completed transfer's target took over
_LEG_REPLACED: Mapping[str, CallEventType] = {
    "agent": CallEventType.TRANSFER_AGENT_REPLACED,
    "customer": CallEventType.TRANSFER_CUSTOMER_REPLACED,
}
# keyed by terminal ``TransferState`` value: the event that records the outcome
_TRANSFER_OUTCOME: Mapping[str, CallEventType] = {
    "completed": CallEventType.TRANSFER_COMPLETED,
    "canceled": CallEventType.TRANSFER_CANCELED,
    "failed": CallEventType.TRANSFER_FAILED,
    "busy": CallEventType.TRANSFER_BUSY,
    "no_answer": CallEventType.TRANSFER_NO_ANSWER,
}


def _lookup(mapping: Mapping[str, CallEventType], key: str, what: str) -> CallEventType:
    try:
        return mapping[key]
    except KeyError:
        raise DomainError(f"no {what} event type for {str(key)!r}") from None


def leg_hangup(leg: str) -> CallEventType:
    """The event of ``leg`` (a ``Leg``) hanging up a connected call."""
    return _lookup(_LEG_HANGUP, leg, "hangup")


def leg_released(leg: str) -> CallEventType:
    """The event of a transfer hanging up ``leg`` (a ``Leg``) as it completes."""
    return _lookup(_LEG_RELEASED, leg, "released-leg")


def leg_replaced(leg: str) -> CallEventType:
    """The event of a transfer's target taking over ``leg`` (a ``Leg``)."""
    return _lookup(_LEG_REPLACED, leg, "replaced-leg")


def transfer_outcome(state: str) -> CallEventType:
    """The event recording a transfer that ended in ``state`` (a terminal
    ``TransferState``)."""
    return _lookup(_TRANSFER_OUTCOME, state, "transfer outcome")

"""The types of a call's events: the ``event_type`` of every ``call_event`` row.

They are a public contract: the ERP reads them in status callbacks (``event_type``), on
the event stream (the SSE ``event:`` line and ``data.event_type``) and in a session's
detail. The domain decides most of them (the click-to-call and transfer steps name the
event they record), the adapters name the facts they observe (DTMF, recording, resync), and
every producer takes its name from here, so the list below is every type the engine writes.
A member is a ``str``: it compares equal to its value and is stored as it.
"""

from __future__ import annotations

import enum

__all__ = ["CallEventType"]


class CallEventType(enum.StrEnum):
    # the session itself
    SESSION_CREATED = "session.created"
    STATUS_CHANGED = "status.changed"  # a status set through the API (PATCH .../status)
    SESSION_ENDED = "session.ended"  # ended through the API
    SESSION_START_EXPIRED = "session.start_expired"
    SESSION_RESYNC = "session.resync"  # state corrected after the ARI link (re)connected
    CALL_FAILED = "call.failed"

    # click-to-call legs
    AGENT_DIALING = "agent.dialing"
    AGENT_ANSWERED = "agent.answered"
    AGENT_UNANSWERED = "agent.unanswered"
    AGENT_HANGUP = "agent.hangup"
    CUSTOMER_DIALING = "customer.dialing"
    CUSTOMER_ANSWERED = "customer.answered"
    CUSTOMER_UNANSWERED = "customer.unanswered"
    CUSTOMER_HANGUP = "customer.hangup"

    # recording
    RECORDING_STARTED = "recording.started"
    RECORDING_PAUSED = "recording.paused"
    RECORDING_RESUMED = "recording.resumed"
    RECORDING_FINISHED = "recording.finished"

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
    IVR_RECORDING_MESSAGE = "ivr.recording_message"
    IVR_ENDED = "ivr.ended"

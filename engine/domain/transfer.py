"""What a transfer of a connected click-to-call does next: pure decisions.

A transfer replaces the agent leg with a target (another agent endpoint or an E.164
number). Blind: ring the target; when it answers, bridge it with the customer and release
the agent. Attended: hold the customer (music on hold), ring the target; when it answers,
the agent consults it in a separate bridge; then ``complete`` (target joins the customer,
agent released) or ``cancel`` (target released, agent back with the customer).

The adapter (ARI) reports facts about the target channel and the API's requests and
carries out the steps; after a completed transfer the target *is* the agent leg
(:func:`route_channel`), so "either side hangs up" keeps working.
"""

from __future__ import annotations

import dataclasses
import enum

from engine.domain.click_to_call import status_for_unanswered

__all__ = [
    "AdoptTarget",
    "BridgeTarget",
    "CancelRequested",
    "ChannelRole",
    "CompleteRequested",
    "ConsultBridge",
    "DestroyConsult",
    "Finish",
    "HangupAgent",
    "HangupTarget",
    "HoldCustomer",
    "OriginateTarget",
    "ReturnAgent",
    "SetState",
    "TargetAnswered",
    "TargetEnded",
    "TransferFact",
    "TransferState",
    "TransferStep",
    "TransferType",
    "decide_transfer",
    "route_channel",
    "start_transfer",
    "state_for_unanswered",
]


class TransferType(enum.StrEnum):
    BLIND = "blind"
    ATTENDED = "attended"


class TransferState(enum.StrEnum):
    INITIATED = "initiated"
    CONSULTING = "consulting"
    COMPLETED = "completed"
    CANCELED = "canceled"
    FAILED = "failed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"

    @property
    def is_live(self) -> bool:
        return self in (TransferState.INITIATED, TransferState.CONSULTING)


T = TransferState


def state_for_unanswered(cause: int | None) -> TransferState:
    """The outcome of a transfer whose target ended before answering (the same Q.850
    reading as an unanswered click-to-call leg)."""
    return TransferState(status_for_unanswered(cause).value)


# -- facts ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TargetAnswered:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class TargetEnded:
    cause: int | None
    cause_text: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CompleteRequested:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class CancelRequested:
    pass


TransferFact = TargetAnswered | TargetEnded | CompleteRequested | CancelRequested


# -- steps ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class HoldCustomer:
    """Start music on hold on the customer."""


@dataclasses.dataclass(frozen=True, slots=True)
class UnholdCustomer:
    """Stop music on hold on the customer."""


@dataclasses.dataclass(frozen=True, slots=True)
class OriginateTarget:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class BridgeTarget:
    """Put the target in the main bridge with the customer."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConsultBridge:
    """Move the agent out of the main bridge into a consult bridge with the target."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReturnAgent:
    """Move the agent from the consult bridge back into the main bridge."""


@dataclasses.dataclass(frozen=True, slots=True)
class DestroyConsult:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class HangupAgent:
    """Release the (original) agent channel."""


@dataclasses.dataclass(frozen=True, slots=True)
class HangupTarget:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class AdoptTarget:
    """From now on the target channel is the session's agent leg."""


@dataclasses.dataclass(frozen=True, slots=True)
class SetState:
    state: TransferState
    event_type: str


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    """End the transfer with ``state`` (terminal), recording ``reason``/``cause``."""

    state: TransferState
    event_type: str
    reason: str | None = None
    cause: int | None = None


TransferStep = (
    HoldCustomer
    | UnholdCustomer
    | OriginateTarget
    | BridgeTarget
    | ConsultBridge
    | ReturnAgent
    | DestroyConsult
    | HangupAgent
    | HangupTarget
    | AdoptTarget
    | SetState
    | Finish
)


def start_transfer(kind: TransferType) -> tuple[TransferStep, ...]:
    """The steps that begin a transfer (the row is already stored as initiated)."""
    if kind is TransferType.ATTENDED:
        return (HoldCustomer(), OriginateTarget())
    return (OriginateTarget(),)


def decide_transfer(
    kind: TransferType, state: TransferState, fact: TransferFact
) -> tuple[TransferStep, ...] | None:
    """The steps for ``fact`` on a transfer in ``state``; None when the fact does not apply
    (the API turns that into 409; a late telephony fact is ignored)."""
    attended = kind is TransferType.ATTENDED
    unhold: tuple[TransferStep, ...] = (UnholdCustomer(),) if attended else ()
    match fact:
        case TargetAnswered() if state is T.INITIATED and not attended:
            return (
                BridgeTarget(),
                HangupAgent(),
                AdoptTarget(),
                Finish(T.COMPLETED, "transfer.completed"),
            )
        case TargetAnswered() if state is T.INITIATED:
            return (ConsultBridge(), SetState(T.CONSULTING, "transfer.consulting"))
        case TargetEnded() if state is T.INITIATED:
            outcome = state_for_unanswered(fact.cause)
            reason = fact.cause_text or f"target did not answer ({outcome.value})"
            return (*unhold, Finish(outcome, f"transfer.{outcome.value}", reason, fact.cause))
        case TargetEnded() if state is T.CONSULTING:
            return (
                ReturnAgent(),
                DestroyConsult(),
                UnholdCustomer(),
                Finish(T.CANCELED, "transfer.canceled", "target hung up", fact.cause),
            )
        case CompleteRequested() if state is T.CONSULTING:
            return (
                BridgeTarget(),
                DestroyConsult(),
                UnholdCustomer(),
                HangupAgent(),
                AdoptTarget(),
                Finish(T.COMPLETED, "transfer.completed"),
            )
        case CancelRequested() if attended and state is T.CONSULTING:
            return (
                HangupTarget(),
                ReturnAgent(),
                DestroyConsult(),
                UnholdCustomer(),
                Finish(T.CANCELED, "transfer.canceled", "canceled by API"),
            )
        case CancelRequested() if attended and state is T.INITIATED:
            return (
                HangupTarget(),
                UnholdCustomer(),
                Finish(T.CANCELED, "transfer.canceled", "canceled by API"),
            )
    return None


class ChannelRole(enum.StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"
    TARGET = "target"
    STALE = "stale"  # the agent channel a completed transfer replaced


def route_channel(suffix: str, *, target_is_agent: bool) -> ChannelRole | None:
    """Which role a channel ``c2c-<uuid>-<suffix>`` plays for its session now.

    Once a transfer completed, the target is the agent leg and the original agent channel
    is stale (its hangup must not end the call). Unknown suffixes are not ours (None).
    """
    match suffix:
        case "customer":
            return ChannelRole.CUSTOMER
        case "agent":
            return ChannelRole.STALE if target_is_agent else ChannelRole.AGENT
        case "target":
            return ChannelRole.AGENT if target_is_agent else ChannelRole.TARGET
    return None

"""What a transfer of a connected click-to-call does next: pure decisions.

A transfer replaces one leg (the *replaced* leg, the API's ``leg``; ``agent`` by default)
with a target (an agent endpoint or an E.164 number); the other leg stays and is moved to
the target (``call_transfer.from_leg``). Blind: ring the target; when it answers, bridge it
with the staying leg and release the replaced one. Attended: hold the customer (music on
hold), ring the target; when it answers, the agent consults it in a separate bridge; then
``complete`` (the target joins the staying leg in the call's bridge, the replaced leg is
released) or ``cancel`` (target released, agent back with the customer). The agent is the
one who consults in both directions: it is the party driving the call from the CRM.

The adapter (ARI) reports facts about the target channel and the API's requests and
carries out the steps; after a completed transfer the target *is* the replaced leg
(:func:`route_channel` compares a channel with the session's current legs), so "either side
hangs up" and further transfers keep working.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime

from engine.domain.click_to_call import Answered, Fact, Leg, LegEnded, status_for_unanswered
from engine.domain.event_types import CallEventType, transfer_outcome

__all__ = [
    "AdoptTarget",
    "BridgeTarget",
    "CancelRequested",
    "ChannelRole",
    "CompleteRequested",
    "ConsultBridge",
    "DestroyConsult",
    "Finish",
    "HangupTarget",
    "HoldCustomer",
    "OriginateTarget",
    "ReleaseLeg",
    "ReturnAgent",
    "SetState",
    "TargetAnswered",
    "TargetEnded",
    "TargetLost",
    "TransferFact",
    "TransferState",
    "TransferStep",
    "TransferType",
    "UnholdCustomer",
    "channel_fact",
    "decide_transfer",
    "other_leg",
    "resync_transfer",
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
class TargetLost:
    """The target channel vanished unseen (e.g. while the ARI link was down)."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class CompleteRequested:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class CancelRequested:
    pass


TransferFact = TargetAnswered | TargetEnded | TargetLost | CompleteRequested | CancelRequested


def other_leg(leg: Leg) -> Leg:
    """The leg that stays when ``leg`` is replaced (what ``call_transfer.from_leg`` holds)."""
    return Leg.CUSTOMER if leg is Leg.AGENT else Leg.AGENT


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
    """Put the target in the call's main bridge (with the staying leg)."""


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
class ReleaseLeg:
    """Hang up the replaced leg's current channel."""

    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class HangupTarget:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class AdoptTarget:
    """From now on the target channel is the session's ``leg``."""

    leg: Leg


@dataclasses.dataclass(frozen=True, slots=True)
class SetState:
    state: TransferState
    event_type: CallEventType


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    """End the transfer with ``state`` (terminal), recording ``reason``/``cause``."""

    state: TransferState
    event_type: CallEventType
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
    | ReleaseLeg
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
    kind: TransferType,
    state: TransferState,
    fact: TransferFact,
    replaced: Leg = Leg.AGENT,
) -> tuple[TransferStep, ...] | None:
    """The steps for ``fact`` on a transfer in ``state`` that replaces the ``replaced`` leg;
    None when the fact does not apply (the API turns that into 409; a late telephony fact
    is ignored)."""
    attended = kind is TransferType.ATTENDED
    unhold: tuple[TransferStep, ...] = (UnholdCustomer(),) if attended else ()
    take_over: tuple[TransferStep, ...] = (
        ReleaseLeg(replaced),
        AdoptTarget(replaced),
        Finish(TransferState.COMPLETED, CallEventType.TRANSFER_COMPLETED),
    )
    match fact:
        case TargetAnswered() if state is TransferState.INITIATED and not attended:
            return (BridgeTarget(), *take_over)
        case TargetAnswered() if state is TransferState.INITIATED:
            return (
                ConsultBridge(),
                SetState(TransferState.CONSULTING, CallEventType.TRANSFER_CONSULTING),
            )
        case TargetEnded() if state is TransferState.INITIATED:
            outcome = state_for_unanswered(fact.cause)
            reason = fact.cause_text or f"target did not answer ({outcome.value})"
            return (
                *unhold,
                Finish(outcome, transfer_outcome(outcome), reason, fact.cause),
            )
        case TargetEnded() if state is TransferState.CONSULTING:
            return (
                ReturnAgent(),
                DestroyConsult(),
                UnholdCustomer(),
                Finish(
                    TransferState.CANCELED,
                    CallEventType.TRANSFER_CANCELED,
                    "target hung up",
                    fact.cause,
                ),
            )
        case TargetLost() if state is TransferState.INITIATED:
            return (
                *unhold,
                Finish(TransferState.FAILED, CallEventType.TRANSFER_FAILED, fact.reason),
            )
        case TargetLost() if state is TransferState.CONSULTING:
            return (
                ReturnAgent(),
                DestroyConsult(),
                UnholdCustomer(),
                Finish(TransferState.FAILED, CallEventType.TRANSFER_FAILED, fact.reason),
            )
        case CompleteRequested() if state is TransferState.CONSULTING and replaced is Leg.AGENT:
            return (BridgeTarget(), DestroyConsult(), UnholdCustomer(), *take_over)
        case CompleteRequested() if state is TransferState.CONSULTING:
            # the agent stays: back into the call's bridge with the target; the held
            # customer is released
            return (ReturnAgent(), BridgeTarget(), DestroyConsult(), *take_over)
        case CancelRequested() if attended and state is TransferState.CONSULTING:
            return (
                HangupTarget(),
                ReturnAgent(),
                DestroyConsult(),
                UnholdCustomer(),
                Finish(TransferState.CANCELED, CallEventType.TRANSFER_CANCELED, "canceled by API"),
            )
        case CancelRequested() if attended and state is TransferState.INITIATED:
            return (
                HangupTarget(),
                UnholdCustomer(),
                Finish(TransferState.CANCELED, CallEventType.TRANSFER_CANCELED, "canceled by API"),
            )
    return None


def resync_transfer(
    state: TransferState, *, target_present: bool, target_up: bool
) -> TransferFact | None:
    """What a transfer in flight missed while the ARI link was down, from whether its
    target channel still exists and is answered; None: adopt it as it is."""
    if not state.is_live:
        return None
    if not target_present:
        return TargetLost("target channel gone while ARI was disconnected")
    if state is TransferState.INITIATED and target_up:
        return TargetAnswered()  # answered unseen: carry on as if we had seen it
    return None


class ChannelRole(enum.StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"
    TARGET = "target"
    STALE = "stale"  # a leg a completed transfer replaced, or an earlier transfer's target


def route_channel(channel: str, *, agent: str, customer: str, target: str | None) -> ChannelRole:
    """Which role ``channel`` plays for its session now, given the session's current agent
    and customer channels and the target channel of the transfer in flight (if any).

    A completed transfer makes its target the replaced leg, so the channel it replaced (and
    any other earlier channel of the session) is stale: its hangup must not end the call.
    """
    if channel == agent:
        return ChannelRole.AGENT
    if channel == customer:
        return ChannelRole.CUSTOMER
    if target is not None and channel == target:
        return ChannelRole.TARGET
    return ChannelRole.STALE


def channel_fact(
    role: ChannelRole,
    *,
    up: bool,
    cause: int | None = None,
    cause_text: str | None = None,
    adopted: bool = False,
    at: datetime | None = None,
    estimated: bool = False,
) -> Fact | TransferFact | None:
    """The fact a channel entering Stasis (``up``) or ending means for the session, given
    its role; ``adopted``: the channel is a former transfer target that became a leg (it
    answered long ago, so its StasisStart is not the leg's answer); ``at``/``estimated``:
    when a leg ended, as :class:`LegEnded` has them. None: ignore it."""
    match role:
        case ChannelRole.AGENT | ChannelRole.CUSTOMER:
            leg = Leg(role.value)
            if up:
                return None if adopted else Answered(leg)
            return LegEnded(leg, cause, cause_text, at=at, estimated=estimated)
        case ChannelRole.TARGET:
            return TargetAnswered() if up else TargetEnded(cause, cause_text)
    return None

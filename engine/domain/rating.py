"""Rating: what one answered leg of a call costs, from the tenant's rate cards.

Pure: rate cards and a leg's times in, a billing line out. The store finds the candidate
cards and writes the line; the click-to-call's end (and ``ctc billing rerate``) decide here.

The rules, as carriers bill:

- **Which card.** Among the cards effective when the leg was answered
  (``effective_from <= answered_at < effective_to``), for the leg's direction and its
  provider (or any provider: ``provider_id`` None), the one whose ``destination_prefix``
  is the longest prefix of the dialled number wins; then a card of the leg's own provider
  over an any-provider card, then the lower ``priority``, then the later ``effective_from``.
  ``+`` alone is the catch-all.
- **Talk time.** From the leg's answer to its end, counted in started seconds (2.1 s is
  3 s): a carrier never bills a fraction of a second, and rounding down would undercharge.
- **Pulses.** ``min_duration_s``/``billing_increment_s`` (``30/6``: the first 30 s, then
  every started 6 s; ``60/60``; ``1/1``): billed seconds are ``max(min_duration_s, talk)``
  rounded up to the increment. A leg answered for 0 s is billed its minimum only.
- **Money.** Integer minor units: the usage is ``billed seconds × rate per minute / 60``,
  the rate being in 10^-``rate_scale`` minor units (sub-cent carrier rates stay exact), and
  is rounded **up** to a whole minor unit; then ``max(usage, minimum_charge_minor)`` plus
  the ``connection_fee_minor`` once per answered leg.
- **No card.** A charged leg that no card matches (no prefix, or the agent dialled as a
  PBX endpoint such as ``PJSIP/1001``) still gets a line: amount 0 in currency ``XXX``
  (ISO 4217's "no currency") with ``unrated_reason`` saying why, so a missing card shows
  up in the export and a ``rerate`` after adding it charges the line.
- **Inbound calls** (the IVR's, either door). The caller's leg is ``inbound`` and is rated
  by the number the caller dialled (the DID): carriers bill an incoming call by the kind
  of number that took it (a toll-free DID costs per minute, a local one often nothing),
  so an ``inbound`` card names a DID prefix (``+1800``). Its talk time runs from the
  IVR's answer to the call's end. A transfer that an agent (or an outside number)
  answered adds a ``target`` leg: ``outbound``, rated by the number dialled, from the
  target's answer to the call's end; an agent reached as a PBX endpoint is, as for a
  click-to-call, a zero line. A DID that is not E.164 (an extension such as ``5551000``)
  gets the zero line with its reason.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

from engine.errors import DomainError

__all__ = [
    "NO_CURRENCY",
    "ChargedLeg",
    "LegDirection",
    "PulseRule",
    "Rate",
    "RatedLeg",
    "billable_seconds",
    "charged_legs",
    "check_prefix",
    "choose_rate",
    "inbound_legs",
    "leg_seconds",
    "number_prefixes",
    "rate_leg",
    "usage_minor",
]

# ISO 4217 "no currency": the currency of a line no rate card matched (amount 0)
NO_CURRENCY: Final = "XXX"
_PREFIX_RE: Final = re.compile(r"^\+[0-9]{0,15}$")
_NUMBER_RE: Final = re.compile(r"^\+[1-9][0-9]{6,14}$")


class LegDirection(enum.StrEnum):
    """A leg's direction as the carrier bills it: both legs of a click-to-call are
    outbound (the engine dials them); an inbound caller's leg is inbound."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclasses.dataclass(frozen=True, slots=True)
class PulseRule:
    """``min_duration_s/billing_increment_s``, written ``30/6`` on rate cards."""

    min_duration_s: int
    increment_s: int

    @classmethod
    def parse(cls, text: str) -> PulseRule:
        """``"30/6"`` → PulseRule(30, 6); ``"60"`` is ``60/60``. DomainError when bad."""
        first, sep, then = text.strip().partition("/")
        try:
            minimum = int(first)
            increment = int(then) if sep else minimum
        except ValueError:
            raise DomainError(f"pulse {text!r} is not MIN/INCREMENT seconds, e.g. 30/6") from None
        if not 1 <= increment <= 3600 or not 0 <= minimum <= 86_400:
            raise DomainError(
                f"pulse {text!r}: the increment must be 1-3600 s and the minimum 0-86400 s"
            )
        return cls(minimum, increment)

    def __str__(self) -> str:
        return f"{self.min_duration_s}/{self.increment_s}"


@dataclasses.dataclass(frozen=True, slots=True)
class Rate:
    """One rate card row (``call_rate_config``)."""

    id: uuid.UUID
    destination_prefix: str
    rate_per_minute_minor: int  # in 10^-rate_scale minor units
    currency: str
    pulse: PulseRule = PulseRule(60, 60)
    rate_scale: int = 0
    connection_fee_minor: int = 0
    minimum_charge_minor: int = 0
    provider_id: uuid.UUID | None = None
    direction: LegDirection = LegDirection.OUTBOUND
    priority: int = 100
    effective_from: datetime | None = None  # None: always (only in tests and imports)
    effective_to: datetime | None = None
    name: str = ""

    def effective_at(self, at: datetime) -> bool:
        if self.effective_from is not None and at < self.effective_from:
            return False
        return self.effective_to is None or at < self.effective_to


@dataclasses.dataclass(frozen=True, slots=True)
class ChargedLeg:
    """An answered leg of a session: what rating needs of it."""

    leg: str  # the call_leg value: agent, customer, caller, target
    number: str  # as dialled: E.164, or a PBX endpoint for an agent
    direction: LegDirection
    answered_at: datetime
    ended_at: datetime
    provider_id: uuid.UUID | None = None
    # the end was not seen but noticed after a restart: the talk time is an upper bound
    end_estimated: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class RatedLeg:
    """A billing line (``call_usage_billing``) before it is stored."""

    leg: ChargedLeg
    duration_s: int
    billable_seconds: int
    amount_minor: int
    currency: str
    rate: Rate | None
    unrated_reason: str | None = None

    @property
    def matched_prefix(self) -> str | None:
        return self.rate.destination_prefix if self.rate is not None else None


def leg_seconds(answered_at: datetime, ended_at: datetime) -> int:
    """Talk time in started seconds (never negative)."""
    micros = (ended_at - answered_at) // timedelta(microseconds=1)
    if micros <= 0:
        return 0
    return -(-micros // 1_000_000)


def billable_seconds(duration_s: int, pulse: PulseRule) -> int:
    """``max(minimum, duration)`` rounded up to the increment."""
    if duration_s < 0:
        raise DomainError(f"a duration cannot be negative ({duration_s} s)")
    counted = max(pulse.min_duration_s, duration_s)
    return -(-counted // pulse.increment_s) * pulse.increment_s


def usage_minor(seconds: int, rate_per_minute_minor: int, rate_scale: int) -> int:
    """What ``seconds`` cost at the rate, rounded up to a whole minor unit."""
    denominator: int = 60 * 10**rate_scale
    return -(-(seconds * rate_per_minute_minor) // denominator)


def number_prefixes(number: str) -> list[str]:
    """Every prefix a rate card may name for ``number``: ``+``, ``+4``, ``+44``, ... (empty
    when the number is not E.164: no card can match it)."""
    if not _NUMBER_RE.match(number):
        return []
    return [number[:i] for i in range(1, len(number) + 1)]


def choose_rate(rates: Iterable[Rate], leg: ChargedLeg) -> Rate | None:
    """The card that rates ``leg`` (see the module docstring), or None."""
    if not _NUMBER_RE.match(leg.number):
        return None
    best: Rate | None = None
    best_key: tuple[int, int, int, float] | None = None
    for rate in rates:
        if rate.direction is not leg.direction or not leg.number.startswith(
            rate.destination_prefix
        ):
            continue
        if rate.provider_id is not None and rate.provider_id != leg.provider_id:
            continue
        if not rate.effective_at(leg.answered_at):
            continue
        since = rate.effective_from.timestamp() if rate.effective_from is not None else 0.0
        key = (
            -len(rate.destination_prefix),
            0 if rate.provider_id is not None else 1,
            rate.priority,
            -since,
        )
        if best_key is None or key < best_key:
            best, best_key = rate, key
    return best


def rate_leg(rates: Iterable[Rate], leg: ChargedLeg) -> RatedLeg:
    """The billing line of ``leg`` under the best of ``rates``."""
    duration = leg_seconds(leg.answered_at, leg.ended_at)
    rate = choose_rate(rates, leg)
    if rate is None:
        reason = (
            f"no rate card matches {leg.number} ({leg.direction.value})"
            if _NUMBER_RE.match(leg.number)
            else f"{leg.number!r} is not a phone number (an endpoint or extension is not rated)"
        )
        return RatedLeg(leg, duration, 0, 0, NO_CURRENCY, None, reason)
    billed = billable_seconds(duration, rate.pulse)
    usage = usage_minor(billed, rate.rate_per_minute_minor, rate.rate_scale)
    amount = max(usage, rate.minimum_charge_minor) + rate.connection_fee_minor
    return RatedLeg(leg, duration, billed, amount, rate.currency, rate)


def charged_legs(
    *,
    agent_number: str,
    customer_number: str,
    agent_answered_at: datetime | None,
    connected_at: datetime | None,
    ended_at: datetime | None,
    provider_id: uuid.UUID | None,
    end_estimated: bool = False,
) -> list[ChargedLeg]:
    """The answered legs of an ended click-to-call: the agent leg from the agent's answer,
    the customer leg from the customer's; both end with the session (the engine hangs up
    the other leg the moment one ends, so they end together within milliseconds). Both
    are outbound, through the session's provider."""
    if ended_at is None:
        return []
    legs: list[ChargedLeg] = []
    if agent_answered_at is not None:
        legs.append(
            ChargedLeg(
                "agent",
                agent_number,
                LegDirection.OUTBOUND,
                agent_answered_at,
                ended_at,
                provider_id,
                end_estimated,
            )
        )
    if connected_at is not None:
        legs.append(
            ChargedLeg(
                "customer",
                customer_number,
                LegDirection.OUTBOUND,
                connected_at,
                ended_at,
                provider_id,
                end_estimated,
            )
        )
    return legs


def inbound_legs(
    *,
    dialed_number: str | None,
    connected_at: datetime | None,
    ended_at: datetime | None,
    target_number: str | None = None,
    target_answered_at: datetime | None = None,
    end_estimated: bool = False,
) -> list[ChargedLeg]:
    """The answered legs of an ended inbound call: the caller's from the IVR's answer
    (rated inbound by the DID), and the transfer target's from its answer (rated
    outbound by the number it was dialled at); both end with the call."""
    if ended_at is None or connected_at is None:
        return []
    legs = [
        ChargedLeg(
            "caller",
            dialed_number or "",
            LegDirection.INBOUND,
            connected_at,
            ended_at,
            None,
            end_estimated,
        )
    ]
    if target_number is not None and target_answered_at is not None:
        legs.append(
            ChargedLeg(
                "target",
                target_number,
                LegDirection.OUTBOUND,
                target_answered_at,
                ended_at,
                None,
                end_estimated,
            )
        )
    return legs


def check_prefix(prefix: str) -> str | None:
    """Why ``prefix`` cannot be a destination prefix, or None."""
    if not _PREFIX_RE.match(prefix):
        return "must be + followed by up to 15 digits (+ alone matches every number)"
    return None

"""Failover between providers: which outcome of an attempt lets the next provider try, and
which providers are healthy enough to be tried at all.

The rule every caller of this module keeps: **one session never has two live calls.** So an
attempt fails over only when its provider provably created no call:

* the request was refused before it was sent (no connection, the breaker open, a
  misconfigured row), a 4xx validation answer, a 401/403, Twilio's 429;
* a SIP trunk's 408, 480, 503 or 504, or a transport error (no SIP answer at all).

A timeout or a 5xx after the request was sent is *uncertain*: the carrier may have created
the call. The caller reconciles first (a list or status query, or waits out the ring timeout
where the carrier has no lookup), hangs up whatever it found, and only then tries the next
provider. Busy, no answer, a human reject or any other final answer ends the session: the
customer was reached, and ringing them through another provider would be a second call.

A :class:`CircuitBreaker` per provider turns repeated provider failures (not the callee's:
busy and no-answer say nothing about the provider) into a pause: open after
``failure_threshold`` failures in a row, half-open after ``reset_after_s`` (one trial attempt),
closed again by a success. Selection skips open providers; ``/healthz`` reports them.

Everything here is pure: time is passed in (``now``, monotonic seconds), randomness too
(``pick`` in [0, 1)), so the decisions are tested without clocks or carriers.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Sequence

__all__ = [
    "AttemptOutcome",
    "BreakerState",
    "Candidate",
    "CircuitBreaker",
    "FailoverDecision",
    "counts_against_provider",
    "decide",
    "order_candidates",
    "sip_outcome",
    "trunk_outcome",
]


class AttemptOutcome(enum.StrEnum):
    """How one attempt to place a session's call through one provider ended."""

    CREATED = "created"  # the carrier accepted the call / the trunk answered the INVITE
    NOT_SENT = "not_sent"  # refused before sending: no connection made, breaker open, config
    REFUSED = "refused"  # a 4xx validation answer: nothing was created
    AUTH_FAILED = "auth_failed"  # 401/403: nothing was created
    RATE_LIMITED = "rate_limited"  # 429: the request was not processed
    UNCERTAIN = "uncertain"  # a timeout or 5xx after sending: a call may exist
    TRUNK_UNAVAILABLE = "trunk_unavailable"  # SIP 408/480/503/504 or a transport error
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    DECLINED = "declined"  # a human reject (SIP 603, a carrier's "canceled by callee")
    FAILED = "failed"  # any other final answer: the call was attempted, not retried


class FailoverDecision(enum.StrEnum):
    NEXT = "next"  # try the next provider now
    RECONCILE = "reconcile"  # find and hang up what the provider may have created, then next
    STOP = "stop"  # the session ends with this attempt's outcome


_DECISIONS: dict[AttemptOutcome, FailoverDecision] = {
    AttemptOutcome.CREATED: FailoverDecision.STOP,
    AttemptOutcome.NOT_SENT: FailoverDecision.NEXT,
    AttemptOutcome.REFUSED: FailoverDecision.NEXT,
    AttemptOutcome.AUTH_FAILED: FailoverDecision.NEXT,
    AttemptOutcome.RATE_LIMITED: FailoverDecision.NEXT,
    AttemptOutcome.UNCERTAIN: FailoverDecision.RECONCILE,
    AttemptOutcome.TRUNK_UNAVAILABLE: FailoverDecision.NEXT,
    AttemptOutcome.BUSY: FailoverDecision.STOP,
    AttemptOutcome.NO_ANSWER: FailoverDecision.STOP,
    AttemptOutcome.DECLINED: FailoverDecision.STOP,
    AttemptOutcome.FAILED: FailoverDecision.STOP,
}

# Failures that say something about the provider's health (and feed its breaker); the
# callee's answers (busy, no answer, a reject) and our own bad request say nothing about it.
_PROVIDER_FAILURES = frozenset(
    {
        AttemptOutcome.NOT_SENT,
        AttemptOutcome.AUTH_FAILED,
        AttemptOutcome.RATE_LIMITED,
        AttemptOutcome.UNCERTAIN,
        AttemptOutcome.TRUNK_UNAVAILABLE,
    }
)

# SIP final answers after which the trunk provably created no call toward the callee.
_SIP_UNAVAILABLE = frozenset({408, 480, 503, 504})
_SIP_BUSY = frozenset({486, 600})
_SIP_DECLINED = frozenset({603})


def decide(outcome: AttemptOutcome) -> FailoverDecision:
    """What follows an attempt that ended with ``outcome``."""
    return _DECISIONS[outcome]


def counts_against_provider(outcome: AttemptOutcome) -> bool:
    """Whether ``outcome`` is a failure of the provider (its breaker counts it)."""
    return outcome in _PROVIDER_FAILURES


def sip_outcome(code: int | None, *, answered: bool = False) -> AttemptOutcome:
    """A trunk attempt's outcome from its final SIP answer (``code``; None: no SIP answer at
    all, a transport error). ``answered``: the callee answered (the code is then the BYE's
    cause and says nothing about the attempt)."""
    if answered:
        return AttemptOutcome.CREATED
    if code is None or code in _SIP_UNAVAILABLE:
        return AttemptOutcome.TRUNK_UNAVAILABLE
    if code in _SIP_BUSY:
        return AttemptOutcome.BUSY
    if code in _SIP_DECLINED:
        return AttemptOutcome.DECLINED
    if code == 487:  # the INVITE was cancelled: by us, when the ring timeout elapsed
        return AttemptOutcome.NO_ANSWER
    if 200 <= code < 300:
        return AttemptOutcome.CREATED
    return AttemptOutcome.FAILED


# Q.850 causes for a trunk leg that ended with no SIP code (hung up by Asterisk itself):
# Asterisk's own translation of the SIP answers above (chan_pjsip's hangup_sip2cause).
_Q850_UNAVAILABLE = frozenset({27, 34, 38, 41, 42, 102})  # out of order, congestion, timer
_Q850_BUSY = frozenset({17})
_Q850_NO_ANSWER = frozenset({18, 19})
_Q850_DECLINED = frozenset({21})


def trunk_outcome(tech_cause: int | None, cause: int | None) -> AttemptOutcome:
    """A trunk leg's outcome from its channel's end as Asterisk reports it: ``tech_cause``
    (ARI's ChannelDestroyed ``tech_cause``, the SIP final answer chan_pjsip got) decides
    when there is one; without it (the channel was hung up on our side, e.g. the ring
    timeout, or no SIP answer was kept) the Q.850 ``cause``. A leg that ended with no cause
    at all is FAILED, never a failover: nothing says the trunk did not reach the callee."""
    if tech_cause is not None:
        return sip_outcome(tech_cause)
    if cause in _Q850_UNAVAILABLE:
        return AttemptOutcome.TRUNK_UNAVAILABLE
    if cause in _Q850_BUSY:
        return AttemptOutcome.BUSY
    if cause in _Q850_NO_ANSWER:
        return AttemptOutcome.NO_ANSWER
    if cause in _Q850_DECLINED:
        return AttemptOutcome.DECLINED
    return AttemptOutcome.FAILED


class BreakerState(enum.StrEnum):
    CLOSED = "closed"  # attempts go through
    OPEN = "open"  # no attempts until reset_after_s has passed
    HALF_OPEN = "half_open"  # one trial attempt at a time decides


@dataclasses.dataclass(slots=True)
class CircuitBreaker:
    """One provider's breaker (see the module docstring). Not thread-safe; one per provider
    per engine, driven from the event loop."""

    failure_threshold: int = 5
    reset_after_s: float = 30.0
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # provider failures in a row
    opened_at: float | None = None
    trial_in_flight: bool = False

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, not {self.failure_threshold}")
        if self.reset_after_s <= 0:
            raise ValueError(f"reset_after_s must be > 0, not {self.reset_after_s}")

    def current(self, now: float) -> BreakerState:
        """The state at ``now`` (an open breaker whose pause is over reads half-open)."""
        if self.state is BreakerState.OPEN and self._pause_over(now):
            return BreakerState.HALF_OPEN
        return self.state

    def allows(self, now: float) -> bool:
        """Whether an attempt may go through now; a half-open breaker lets one trial through
        and counts it in flight until :meth:`record` hears its outcome."""
        state = self.current(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self.trial_in_flight:
            return False
        self.state = BreakerState.HALF_OPEN
        self.trial_in_flight = True
        return True

    def record(self, outcome: AttemptOutcome, now: float) -> None:
        """Count an attempt's outcome."""
        self.trial_in_flight = False
        if counts_against_provider(outcome):
            self.failures += 1
            if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
                self.state = BreakerState.OPEN
                self.opened_at = now
            return
        if outcome is AttemptOutcome.REFUSED:
            # our request was wrong, the provider answered: neither healthy nor failing
            return
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = None

    def abandon(self) -> None:
        """An attempt let through ended without an outcome that says anything about the
        provider (e.g. the call was cancelled while it rang): a half-open breaker may let
        another trial through."""
        self.trial_in_flight = False

    def _pause_over(self, now: float) -> bool:
        if self.opened_at is None:
            raise RuntimeError("an open circuit breaker has no opened_at")
        return now - self.opened_at >= self.reset_after_s


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """A provider that could carry the call: lower ``priority`` is tried first; among equal
    priorities ``weight`` shares the first place (weight 0: only after the others)."""

    provider_id: uuid.UUID
    priority: int
    weight: int = 1


def order_candidates(candidates: Sequence[Candidate], pick: float) -> list[Candidate]:
    """The order to try ``candidates`` in: by priority; within one priority, the first is
    drawn by weight with ``pick`` (uniform in [0, 1)) and the rest follow by descending
    weight, then id (stable, so a retry of the same draw tries the same order)."""
    if not 0.0 <= pick < 1.0:
        raise ValueError(f"pick must be in [0, 1), not {pick}")
    ordered: list[Candidate] = []
    for priority in sorted({c.priority for c in candidates}):
        tier = sorted(
            (c for c in candidates if c.priority == priority),
            key=lambda c: (-c.weight, str(c.provider_id)),
        )
        ordered.extend(_weighted_first(tier, pick))
    return ordered


def _weighted_first(tier: list[Candidate], pick: float) -> list[Candidate]:
    total = sum(max(c.weight, 0) for c in tier)
    if total == 0 or len(tier) == 1:
        return tier
    point = pick * total
    for index, candidate in enumerate(tier):
        point -= max(candidate.weight, 0)
        if point < 0:
            return [candidate, *tier[:index], *tier[index + 1 :]]
    return tier

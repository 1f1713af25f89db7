"""Failover decisions and the per-provider circuit breaker (engine.domain.failover)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.failover import (
    AttemptOutcome,
    BreakerState,
    Candidate,
    CircuitBreaker,
    FailoverDecision,
    counts_against_provider,
    decide,
    order_candidates,
    sip_outcome,
    trunk_outcome,
)


@pytest.mark.parametrize(
    "outcome",
    [
        AttemptOutcome.NOT_SENT,
        AttemptOutcome.REFUSED,
        AttemptOutcome.AUTH_FAILED,
        AttemptOutcome.RATE_LIMITED,
        AttemptOutcome.TRUNK_UNAVAILABLE,
    ],
)
def test_an_attempt_that_provably_created_no_call_fails_over_at_once(
    outcome: AttemptOutcome,
) -> None:
    assert decide(outcome) is FailoverDecision.NEXT


def test_an_uncertain_attempt_is_reconciled_before_the_next_provider() -> None:
    assert decide(AttemptOutcome.UNCERTAIN) is FailoverDecision.RECONCILE


@pytest.mark.parametrize(
    "outcome",
    [
        AttemptOutcome.CREATED,
        AttemptOutcome.BUSY,
        AttemptOutcome.NO_ANSWER,
        AttemptOutcome.DECLINED,
        AttemptOutcome.FAILED,
    ],
)
def test_a_callee_who_was_reached_is_never_rung_through_another_provider(
    outcome: AttemptOutcome,
) -> None:
    assert decide(outcome) is FailoverDecision.STOP


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (None, AttemptOutcome.TRUNK_UNAVAILABLE),
        (408, AttemptOutcome.TRUNK_UNAVAILABLE),
        (480, AttemptOutcome.TRUNK_UNAVAILABLE),
        (503, AttemptOutcome.TRUNK_UNAVAILABLE),
        (504, AttemptOutcome.TRUNK_UNAVAILABLE),
        (486, AttemptOutcome.BUSY),
        (600, AttemptOutcome.BUSY),
        (603, AttemptOutcome.DECLINED),
        (487, AttemptOutcome.NO_ANSWER),
        (404, AttemptOutcome.FAILED),
        (500, AttemptOutcome.FAILED),
        (200, AttemptOutcome.CREATED),
    ],
)
def test_sip_final_answers_map_to_outcomes(code: int | None, outcome: AttemptOutcome) -> None:
    assert sip_outcome(code) is outcome


def test_an_answered_trunk_call_is_created_whatever_its_hangup_code() -> None:
    assert sip_outcome(503, answered=True) is AttemptOutcome.CREATED


def test_the_callees_answers_say_nothing_about_the_providers_health() -> None:
    for outcome in (AttemptOutcome.BUSY, AttemptOutcome.NO_ANSWER, AttemptOutcome.DECLINED):
        assert not counts_against_provider(outcome)


def test_the_breaker_opens_after_the_threshold_and_half_opens_after_the_pause() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10)
    for t in range(3):
        assert breaker.allows(float(t))
        breaker.record(AttemptOutcome.UNCERTAIN, float(t))
    assert breaker.current(5.0) is BreakerState.OPEN
    assert not breaker.allows(5.0)
    assert breaker.current(12.0) is BreakerState.HALF_OPEN
    assert breaker.allows(12.0)  # the one trial
    assert not breaker.allows(12.5)  # a second while the trial is in flight
    breaker.record(AttemptOutcome.CREATED, 13.0)
    assert breaker.current(13.0) is BreakerState.CLOSED
    assert breaker.failures == 0


def test_a_failed_trial_opens_the_breaker_again_for_a_whole_pause() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=10)
    breaker.record(AttemptOutcome.TRUNK_UNAVAILABLE, 0.0)
    assert breaker.allows(10.0)
    breaker.record(AttemptOutcome.NOT_SENT, 10.0)
    assert not breaker.allows(19.0)
    assert breaker.allows(20.0)


def test_busy_and_no_answer_do_not_open_the_breaker() -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=10)
    breaker.record(AttemptOutcome.UNCERTAIN, 0.0)
    breaker.record(AttemptOutcome.BUSY, 1.0)  # the provider worked: the count restarts
    breaker.record(AttemptOutcome.UNCERTAIN, 2.0)
    assert breaker.current(2.0) is BreakerState.CLOSED


def _candidate(priority: int, weight: int = 1) -> Candidate:
    return Candidate(uuid.uuid4(), priority, weight)


def test_lower_priority_is_tried_first() -> None:
    first, second = _candidate(10), _candidate(20)
    assert order_candidates([second, first], 0.99) == [first, second]


@given(
    weights=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=5),
    pick=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_ordering_keeps_every_candidate_once(weights: list[int], pick: float) -> None:
    candidates = [_candidate(100, w) for w in weights]
    ordered = order_candidates(candidates, pick)
    assert sorted(map(str, (c.provider_id for c in ordered))) == sorted(
        map(str, (c.provider_id for c in candidates))
    )


def test_weights_share_the_first_place_in_proportion() -> None:
    heavy, light = _candidate(100, 3), _candidate(100, 1)
    firsts = [order_candidates([heavy, light], i / 100)[0] for i in range(100)]
    assert firsts.count(heavy) == 75
    assert firsts.count(light) == 25


@pytest.mark.parametrize(
    ("tech_cause", "cause", "outcome"),
    [
        # measured on the sandbox (Asterisk 22.10): ChannelDestroyed cause / tech_cause
        (503, 34, AttemptOutcome.TRUNK_UNAVAILABLE),
        (486, 17, AttemptOutcome.BUSY),
        (408, 18, AttemptOutcome.TRUNK_UNAVAILABLE),  # the SIP code wins over Q.850 18
        (487, 19, AttemptOutcome.NO_ANSWER),
        (603, 21, AttemptOutcome.DECLINED),
        # no SIP code kept: Asterisk's Q.850 translation decides
        (None, 34, AttemptOutcome.TRUNK_UNAVAILABLE),
        (None, 102, AttemptOutcome.TRUNK_UNAVAILABLE),
        (None, 17, AttemptOutcome.BUSY),
        (None, 19, AttemptOutcome.NO_ANSWER),  # our ring timeout
        (None, 18, AttemptOutcome.NO_ANSWER),
        (None, 21, AttemptOutcome.DECLINED),
        (None, 16, AttemptOutcome.FAILED),
        (None, None, AttemptOutcome.FAILED),  # nothing says the trunk did not reach anyone
    ],
)
def test_a_trunk_legs_end_is_read_from_its_sip_answer_then_its_q850_cause(
    tech_cause: int | None, cause: int | None, outcome: AttemptOutcome
) -> None:
    assert trunk_outcome(tech_cause, cause) is outcome


def test_an_abandoned_half_open_trial_lets_the_next_one_through() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=10)
    breaker.record(AttemptOutcome.TRUNK_UNAVAILABLE, now=0)
    assert breaker.allows(now=10)  # the trial
    assert not breaker.allows(now=11)  # one at a time
    breaker.abandon()  # the call was cancelled while the trial rang
    assert breaker.allows(now=12)

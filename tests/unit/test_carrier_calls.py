"""The carrier dialer's pure parts: a failed create's failover outcome, the per-provider
breakers and what they report to the health report."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.app.carrier_calls import attempt_outcome
from engine.app.provider_breakers import ProviderBreakers
from engine.domain.failover import AttemptOutcome, BreakerState
from engine.errors import (
    CarrierAuthFailed,
    CarrierError,
    CarrierRateLimited,
    CarrierRefused,
    CarrierUnavailable,
    CarrierUnsupported,
    InvalidInput,
)
from engine.health import HealthReport
from engine.store.records import StoredProvider


def _provider(**config: Any) -> StoredProvider:
    now = datetime.now(UTC)
    return StoredProvider(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        name="tw",
        provider_type="twilio",
        is_active=True,
        is_default=False,
        priority=100,
        max_concurrent_calls=None,
        calls_per_second=None,
        config=config,
        has_credentials=True,
        has_webhook_secret=False,
        created_at=now,
        updated_at=now,
    )


def _not_sent() -> CarrierError:
    error = CarrierUnavailable("twilio", "connection refused")
    error.call_may_exist = False  # no connection was made: nothing left this host
    return error


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (CarrierRefused("twilio", "bad number", status=400), AttemptOutcome.REFUSED),
        (CarrierRateLimited("twilio", "slow down", status=429), AttemptOutcome.RATE_LIMITED),
        (CarrierAuthFailed("twilio", "who", status=401), AttemptOutcome.AUTH_FAILED),
        (CarrierUnavailable("twilio", "timeout"), AttemptOutcome.UNCERTAIN),
        (CarrierUnavailable("twilio", "503", status=503), AttemptOutcome.UNCERTAIN),
        (_not_sent(), AttemptOutcome.NOT_SENT),
        (CarrierUnsupported("mcube", "no"), AttemptOutcome.NOT_SENT),
    ],
)
def test_attempt_outcome(error: CarrierError, outcome: AttemptOutcome) -> None:
    assert attempt_outcome(error) is outcome


def test_breakers_open_report_down_and_recover_through_one_trial() -> None:
    health = HealthReport()
    now = [0.0]
    breakers = ProviderBreakers(health, clock=lambda: now[0])
    provider = _provider(breaker_failures=2, breaker_reset_s=10)
    name = f"provider {provider.id}"
    for _ in range(2):
        assert breakers.allows(provider)
        breakers.record(provider, AttemptOutcome.UNCERTAIN)
    assert breakers.state(provider.id) is BreakerState.OPEN
    status = health.get(name)
    assert status is not None
    assert (status.state, status.required) == ("down", False)
    assert "circuit open, 2 failures" in status.detail
    assert health.ready  # an open breaker moves calls elsewhere: the engine stays ready
    assert not breakers.allows(provider)
    now[0] = 10.0
    assert breakers.state(provider.id) is BreakerState.HALF_OPEN
    assert breakers.allows(provider)  # the one trial
    assert not breakers.allows(provider)  # ... at a time
    breakers.record(provider, AttemptOutcome.CREATED)
    assert breakers.state(provider.id) is BreakerState.CLOSED
    status = health.get(name)
    assert status is not None
    assert status.state == "up"


def test_callee_outcomes_and_our_refusals_do_not_open_the_breaker() -> None:
    breakers = ProviderBreakers(clock=lambda: 0.0)
    provider = _provider(breaker_failures=1)
    for outcome in (AttemptOutcome.REFUSED, AttemptOutcome.BUSY, AttemptOutcome.NO_ANSWER):
        breakers.record(provider, outcome)
    assert breakers.state(provider.id) is BreakerState.CLOSED


def test_a_bad_breaker_setting_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"config\.breaker_failures"):
        ProviderBreakers().allows(_provider(breaker_failures="many"))

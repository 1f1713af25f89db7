"""One circuit breaker per provider in this engine, shared by every path that places calls
through providers: HTTP carriers (:mod:`engine.app.carrier_calls`) and SIP trunks on the
local Asterisk (:mod:`engine.asterisk.flows.trunks`). The decisions are
:class:`engine.domain.failover.CircuitBreaker`'s; this holds them, reads each provider's
settings, logs state changes and reports every breaker in the one health report.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import structlog

from engine.domain.failover import AttemptOutcome, BreakerState, CircuitBreaker
from engine.errors import InvalidInput
from engine.health import HealthReport
from engine.store.records import StoredProvider

__all__ = ["ProviderBreakers", "config_number"]

log = structlog.get_logger(__name__)


def config_number(provider: StoredProvider, name: str, default: float) -> float:
    """A positive number from the provider's ``config`` (``default`` when absent)."""
    value = provider.config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidInput(f"config.{name}", f"must be a number > 0, not {value!r}")
    return float(value)


class ProviderBreakers:
    """One :class:`~engine.domain.failover.CircuitBreaker` per provider in this engine,
    each provider's state in the health report (component ``provider <id>``, not required
    for readiness: an open breaker only moves calls to the next provider). A carrier's
    ``config`` may set ``breaker_failures`` (5) and ``breaker_reset_s`` (30)."""

    def __init__(
        self, health: HealthReport | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._health = health
        self.clock = clock  # monotonic seconds
        self._breakers: dict[uuid.UUID, CircuitBreaker] = {}
        self._names: dict[uuid.UUID, str] = {}

    def _breaker(self, provider: StoredProvider) -> CircuitBreaker:
        breaker = self._breakers.get(provider.id)
        if breaker is None:
            breaker = CircuitBreaker(
                failure_threshold=int(config_number(provider, "breaker_failures", 5)),
                reset_after_s=config_number(provider, "breaker_reset_s", 30.0),
            )
            self._breakers[provider.id] = breaker
            self._names[provider.id] = f"{provider.name} ({provider.provider_type})"
        return breaker

    def allows(self, provider: StoredProvider) -> bool:
        """Whether an attempt through ``provider`` may go now (a half-open breaker lets
        one trial through: :meth:`record` must follow)."""
        return self._breaker(provider).allows(self.clock())

    def record(self, provider: StoredProvider, outcome: AttemptOutcome) -> None:
        breaker = self._breaker(provider)
        before = breaker.state
        breaker.record(outcome, self.clock())
        if breaker.state is not before or before is not BreakerState.CLOSED:
            log.info(
                "provider.breaker",
                provider_id=str(provider.id),
                state=breaker.state.value,
                failures=breaker.failures,
            )
        self._report(provider.id, breaker)

    def abandon(self, provider: StoredProvider) -> None:
        """An attempt let through ended saying nothing about the provider (the call was
        cancelled while it rang): a half-open breaker may let another trial through."""
        self._breaker(provider).abandon()

    def state(self, provider_id: uuid.UUID) -> BreakerState:
        breaker = self._breakers.get(provider_id)
        return BreakerState.CLOSED if breaker is None else breaker.current(self.clock())

    def _report(self, provider_id: uuid.UUID, breaker: CircuitBreaker) -> None:
        if self._health is None:
            return
        state = breaker.current(self.clock())
        detail = f"{self._names[provider_id]}: circuit {state.value}, {breaker.failures} failures"
        if state is BreakerState.CLOSED:
            self._health.set(f"provider {provider_id}", "up", detail, required=False)
        else:
            self._health.set(f"provider {provider_id}", "down", detail, required=False)

"""Which ``sip_trunk`` provider carries a click-to-call's customer leg, and the next one
when a trunk could not take the call.

A session whose provider is a ``sip_trunk`` dials its customer through that provider's
PJSIP endpoint with its prefix rules (:mod:`engine.domain.sip_trunk`); the ``asterisk``
type, and a session with no provider, keep ``calls.customer_endpoint_template``. The
candidates are the session's provider first, then the tenant's other active ``sip_trunk``
providers in :func:`~engine.domain.failover.order_candidates` order; a trunk whose prefix
rules refuse the number, whose config is broken, or whose circuit breaker is open is
skipped.

One session never has two live customer legs: the next trunk is dialled only after the
previous leg's channel is gone and its final SIP answer
(:func:`~engine.domain.failover.trunk_outcome`) says the trunk created no call (408, 480,
503, 504, no answer at all, or the originate itself refused). A busy, no answer or reject
ends the session as it would without failover.

The plans live in memory, per engine: after a restart a call still ringing its customer
finishes on that trunk without failover. Breakers are per engine too (one per provider).
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable

import structlog

from engine.app.provider_breakers import ProviderBreakers
from engine.domain.failover import (
    AttemptOutcome,
    Candidate,
    FailoverDecision,
    decide,
    order_candidates,
)
from engine.domain.providers import ProviderType
from engine.domain.sip_trunk import SipTrunkConfig, parse_sip_trunk_config
from engine.errors import InvalidInput
from engine.store.records import StoredProvider, StoredSession
from engine.store.repositories import Store

__all__ = ["TrunkAttempt", "TrunkRoutes"]

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class TrunkAttempt:
    """The ``number``-th attempt (from 1) to carry a session's customer leg: through which
    provider, by which trunk rules."""

    provider: StoredProvider
    config: SipTrunkConfig
    number: int

    def payload(self) -> dict[str, object]:
        """What a ``provider.attempt`` event says of the attempt itself."""
        return {
            "provider": self.provider.name,
            "provider_id": str(self.provider.id),
            "provider_type": self.provider.provider_type,
            "attempt": self.number,
            "endpoint": self.config.endpoint,
        }


@dataclasses.dataclass(slots=True)
class _Plan:
    waiting: list[tuple[StoredProvider, SipTrunkConfig]]
    current: TrunkAttempt | None = None
    tried: int = 0


class TrunkRoutes:
    """The trunk plans of the calls ringing their customer, and a breaker per provider.

    ``clock`` (monotonic seconds) and ``pick`` (uniform in [0, 1)) are the failover
    module's time and randomness."""

    def __init__(
        self,
        store: Store,
        *,
        pick: Callable[[], float] = random.random,
        breakers: ProviderBreakers | None = None,
    ) -> None:
        self._store = store
        self._pick = pick
        # the engine's breakers (one per provider, in /healthz); a test's own otherwise
        self._breakers = breakers if breakers is not None else ProviderBreakers()
        self._plans: dict[uuid.UUID, _Plan] = {}

    async def first(self, session: StoredSession) -> TrunkAttempt | None:
        """The first trunk attempt for the session's customer leg; None when the session is
        not carried by a ``sip_trunk`` (the template path). A new plan every time: a call
        resumed after a restart starts over from its own provider."""
        self.forget(session.id)
        if session.provider_id is None or session.customer_number is None:
            return None
        own = await self._store.providers.get(session.tenant_id, session.provider_id)
        if own.provider_type != ProviderType.SIP_TRUNK:
            return None
        others = [
            p
            for p in await self._store.providers.all(
                session.tenant_id, provider_type=ProviderType.SIP_TRUNK
            )
            if p.is_active and p.id != own.id
        ]
        by_id = {p.id: p for p in others}
        ordered = order_candidates(
            [Candidate(p.id, p.priority, p.weight) for p in others], self._pick()
        )
        waiting: list[tuple[StoredProvider, SipTrunkConfig]] = []
        for provider in [own, *(by_id[c.provider_id] for c in ordered)]:
            config = _usable(provider, session.customer_number)
            if config is not None:
                waiting.append((provider, config))
        self._plans[session.id] = _Plan(waiting)
        return self._advance(session.id)

    def current(self, session_id: uuid.UUID) -> TrunkAttempt | None:
        """The attempt ringing the session's customer now (None: no trunk plan)."""
        plan = self._plans.get(session_id)
        return None if plan is None else plan.current

    def conclude(self, session_id: uuid.UUID, outcome: AttemptOutcome) -> TrunkAttempt | None:
        """The current attempt ended with ``outcome``: count it on its provider's breaker
        and return the next attempt when the outcome lets the call fail over (None: the
        call ends with this outcome, or no trunk is left)."""
        plan = self._plans.get(session_id)
        if plan is None or plan.current is None:
            raise RuntimeError(f"call {session_id}: no trunk attempt to conclude")
        self._breakers.record(plan.current.provider, outcome)
        plan.current = None
        if decide(outcome) is not FailoverDecision.NEXT:
            return None
        return self._advance(session_id)

    def forget(self, session_id: uuid.UUID) -> None:
        """The session needs no more trunks (answered, ended, released). An attempt still
        open said nothing about its provider: a half-open breaker's trial is given back."""
        plan = self._plans.pop(session_id, None)
        if plan is not None and plan.current is not None:
            self._breakers.abandon(plan.current.provider)

    def _advance(self, session_id: uuid.UUID) -> TrunkAttempt | None:
        plan = self._plans[session_id]
        while plan.waiting:
            provider, config = plan.waiting.pop(0)
            if not self._breakers.allows(provider):
                log.info("trunk.breaker_open", call_id=str(session_id), provider=provider.name)
                continue
            plan.tried += 1
            plan.current = TrunkAttempt(provider, config, plan.tried)
            return plan.current
        return None


def _usable(provider: StoredProvider, number: str) -> SipTrunkConfig | None:
    """The provider's trunk rules when they can carry ``number``; None (logged) otherwise."""
    try:
        config = parse_sip_trunk_config(provider.config)
    except InvalidInput as exc:
        log.warning("trunk.config_invalid", provider=provider.name, error=str(exc))
        return None
    if not config.carries(number):
        log.info("trunk.number_not_carried", provider=provider.name)
        return None
    return config

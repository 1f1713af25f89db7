"""Carrier webhooks in: verified, deduplicated, logged, and applied to the one session they
belong to.

A carrier reaches ``/webhooks/voip/{provider_type}/{provider_id}`` with no tenant token:
the provider row decides the tenant, and the webhook must prove it comes from that
provider's carrier (Twilio's signature, Vonage's JWT, Exotel's and mCube's URL token and
allowed sources). On the older path without a provider id (``/webhooks/voip/{type}``, the
seed's, reached with a tenant's token) each of the tenant's providers of that type is tried.

Every webhook is logged in ``click_to_call_webhook_log``: refused ones with
``signature_valid`` false and ``rejected`` (the caller answers 401); verified ones with the
carrier's dedupe key, so a replay is logged as ``ignored`` (replay) and changes nothing.
A verified fact changes a session only through :meth:`WebhookIntake.receive`, which finds
the session by tenant, provider and the carrier's call id together, so one tenant's provider
can never reach another tenant's session, and asks the domain
(:func:`engine.domain.carriers.decide`) what it does, so a session never moves backwards.
Carriers that sign nothing (Exotel) have a terminal state confirmed by a status query first.
The dedupe key and the fact it carries are written in one transaction with the session's row
locked: a failure between them keeps neither, and the carrier's retry applies the fact.

A carrier may call back before its answer to the create has reached us (Twilio sends the
first status within milliseconds and never retries a status callback), so before the dialer
has recorded the call id. Every adapter names our session in the callback URL
(``?session=``): when no session has the call id and that session is the provider's
tenant's, not ended and without a call id yet (its placement in flight), the intake waits up
to ``placement_wait_s`` for the dialer to record one, then looks again. The fact applies only
if the id recorded is the callback's: a late callback from a provider failed over from
stays ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Mapping
from typing import Any

import structlog

from engine.app.ports import Carriers
from engine.domain.call import CallStatus
from engine.domain.carriers import CarrierFact, Decision, decide, event_for, meaning
from engine.domain.event_types import CallEventType
from engine.domain.providers import ProviderType
from engine.errors import (
    CarrierError,
    ConfigError,
    FeatureUnavailable,
    InvalidInput,
    NotFound,
    WebhookRejected,
)
from engine.providers.base import CallRef, CarrierAdapter, WebhookRequest
from engine.store.records import (
    NewWebhookLog,
    StoredProvider,
    Tenant,
    WebhookLogEntry,
)
from engine.store.repositories import Store
from engine.store.write_through import SessionBatch

__all__ = ["WebhookIntake", "WebhookOutcome"]

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookOutcome:
    entry: WebhookLogEntry
    applied: tuple[CallStatus, ...] = ()  # the statuses the session passed through
    reason: str | None = None  # why nothing changed, when nothing did


_PLACEMENT_WAIT_S = 5.0  # how long a callback waits for its placement's call id
_PLACEMENT_POLL_S = 0.05


class WebhookIntake:
    def __init__(
        self,
        store: Store,
        carriers: Carriers | None = None,
        *,
        placement_wait_s: float = _PLACEMENT_WAIT_S,
    ) -> None:
        self._store = store
        self._carriers = carriers
        self._placement_wait_s = placement_wait_s

    @staticmethod
    def require_provider_type(provider_type: str) -> ProviderType:
        """The provider type named ``provider_type``; NotFound unless the engine knows it."""
        try:
            return ProviderType(provider_type)
        except ValueError:
            raise NotFound("provider type", provider_type) from None

    async def provider(self, provider_type: ProviderType, provider_id: uuid.UUID) -> StoredProvider:
        """The provider a webhook URL names; NotFound unless it is of ``provider_type``."""
        provider = await self._store.providers.by_id(provider_id)
        if provider.provider_type != provider_type.value:
            raise NotFound("provider", provider_id)
        return provider

    def _require_carriers(self) -> Carriers:
        if self._carriers is None:
            raise FeatureUnavailable("carrier webhooks are not served by this process")
        return self._carriers

    async def _adapter(self, provider: StoredProvider) -> CarrierAdapter:
        carriers = self._require_carriers()
        cached = carriers.cached(provider)
        if cached is not None:
            return cached
        secrets = await self._store.providers.secrets(provider.tenant_id, provider.id)
        try:
            return carriers.adapter(provider, secrets)
        except (ConfigError, InvalidInput) as exc:
            # our side is wrong, not the carrier: 503, so the carrier tries again later
            log.error(
                "webhook.provider_misconfigured", provider_id=str(provider.id), error=str(exc)
            )
            raise FeatureUnavailable(f"provider {provider.name!r} is misconfigured: {exc}") from exc

    async def receive_for_tenant(
        self,
        tenant: Tenant,
        provider_type: ProviderType,
        request: WebhookRequest,
        headers: Mapping[str, str],
    ) -> WebhookOutcome:
        """A webhook on the path without a provider id: the first of the tenant's
        providers of that type whose carrier it verifies against."""
        rejection: WebhookRejected | None = None
        for provider in await self._store.providers.all(tenant.id, provider_type=provider_type):
            try:
                adapter = await self._adapter(provider)
                adapter.verify(request)
            except WebhookRejected as exc:
                rejection = exc
                continue
            return await self._verified(provider, adapter, request, headers)
        rejection = rejection or WebhookRejected(
            provider_type.value, "unknown_provider", "the tenant has no such provider"
        )
        await self._log_rejected(tenant.id, provider_type, None, request, headers, rejection)
        raise rejection

    async def receive(
        self, provider: StoredProvider, request: WebhookRequest, headers: Mapping[str, str]
    ) -> WebhookOutcome:
        """Verify, log and apply one webhook of ``provider``'s carrier. WebhookRejected
        (logged as such) when it is not the carrier's."""
        adapter = await self._adapter(provider)
        try:
            adapter.verify(request)
        except WebhookRejected as exc:
            await self._log_rejected(
                provider.tenant_id,
                ProviderType(provider.provider_type),
                provider.id,
                request,
                headers,
                exc,
            )
            raise
        return await self._verified(provider, adapter, request, headers)

    async def _log_rejected(
        self,
        tenant_id: uuid.UUID,
        provider_type: ProviderType,
        provider_id: uuid.UUID | None,
        request: WebhookRequest,
        headers: Mapping[str, str],
        rejection: WebhookRejected,
    ) -> None:
        await self._store.webhooks.log(
            NewWebhookLog(
                tenant_id=tenant_id,
                provider_type=provider_type.value,
                provider_id=provider_id,
                payload=request.payload,
                headers=headers,
                signature_valid=False,
                processing_status="rejected",
                error=rejection.reason,
            )
        )
        log.warning(
            "webhook.rejected",
            provider_type=provider_type.value,
            provider_id=str(provider_id) if provider_id else None,
            reason=rejection.reason,
        )

    async def _verified(
        self,
        provider: StoredProvider,
        adapter: CarrierAdapter,
        request: WebhookRequest,
        headers: Mapping[str, str],
    ) -> WebhookOutcome:
        fact = adapter.parse(request)
        tenant_id = provider.tenant_id
        session_id = await self._store.webhooks.session_of_call(
            tenant_id, provider.id, fact.call_id
        )
        if session_id is None and await self._placement_recorded(tenant_id, request):
            session_id = await self._store.webhooks.session_of_call(
                tenant_id, provider.id, fact.call_id
            )

        def entry(
            status: str, *, error: str | None = None, key: str | None = None
        ) -> NewWebhookLog:
            return NewWebhookLog(
                tenant_id=tenant_id,
                provider_type=provider.provider_type,
                provider_id=provider.id,
                payload=request.payload,
                headers=headers,
                signature_valid=True,
                processing_status=status,
                session_id=session_id,
                provider_call_id=fact.call_id,
                event_type=fact.raw_status,
                error=error,
                dedupe_key=key,
            )

        async def ignored(reason: str) -> WebhookOutcome:
            logged = await self._store.webhooks.log(entry("ignored", error=reason))
            if logged is None:  # only a dedupe key conflicts, and an ignored entry has none
                raise RuntimeError(f"webhook log refused an ignored {provider.provider_type} entry")
            return WebhookOutcome(logged, reason=reason)

        if session_id is None:
            return await ignored("no session of this provider has this call id")
        confirm = adapter.confirms_terminal and fact.terminal
        if confirm and await self._store.webhooks.seen(provider.id, fact.dedupe_key):
            return await ignored("replay")  # before asking the carrier again
        confirmed: bool | None = None
        if confirm:  # the carrier is asked before the session is locked
            session = await self._store.sessions.get(tenant_id, session_id)
            confirmed = await self._confirm(
                adapter, fact, session.agent_number, session.customer_number
            )
            if not confirmed:
                return await ignored("terminal state not confirmed by the carrier's status query")
        # the dedupe key and the fact in one transaction, the session's row locked: a failure
        # between them keeps neither, so the carrier's retry applies the fact; a replay
        # racing this one waits for the lock, then finds the key taken
        try:
            async with self._store.sessions.batch(tenant_id, session_id) as batch:
                session = batch.session
                decision = decide(session.status, fact, connected=session.connected_at is not None)
                status = "processed" if decision.path else "ignored"
                logged = await self._store.webhooks.log(
                    entry(
                        status,
                        key=fact.dedupe_key,
                        error=None if decision.path else decision.reason,
                    ),
                    conn=batch.conn,
                )
                if logged is None:
                    raise _Replay
                applied = await self._apply(provider, batch, fact, decision, confirmed)
        except _Replay:
            return await ignored("replay")
        if applied:
            log.info(
                "webhook.applied",
                provider_type=fact.provider_type.value,
                call_id=str(session_id),
                provider_status=fact.raw_status,
                status=applied[-1].value,
            )
        return WebhookOutcome(logged, applied, None if applied else decision.reason)

    async def _placement_recorded(self, tenant_id: uuid.UUID, request: WebhookRequest) -> bool:
        """Whether the session the callback URL names (``?session=``) is ``tenant_id``'s,
        was being placed (not ended, no call id yet) and has a call id now, after waiting
        up to ``placement_wait_s`` for it: the callback came before the create's answer."""
        try:
            session_id = uuid.UUID(request.query.get("session", ""))
        except ValueError:
            return False
        deadline = time.monotonic() + self._placement_wait_s
        while True:
            try:
                session = await self._store.sessions.get(tenant_id, session_id)
            except NotFound:  # none, or another tenant's: never waited for
                return False
            if session.provider_call_id is not None:
                return True
            if session.status.is_terminal or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_PLACEMENT_POLL_S)

    async def _confirm(
        self, adapter: CarrierAdapter, fact: CarrierFact, agent: str | None, customer: str | None
    ) -> bool:
        """Whether the carrier's status query agrees with a terminal fact (an unreachable
        carrier confirms nothing: FeatureUnavailable, so the carrier retries)."""
        ref = CallRef(fact.call_id, agent or "", customer or "")
        try:
            state = await adapter.status(ref)
        except CarrierError as exc:
            raise FeatureUnavailable(f"cannot confirm the call's state: {exc}") from exc
        raw = state.raw_status(fact.leg)
        return raw is not None and meaning(fact.provider_type, raw) is fact.meaning

    async def _apply(
        self,
        provider: StoredProvider,
        batch: SessionBatch,
        fact: CarrierFact,
        decision: Decision,
        confirmed: bool | None,
    ) -> tuple[CallStatus, ...]:
        """Record the fact on the locked session: its statuses in order, or one
        ``provider.status`` event when it changes none. Returns what was applied."""
        payload: dict[str, Any] = {
            "source": "provider",
            "provider": fact.provider_type.value,
            "provider_id": str(provider.id),
            "provider_status": fact.raw_status,
            "provider_call_id": fact.leg_call_id or fact.call_id,
            **({"leg": fact.leg.value} if fact.leg else {}),
            **({"sequence": fact.sequence} if fact.sequence is not None else {}),
            **({"confirmed": confirmed} if confirmed is not None else {}),
            **dict(fact.details),
        }
        if not decision.path:
            await batch.append_event(
                CallEventType.PROVIDER_STATUS, payload={**payload, "reason": decision.reason}
            )
            return ()
        current = batch.session.status
        applied: list[CallStatus] = []
        for status in decision.path:
            changes = {"end_reason": f"{fact.provider_type.value}: {fact.raw_status}"}
            await batch.transition(
                status,
                event_type=event_for(current, status, fact.leg),
                payload=payload,
                changes=changes if status.is_terminal else None,
            )
            applied.append(status)
            current = status
        return tuple(applied)


class _Replay(Exception):
    """The dedupe key was taken: roll the batch back (nothing of it is kept)."""

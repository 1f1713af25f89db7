"""The call use cases the API and the CLI call: initiate, end, set status, transfer, and
the reads of sessions and their events (statistics: :mod:`engine.app.stats`).

``CallService`` turns a request (plain dataclasses and enums, never an API model) into
domain decisions and store writes. Dialing goes through its :class:`~engine.app.ports.Dialer`
port (the click-to-call flow over ARI,
:class:`~engine.asterisk.flows.click_to_call.ClickToCall`); with ARI disabled there is
none: calls are stored and driven by the ERP (``PATCH .../status``), and transfers raise
:class:`FeatureUnavailable`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from engine.app.compliance import CallerIdChooser, OutboundPolicy
from engine.app.ports import Dialer
from engine.domain.call import CallStatus
from engine.domain.caller_id import CallerIdChoice
from engine.domain.click_to_call import Leg
from engine.domain.compliance import Finding
from engine.domain.event_types import CallEventType
from engine.domain.netpolicy import check_url
from engine.domain.phone import to_e164
from engine.domain.transfer import TransferType
from engine.errors import CallRejected, Conflict, FeatureUnavailable, InvalidInput, NotFound
from engine.store.records import (
    CallEvent,
    NewSession,
    SessionFilter,
    SessionPage,
    StoredSession,
    StoredTransfer,
    Tenant,
)
from engine.store.repositories import Store

__all__ = ["CallService", "InitiateCall", "SessionDetail", "request_fingerprint"]

log = structlog.get_logger(__name__)


def request_fingerprint(body: dict[str, Any]) -> str:
    """A stable hash of a request body, to tell a retry from a different request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class InitiateCall:
    """A click-to-call to place: ring the agent first, then the customer, then bridge.

    Numbers are as the client wrote them; :meth:`CallService.initiate` normalises them.
    """

    agent_number: str  # a phone number (E.164) or a PBX endpoint name
    customer_number: str  # E.164, or national with default_region
    default_region: str | None = None  # ISO country for numbers without +country code
    caller_id: str | None = None
    provider_id: uuid.UUID | None = None  # the tenant's default provider when None
    agent_id: str | None = None
    external_ref: str | None = None
    callback_url: str | None = None
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionDetail:
    """One session with its event timeline, oldest first."""

    session: StoredSession
    events: list[CallEvent]

    @property
    def events_pruned(self) -> bool:
        """Whether retention deleted the start of the timeline: every session's first
        event (``session.created``, seq 1) is written with it, so a timeline that does
        not start there lost its oldest events to ``retention.call_events_days``."""
        return not self.events or self.events[0].seq != 1


def _rejecting_rule(events: Sequence[CallEvent]) -> tuple[str, str]:
    """(rule, rule_type) of a rejected session, from its ``session.rejected`` event."""
    for event in events:
        if event.event_type == CallEventType.SESSION_REJECTED:
            return str(event.payload.get("rule", "")), str(event.payload.get("rule_type", ""))
    return "", ""


class CallService:
    def __init__(self, store: Store, dialer: Dialer | None = None) -> None:
        self._store = store
        self._dialer = dialer
        self._policy = OutboundPolicy(store)
        self._caller_ids = CallerIdChooser(store)

    async def initiate(
        self, tenant: Tenant, request: InitiateCall, *, idempotency_key: str | None = None
    ) -> tuple[StoredSession, bool]:
        """Validate and store a queued click-to-call, start dialing it; return it and
        whether it is new (a repeated Idempotency-Key returns the first, dialed once, as it
        is now). With a dialer the call is written behind (the journal) once stored: while
        the journal's backlog is full, new calls are refused (``DatabaseUnavailable``)."""
        if self._dialer is not None and not self._dialer.ready:
            raise FeatureUnavailable("Asterisk is not connected (ARI link down); try again shortly")
        region = request.default_region
        customer = to_e164(request.customer_number, field="customer_number", default_region=region)
        agent = request.agent_number
        if agent.startswith("+"):
            agent = to_e164(agent, field="agent_number")
        caller_id = (
            to_e164(request.caller_id, field="caller_id", default_region=region)
            if request.caller_id
            else None
        )
        callback_url = request.callback_url
        if callback_url is not None:  # not to the engine's neighbours (netpolicy)
            check_url(callback_url, tenant.policy, field="callback_url")
        provider_id = request.provider_id
        if provider_id is not None:
            try:
                provider = await self._store.providers.get(tenant.id, provider_id)
            except NotFound as exc:
                raise InvalidInput("provider_id", "unknown provider") from exc
            if not provider.is_active:
                raise InvalidInput("provider_id", f"provider {provider.name!r} is not active")
        else:
            default = await self._store.providers.default(tenant.id)
            provider_id = default.id if default is not None else None
        # compliance before anything is dialled; the caller ID of the customer leg
        verdict = await self._policy.check(tenant, customer)
        choice = None
        if verdict.allowed and caller_id is None:
            choice = await self._caller_ids.choose(tenant, customer, provider_id=provider_id)
            caller_id = choice.number if choice is not None else None
        new = NewSession(
            tenant_id=tenant.id,
            agent_number=agent,
            customer_number=customer,
            provider_id=provider_id,
            caller_id=caller_id,
            agent_id=request.agent_id,
            external_ref=request.external_ref,
            callback_url=callback_url,
            metadata=request.metadata,
            idempotency_key=idempotency_key,
            request_hash=request_fingerprint(dataclasses.asdict(request))
            if idempotency_key
            else None,
        )
        if self._dialer is not None and verdict.allowed:
            # its facts are written behind: no row is stored for a call the journal refuses
            self._store.journal.require_room()
        session, created = await self._store.sessions.create(
            new, tenant_callback_url=tenant.callback_url
        )
        if created:
            session = await self._screened(session, verdict.refusal, verdict.warnings, choice)
        if session.status is CallStatus.REJECTED:
            refused = session.end_reason or "rejected"
            rule = _rejecting_rule(await self._store.sessions.events(tenant.id, session.id))
            log.info("call.rejected", call_id=str(session.id), tenant_id=str(tenant.id))
            raise CallRejected(session.id, rule[0], rule[1], refused)
        if created and self._dialer is not None:
            # the dialer's facts for it are written behind until it releases the call
            self._store.sessions.adopt(session, tenant_callback_url=tenant.callback_url)
            self._dialer.start_call(session)
        log.info(
            "call.queued" if created else "call.idempotent_replay",
            call_id=str(session.id),
            tenant_id=str(tenant.id),
        )
        return session, created

    async def _screened(
        self,
        session: StoredSession,
        refusal: Finding | None,
        warnings: Sequence[Finding],
        choice: CallerIdChoice | None,
    ) -> StoredSession:
        """Record on a new session what the pre-dial check said: rejected (never dialled),
        or its warnings and the caller ID chosen."""
        tid, sid = session.tenant_id, session.id
        if refusal is not None:
            session, _ = await self._store.sessions.transition(
                tid,
                sid,
                CallStatus.REJECTED,
                event_type=CallEventType.SESSION_REJECTED,
                payload=refusal.as_payload(),
                changes={"end_reason": refusal.reason[:500]},
            )
            return session
        for warning in warnings:
            session, _ = await self._store.sessions.append_event(
                tid, sid, CallEventType.COMPLIANCE_WARNING, payload=warning.as_payload()
            )
        if choice is not None:
            session, _ = await self._store.sessions.append_event(
                tid, sid, CallEventType.CALLER_ID_CHOSEN, payload=choice.as_payload()
            )
        return session

    async def set_status(
        self,
        tenant: Tenant,
        session_id: uuid.UUID,
        status: CallStatus,
        *,
        reason: str | None = None,
        hangup_cause: int | None = None,
    ) -> tuple[StoredSession, CallEvent]:
        changes: dict[str, Any] = {}
        if hangup_cause is not None:
            changes["hangup_cause"] = hangup_cause
        if reason is not None and status.is_terminal:
            changes["end_reason"] = reason
        session, event = await self._store.sessions.transition(
            tenant.id,
            session_id,
            status,
            payload={"source": "api", **({"reason": reason} if reason else {})},
            changes=changes,
        )
        if session.status.is_terminal:
            # ended here, not by the dialer's facts: the journal need not keep it for them
            self._store.sessions.release(session_id)
        log.info(
            "call.status_set",
            call_id=str(session_id),
            tenant_id=str(tenant.id),
            status=status.value,
        )
        return session, event

    async def end(
        self, tenant: Tenant, session_id: uuid.UUID, *, reason: str | None = None
    ) -> StoredSession:
        """End a live call from the API: completed once connected, canceled before."""
        current = await self._store.sessions.get(tenant.id, session_id)
        if current.status.is_terminal:
            raise Conflict(f"session {session_id} already ended ({current.status.value})")
        reason = reason or "ended by API"
        if self._dialer is not None:
            # the telephony side hangs up every leg and records the end
            session = await self._dialer.end_call(current, reason)
        else:
            target = (
                CallStatus.COMPLETED
                if current.status is CallStatus.CONNECTED
                else CallStatus.CANCELED
            )
            session, _ = await self._store.sessions.transition(
                tenant.id,
                session_id,
                target,
                event_type=CallEventType.SESSION_ENDED,
                payload={"source": "api", "reason": reason},
                changes={"end_reason": reason},
            )
        log.info(
            "call.ended",
            call_id=str(session_id),
            tenant_id=str(tenant.id),
            status=session.status.value,
        )
        return session

    # -- transfers ------------------------------------------------------------------------------

    async def transfer(
        self,
        tenant: Tenant,
        session_id: uuid.UUID,
        kind: TransferType,
        target: str,
        leg: Leg = Leg.AGENT,
    ) -> StoredTransfer:
        """Transfer a connected call's ``leg`` (Conflict unless connected, InvalidInput for
        an unknown target, FeatureUnavailable without ARI). A target that is a phone number
        is an outbound leg: compliance refusing it is :class:`CallRejected` (field
        ``target``), and the call goes on untransferred."""
        session = await self._store.sessions.get(tenant.id, session_id)
        if session.status is not CallStatus.CONNECTED:
            raise Conflict(f"session {session_id} is {session.status.value}, not connected")
        if target.strip().startswith("+"):
            number = to_e164(target, field="target")
            refusal = (await self._policy.check(tenant, number)).refusal
            if refusal is not None:
                log.info("call.transfer_rejected", call_id=str(session_id), rule=refusal.rule)
                raise CallRejected(
                    session_id, refusal.rule, refusal.rule_type, refusal.reason, field="target"
                )
        transfer = await self._require_dialer().transfer(session, kind, target, leg)
        log.info(
            "call.transfer",
            call_id=str(session_id),
            tenant_id=str(tenant.id),
            type=kind.value,
            state=transfer.state,
        )
        return transfer

    async def complete_transfer(self, tenant: Tenant, session_id: uuid.UUID) -> StoredTransfer:
        session = await self._store.sessions.get(tenant.id, session_id)
        return await self._require_dialer().complete_transfer(session)

    async def cancel_transfer(self, tenant: Tenant, session_id: uuid.UUID) -> StoredTransfer:
        session = await self._store.sessions.get(tenant.id, session_id)
        return await self._require_dialer().cancel_transfer(session)

    def _require_dialer(self) -> Dialer:
        if self._dialer is None:
            raise FeatureUnavailable("transfers need Asterisk (ARI is not enabled)")
        return self._dialer

    # -- reads ----------------------------------------------------------------------------------

    async def get(self, tenant: Tenant, session_id: uuid.UUID) -> StoredSession:
        """The tenant's session (NotFound otherwise)."""
        return await self._store.sessions.get(tenant.id, session_id)

    async def detail(self, tenant: Tenant, session_id: uuid.UUID) -> SessionDetail:
        session = await self._store.sessions.get(tenant.id, session_id)
        events = await self._store.sessions.events(tenant.id, session_id)
        return SessionDetail(session, events)

    async def find(
        self, tenant: Tenant, filters: SessionFilter, *, limit: int, cursor: str | None = None
    ) -> SessionPage:
        """The tenant's sessions, newest first; ``filters.customer_number`` is normalised
        to E.164 first (an empty one filters nothing)."""
        number = filters.customer_number
        customer = to_e164(number, field="customer_number") if number else None
        filters = dataclasses.replace(filters, customer_number=customer)
        return await self._store.sessions.find(tenant.id, filters, limit=limit, cursor=cursor)

"""The call use cases the API and the CLI call: initiate, end, set status, transfer, and
the reads of sessions and their events (statistics: :mod:`engine.app.stats`); and the call
an agent places from the desk phone (the ``[ctc-agents]`` door,
:meth:`CallService.place_agent_dialled`).

Both outbound paths decide the customer's leg in one place, :meth:`CallService.customer_leg`:
the number as E.164, the provider, the pre-dial check (compliance: a refused call is stored
``rejected`` and never dialled) and the caller ID (a caller-ID profile's choice). Every call
to a customer passes there, click-to-calls and agent-dialled calls alike.

``CallService`` turns a request (plain dataclasses and enums, never an API model) into
domain decisions and store writes. Dialing goes through its :class:`~engine.app.ports.Dialer`
port (:class:`~engine.app.dialing.DialerRouter`: the click-to-call flow over ARI, or the
session's HTTP carrier); with ARI disabled, calls of the local Asterisk are stored and
driven by the ERP (``PATCH .../status``), and their transfers raise
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

from engine.app.agent_states import AgentStateService
from engine.app.call_end import end_in_store
from engine.app.compliance import CallerIdChooser, OutboundPolicy
from engine.app.forwarding import forward, owner_elsewhere
from engine.app.ports import CallQueue, Dialer, OwnerLink
from engine.domain.call import CallStatus, Direction
from engine.domain.caller_id import CallerIdChoice
from engine.domain.click_to_call import Leg
from engine.domain.compliance import Finding
from engine.domain.event_types import CallEventType
from engine.domain.netpolicy import check_url
from engine.domain.phone import to_e164
from engine.domain.transfer import TransferType
from engine.errors import (
    CallRejected,
    Conflict,
    FeatureUnavailable,
    InvalidInput,
    NotFound,
    StoreError,
)
from engine.store.guards import AgentGuard, AttemptsGuard, CreateGuard
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

__all__ = [
    "AgentDialledCall",
    "CallService",
    "CustomerLeg",
    "InitiateCall",
    "SessionDetail",
    "request_fingerprint",
]

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
class AgentDialledCall:
    """A call an agent placed from their desk phone: the dialplan's ``[ctc-agents]`` sent
    their channel to ``Stasis(ctc,agent,<number>[,<tenant>])``, where it waits unanswered
    for the engine to ring the customer."""

    tenant_slug: str
    dialled: str  # the number as the agent dialled it
    endpoint: str  # the agent's PBX endpoint (``agent1``): the session's agent_number
    channel_id: str  # the agent's channel, waiting in Stasis
    caller_number: str | None = None  # the caller ID the agent's phone presented
    default_region: str | None = None  # ISO country of numbers dialled without +country


@dataclasses.dataclass(frozen=True, slots=True)
class CustomerLeg:
    """Who a call to a customer rings and how: decided once for every outbound path."""

    customer_number: str  # E.164
    caller_id: str | None  # E.164, shown to the customer; None: calls.default_caller_id
    provider_id: uuid.UUID | None  # the carrier; None: the local Asterisk
    provider_type: str | None = None  # the provider's (a ProviderType value)
    refusal: Finding | None = None  # the pre-dial check's: the call is never dialled
    warnings: tuple[Finding, ...] = ()  # 'warn' rules that objected
    choice: CallerIdChoice | None = None  # the caller-ID profile's pick, when it chose
    attempts: AttemptsGuard | None = None  # a max_attempts rule's recount in the insert

    def guard(self, agent: AgentGuard | None = None) -> CreateGuard:
        """What the new session's insert decides under its locks (engine/store/guards.py):
        stored ``rejected`` at once when refused, today's attempts recounted, ``agent``
        reserved."""
        return CreateGuard(self.refusal, self.attempts, agent)

    @property
    def screened_clean(self) -> bool:
        """Whether the pre-dial check left nothing to record on the session."""
        return self.refusal is None and not self.warnings and self.choice is None


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
    """``queue``: with ``node.claim_queue`` on, where ``initiate`` leaves calls for any
    engine to claim (None: this engine dials what it receives); ``owners``: the engine
    that owns a session when it is another one (None: a lone engine)."""

    def __init__(
        self,
        store: Store,
        dialer: Dialer | None = None,
        *,
        queue: CallQueue | None = None,
        owners: OwnerLink | None = None,
    ) -> None:
        self._store = store
        self._dialer = dialer
        self.queue = queue
        self.owners = owners
        self._policy = OutboundPolicy(store)
        self._caller_ids = CallerIdChooser(store)
        self._agents = AgentStateService(store)

    async def initiate(
        self, tenant: Tenant, request: InitiateCall, *, idempotency_key: str | None = None
    ) -> tuple[StoredSession, bool]:
        """Validate and store a queued click-to-call, start dialing it; return it and
        whether it is new (a repeated Idempotency-Key returns the first, dialed once, as it
        is now). With a dialer the call is written behind (the journal) once stored: while
        the journal's backlog is full, new calls are refused (``DatabaseUnavailable``).
        A call the pre-dial check refuses is stored ``rejected`` and never dialled
        (:class:`CallRejected`, also for a repeat of its Idempotency-Key). With the claim
        queue, a call is stored with no owner for whichever engine claims it first, unless
        this engine would claim it first anyway (``CallQueue.take_here``)."""
        queue = self.queue
        if queue is None or not queue.take_here():
            return await self._initiate(tenant, request, queue, idempotency_key)
        try:  # this engine would claim it first anyway: dialled here at once
            return await self._initiate(tenant, request, None, idempotency_key)
        finally:
            queue.taken()  # live here now (or never stored): the room it held is the journal's

    async def _initiate(
        self,
        tenant: Tenant,
        request: InitiateCall,
        queue: CallQueue | None,
        idempotency_key: str | None,
    ) -> tuple[StoredSession, bool]:
        if queue is None and self._dialer is not None and not self._dialer.ready:
            raise FeatureUnavailable("Asterisk is not connected (ARI link down); try again shortly")
        agent = request.agent_number
        if agent.startswith("+"):
            agent = to_e164(agent, field="agent_number")
        callback_url = request.callback_url
        if callback_url is not None:  # not to the engine's neighbours (netpolicy)
            check_url(callback_url, tenant.policy, field="callback_url")
        leg = await self.customer_leg(
            tenant,
            request.customer_number,
            field="customer_number",
            default_region=request.default_region,
            caller_id=request.caller_id,
            provider_id=request.provider_id,
        )
        new = NewSession(
            tenant_id=tenant.id,
            agent_number=agent,
            customer_number=leg.customer_number,
            provider_id=leg.provider_id,
            caller_id=leg.caller_id,
            agent_id=request.agent_id,
            external_ref=request.external_ref,
            callback_url=callback_url,
            metadata=request.metadata,
            idempotency_key=idempotency_key,
            request_hash=request_fingerprint(dataclasses.asdict(request))
            if idempotency_key
            else None,
            # straight to the queue when nothing is to be recorded on it first (a claimer
            # may take it the moment it commits)
            unclaimed=queue is not None and leg.screened_clean,
        )
        if queue is None and self._dialer is not None and leg.refusal is None:
            # its facts are written behind: no row is stored for a call the journal refuses
            self._store.journal.require_room()
        session, created = await self._store.sessions.create(
            new,
            tenant_callback_url=tenant.callback_url,
            guard=leg.guard(await self._agent_guard(tenant, request.agent_id, agent)),
        )
        if created:
            session = await self._screened(session, leg)
        if session.status is CallStatus.REJECTED:
            refused = session.end_reason or "rejected"
            rule = _rejecting_rule(await self._store.sessions.events(tenant.id, session.id))
            log.info("call.rejected", call_id=str(session.id), tenant_id=str(tenant.id))
            raise CallRejected(session.id, rule[0], rule[1], refused)
        if created and queue is not None:
            if not new.unclaimed:  # screened first, as this engine's: now the queue's
                await self._store.claims.release(session.id)
        elif created and self._dialer is not None:
            if self._dialer.writes_behind(leg.provider_type):
                # the dialer's facts for it are written behind until it releases the call
                self._store.sessions.adopt(session, tenant_callback_url=tenant.callback_url)
            self._dialer.start_call(session)
        log.info(
            "call.queued" if created else "call.idempotent_replay",
            call_id=str(session.id),
            tenant_id=str(tenant.id),
        )
        return session, created

    async def _agent_guard(
        self, tenant: Tenant, agent_id: str | None, agent_number: str
    ) -> AgentGuard:
        """The reservation of a click-to-call's agent, named by the ERP's ``agent_id``, else
        by the number or endpoint rung (``agent_number``): logged ``ringing`` in the call's
        insert; busy (ringing, on a call, in wrap-up) refuses the call (:class:`AgentBusy`)
        only when named by ``agent_id`` (the same phone may place calls for several)."""
        named = agent_id is not None
        agent = agent_id if agent_id is not None else agent_number
        return await self._agents.call_guard(tenant.id, agent, refuse=named)

    async def customer_leg(
        self,
        tenant: Tenant,
        number: str,
        *,
        field: str,
        default_region: str | None = None,
        caller_id: str | None = None,
        provider_id: uuid.UUID | None = None,
    ) -> CustomerLeg:
        """The customer's leg of an outbound call (a click-to-call or a call an agent
        dialled): ``number`` as E.164 (InvalidInput naming ``field`` for what phonenumbers
        refuses), the provider (``provider_id``, else the tenant's default), what the
        pre-dial check (compliance) says, and the caller ID: the one asked for, else the
        tenant's caller-ID profile's choice for this number."""
        customer = to_e164(number, field=field, default_region=default_region)
        shown = (
            to_e164(caller_id, field="caller_id", default_region=default_region)
            if caller_id
            else None
        )
        if provider_id is not None:
            try:
                provider = await self._store.providers.get(tenant.id, provider_id)
            except NotFound as exc:
                raise InvalidInput("provider_id", "unknown provider") from exc
            if not provider.is_active:
                raise InvalidInput("provider_id", f"provider {provider.name!r} is not active")
            provider_type: str | None = provider.provider_type
        else:
            default = await self._store.providers.default(tenant.id)
            provider_id = default.id if default is not None else None
            provider_type = default.provider_type if default is not None else None
        # compliance before anything is dialled; the caller ID of the customer leg
        verdict, attempts = await self._policy.screen(tenant, customer)
        choice = None
        if verdict.allowed and shown is None:
            choice = await self._caller_ids.choose(tenant, customer, provider_id=provider_id)
            shown = choice.number if choice is not None else None
        return CustomerLeg(
            customer,
            shown,
            provider_id,
            provider_type,
            verdict.refusal,
            tuple(verdict.warnings),
            choice,
            attempts if verdict.allowed else None,
        )

    async def _screened(self, session: StoredSession, leg: CustomerLeg) -> StoredSession:
        """Record on a new session what the pre-dial check said: its warnings and the caller
        ID chosen (a refused one was stored ``rejected`` by its insert: nothing to add)."""
        tid, sid = session.tenant_id, session.id
        if session.status is CallStatus.REJECTED:
            return session
        for warning in leg.warnings:
            session, _ = await self._store.sessions.append_event(
                tid, sid, CallEventType.COMPLIANCE_WARNING, payload=warning.as_payload()
            )
        if leg.choice is not None:
            session, _ = await self._store.sessions.append_event(
                tid, sid, CallEventType.CALLER_ID_CHOSEN, payload=leg.choice.as_payload()
            )
        return session

    async def place_agent_dialled(self, call: AgentDialledCall) -> StoredSession:
        """Store the session of a call an agent dialled (direction ``outbound``) and start
        it: the agent's channel is answered and hears ringback while the customer rings.

        A number :meth:`customer_leg` refuses (phonenumbers, or the pre-dial check) ends
        the session ``rejected`` at once (``session.rejected``, the reason as its
        ``end_reason``): nothing is dialled, and the caller (the door) tells the agent.
        NotFound for an unknown tenant; FeatureUnavailable without a dialer or while it is
        not ready; DatabaseUnavailable while the journal is full.
        """
        dialer = self._dialer
        if dialer is None or not dialer.ready:
            raise FeatureUnavailable("Asterisk is not connected (ARI link down)")
        tenant = await self._store.tenants.by_slug(call.tenant_slug)
        leg: CustomerLeg | None = None
        invalid: InvalidInput | None = None
        try:
            leg = await self.customer_leg(
                tenant, call.dialled, field="dialled_number", default_region=call.default_region
            )
        except InvalidInput as exc:
            invalid = exc
        new = NewSession(
            tenant_id=tenant.id,
            direction=Direction.OUTBOUND,
            agent_number=call.endpoint,
            customer_number=leg.customer_number if leg is not None else None,
            provider_id=leg.provider_id if leg is not None else None,
            caller_id=leg.caller_id if leg is not None else None,
            caller_number=call.caller_number,
            dialed_number=call.dialled,
            agent_channel_id=call.channel_id,
            metadata={"door": "agent", "channel_id": call.channel_id},
        )
        refusal = leg.refusal if leg is not None else None
        if invalid is not None:
            refusal = Finding("e164", "invalid_number", f"{invalid.field}: {invalid.reason}")
        if refusal is not None:  # one insert, already rejected: never queued, never dialled
            session, _ = await self._store.sessions.create(
                new, tenant_callback_url=tenant.callback_url, guard=CreateGuard(refusal)
            )
            log.info(
                "call.agent_dialled_rejected",
                call_id=str(session.id),
                tenant_id=str(tenant.id),
                reason=refusal.reason,
            )
            return session
        if leg is None:  # customer_leg returned or raised InvalidInput: one of the two
            raise StoreError("customer_leg gave neither a leg nor a refusal")
        # written behind: the dialer's facts are the call's, as for an initiated call
        session = self._store.sessions.open_live(new, tenant_callback_url=tenant.callback_url)
        bound = log.bind(call_id=str(session.id), tenant_id=str(tenant.id))
        session = await self._screened(session, leg)
        dialer.start_call(session)
        bound.info("call.agent_dialled", endpoint=call.endpoint)
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
        link = owner_elsewhere(self.owners, current)
        if link is not None:  # its channels are on the owner's Asterisk
            await forward(link, current, tenant, {"op": "end", "reason": reason})
            return await self._store.sessions.get(tenant.id, session_id)
        reason = reason or "ended by API"
        if self._dialer is not None:
            # the telephony side hangs up every leg and records the end
            session = await self._dialer.end_call(current, reason)
        else:
            session = await end_in_store(self._store, current, reason)
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
        link = owner_elsewhere(self.owners, session)
        if link is not None:  # its channels are on the owner's Asterisk
            command = {"op": "transfer", "kind": kind.value, "target": target, "leg": leg.value}
            return await self._forwarded_transfer(link, session, tenant, command)
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
        link = owner_elsewhere(self.owners, session)
        if link is not None:
            command = {"op": "transfer_complete"}
            return await self._forwarded_transfer(link, session, tenant, command)
        return await self._require_dialer().complete_transfer(session)

    async def cancel_transfer(self, tenant: Tenant, session_id: uuid.UUID) -> StoredTransfer:
        session = await self._store.sessions.get(tenant.id, session_id)
        link = owner_elsewhere(self.owners, session)
        if link is not None:
            command = {"op": "transfer_cancel"}
            return await self._forwarded_transfer(link, session, tenant, command)
        return await self._require_dialer().cancel_transfer(session)

    async def _forwarded_transfer(
        self, link: OwnerLink, session: StoredSession, tenant: Tenant, command: dict[str, Any]
    ) -> StoredTransfer:
        """A transfer operation carried out by the session's owner; the transfer as it
        stored it."""
        result = await forward(link, session, tenant, command)
        return await self._store.transfers.get(tenant.id, uuid.UUID(str(result["transfer_id"])))

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

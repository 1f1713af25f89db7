"""Call operations the API (and later the telephony side) ask for.

``CallService`` turns a validated request into domain decisions and store writes. It is
the one seam where dialing hooks in: the Asterisk issue gives it a dialer that starts the
agent leg once the queued session is stored.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Protocol

import structlog

from engine.api.models import InitiateIn
from engine.domain.call import CallStatus
from engine.domain.event_types import CallEventType
from engine.domain.netpolicy import check_url
from engine.domain.phone import to_e164
from engine.errors import AsteriskError, Conflict, InvalidInput, NotFound
from engine.store.records import CallEvent, NewSession, StoredSession
from engine.store.repositories import Store
from engine.store.tenants import Tenant
from engine.store.transfers import StoredTransfer

__all__ = ["CallService", "Dialer", "request_fingerprint"]

log = structlog.get_logger(__name__)


def request_fingerprint(body: dict[str, Any]) -> str:
    """A stable hash of a request body, to tell a retry from a different request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Dialer(Protocol):
    """What places and ends calls on a telephony backend (the ARI Stasis app)."""

    @property
    def ready(self) -> bool: ...

    def start_call(self, session: StoredSession) -> None:
        """Begin dialing a stored, queued session (in the background)."""

    async def end_call(self, session: StoredSession, reason: str) -> StoredSession:
        """Hang up every leg and end the session; return it as stored."""
        ...

    async def transfer(
        self, session: StoredSession, kind: str, target: str, leg: str = "agent"
    ) -> StoredTransfer:
        """Start a blind or attended transfer of a connected call."""
        ...

    async def complete_transfer(self, session: StoredSession) -> StoredTransfer: ...

    async def cancel_transfer(self, session: StoredSession) -> StoredTransfer: ...


class CallService:
    def __init__(self, store: Store, dialer: Dialer | None = None) -> None:
        self._store = store
        self.dialer = dialer

    async def initiate(
        self, tenant: Tenant, request: InitiateIn, *, idempotency_key: str | None = None
    ) -> tuple[StoredSession, bool]:
        """Validate and store a queued click-to-call, start dialing it; return it and
        whether it is new (a repeated Idempotency-Key returns the first, dialed once)."""
        if self.dialer is not None and not self.dialer.ready:
            raise AsteriskError("Asterisk is not connected (ARI link down); try again shortly")
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
        callback_url = str(request.callback_url) if request.callback_url else None
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
            request_hash=request_fingerprint(request.model_dump(mode="json"))
            if idempotency_key
            else None,
        )
        session, created = await self._store.sessions.create(new)
        if created and self.dialer is not None:
            self.dialer.start_call(session)
        log.info(
            "call.queued" if created else "call.idempotent_replay",
            call_id=str(session.id),
            tenant_id=str(tenant.id),
        )
        return session, created

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
        if self.dialer is not None:
            # the telephony side hangs up every leg and records the end
            session = await self.dialer.end_call(current, reason)
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
        self, tenant: Tenant, session_id: uuid.UUID, kind: str, target: str, leg: str = "agent"
    ) -> StoredTransfer:
        """Transfer a connected call's `leg` (409 if not connected, 422 unknown target)."""
        session = await self._store.sessions.get(tenant.id, session_id)
        if session.status is not CallStatus.CONNECTED:
            raise Conflict(f"session {session_id} is {session.status.value}, not connected")
        transfer = await self._require_dialer().transfer(session, kind, target, leg)
        log.info(
            "call.transfer",
            call_id=str(session_id),
            tenant_id=str(tenant.id),
            type=kind,
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
        if self.dialer is None:
            raise AsteriskError("transfers need Asterisk (ARI is not enabled)")
        return self.dialer

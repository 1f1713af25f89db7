"""Click-to-calls placed through an HTTP carrier (Twilio, Exotel, Vonage, mCube) instead of
the local Asterisk, with failover between the tenant's carriers that never places two live
calls for one session.

:class:`CarrierDialer` is the :class:`~engine.app.ports.Dialer` of sessions whose provider
is an HTTP carrier (:class:`~engine.app.dialing.DialerRouter` sends them here). Placing a
call is one request to the carrier, which rings the agent, then the customer, and bridges
them its own way; what follows arrives as the carrier's webhooks
(:mod:`engine.app.webhooks`), so the session's statuses and events are the same as over
Asterisk. The carrier's call id is stored as ``provider_call_id``; its raw status travels on
every event's payload (``provider_status``).

Which provider: the session's own (the one asked for, else the tenant's default), then the
tenant's other active HTTP carriers in :func:`~engine.domain.failover.order_candidates`
order (priority, the default first among equals, weight). A provider is skipped while its
circuit breaker is open (:class:`ProviderBreakers`) or while it carries
``max_concurrent_calls`` live sessions. Each attempt's outcome goes to
:func:`~engine.domain.failover.decide`: NEXT tries the next provider, RECONCILE first looks
for a call the carrier may have created (its list or status query) and hangs up what it
finds (where the carrier has no lookup it waits out the ring time, ``reconcile_wait_s``),
STOP keeps the call. A found call that cannot be hung up (the carrier offers no hangup)
becomes the session's call: ringing the customer through another carrier would be a
second call. Every attempt is a ``provider.attempt`` event.

A placement the engine was cut off in (a crash, a stop past its grace) leaves a session not
ended and without a call id. On start the engine resumes them
(:meth:`CarrierDialer.resume`): each candidate carrier's lookup is asked for a live call of
the session, which is adopted (its id recorded: its webhooks apply from then on); where no
carrier has one, the placement starts again from the failover list. A carrier without a
lookup (or whose lookup fails) is waited out first, as after an uncertain create, so nothing
is dialled twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from engine.app.call_end import end_in_store
from engine.app.ports import Carriers
from engine.app.provider_breakers import ProviderBreakers, config_number
from engine.domain.call import CallStatus
from engine.domain.carriers import StatusMeaning, meaning
from engine.domain.click_to_call import Leg
from engine.domain.event_types import CallEventType
from engine.domain.failover import (
    AttemptOutcome,
    Candidate,
    FailoverDecision,
    decide,
    order_candidates,
)
from engine.domain.ivr import TransferTargetType
from engine.domain.phone import to_e164
from engine.domain.providers import HTTP_CARRIERS, ProviderType
from engine.domain.transfer import TransferState, TransferType
from engine.errors import (
    CarrierAuthFailed,
    CarrierError,
    CarrierRateLimited,
    CarrierRefused,
    CarrierUnsupported,
    ConfigError,
    Conflict,
    IllegalTransition,
    InvalidInput,
    SecretsError,
)
from engine.providers.base import CallRef, CarrierAdapter, PlaceCall
from engine.store.records import NewTransfer, StoredProvider, StoredSession, StoredTransfer
from engine.store.repositories import Store

__all__ = ["RESUME_AFTER", "CarrierDialer", "attempt_outcome"]

log = structlog.get_logger(__name__)

_DEFAULT_RING_S = 30
# how old a session without a call id must be before it counts as a cut-off placement
# (a placement of this engine that old is tracked as in flight, never resumed)
RESUME_AFTER = timedelta(seconds=5)


def attempt_outcome(error: CarrierError) -> AttemptOutcome:
    """The failover outcome of a create the carrier did not accept."""
    if error.call_may_exist:
        return AttemptOutcome.UNCERTAIN
    match error:
        case CarrierRateLimited():
            return AttemptOutcome.RATE_LIMITED
        case CarrierAuthFailed():
            return AttemptOutcome.AUTH_FAILED
        case CarrierRefused():
            return AttemptOutcome.REFUSED
    return AttemptOutcome.NOT_SENT  # no connection made, or not offered by the carrier


@dataclasses.dataclass(frozen=True, slots=True)
class _Attempt:
    outcome: AttemptOutcome
    reason: str
    call_id: str | None = None
    raw_status: str | None = None
    counted: bool = True  # whether the provider's breaker hears of it


class CarrierDialer:
    """The Dialer of click-to-calls carried by an HTTP carrier (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        carriers: Carriers,
        breakers: ProviderBreakers,
        *,
        pick: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._carriers = carriers
        self._breakers = breakers
        self._pick = pick
        self._tasks: set[asyncio.Task[None]] = set()
        self._placing: set[uuid.UUID] = set()  # the sessions this engine is placing now

    @property
    def ready(self) -> bool:
        return True  # each attempt finds out about its carrier

    def start_call(self, session: StoredSession) -> None:
        task = asyncio.create_task(self._place_logged(session), name=f"carrier-call-{session.id}")
        self._tasks.add(task)
        self._placing.add(session.id)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._placing.discard(session.id))

    async def drain(self) -> None:
        """Wait for the calls being placed (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, grace_s: float = 10.0) -> None:
        """The engine stops: the calls being placed get ``grace_s`` to finish, then are
        cancelled (a session cut off mid-placement stays queued, logged)."""
        try:
            await asyncio.wait_for(self.drain(), grace_s)
        except TimeoutError:
            for task in list(self._tasks):
                log.warning("carrier.place_cut_off", task=task.get_name())
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _place_logged(self, session: StoredSession) -> None:
        try:
            await self.place(session)
        except Exception:  # a background task: nobody else would hear of it
            log.exception("carrier.place_failed", call_id=str(session.id))
            await self._fail(session, "internal error while placing the call")

    async def place(self, session: StoredSession) -> StoredSession:
        """Try the session's candidates in order until one carrier has the call; end the
        session ``failed`` when none does. Returns the session as stored."""
        since = datetime.now(UTC) - timedelta(minutes=1)
        reasons: list[str] = []
        for provider in await self._candidates(session):
            attempt = await self._attempt(session, provider)
            decision = decide(attempt.outcome)
            if attempt.counted:
                self._breakers.record(provider, attempt.outcome)
            reconciled: list[str] = []
            keep: str | None = None
            if decision is FailoverDecision.RECONCILE:
                reconciled, keep, note = await self._reconcile(session, provider, since)
                attempt = dataclasses.replace(attempt, reason=f"{attempt.reason}; {note}")
            call_id = attempt.call_id or keep
            session = await self._record(session, provider, attempt, decision, call_id, reconciled)
            if call_id is not None:
                return await self._placed(session, provider, call_id)
            if decision is FailoverDecision.STOP:
                return await self._fail(session, attempt.reason)
            reasons.append(f"{provider.name}: {attempt.reason}")
        return await self._fail(session, "no provider placed the call: " + "; ".join(reasons))

    async def resume(self, older_than: timedelta = RESUME_AFTER) -> list[StoredSession]:
        """Find or place the call of every placement a stopped engine cut off (see the
        module docstring); the sessions as they end up."""
        return await self.resume_sessions(await self._store.sessions.placements_cut_off(older_than))

    async def resume_sessions(self, sessions: list[StoredSession]) -> list[StoredSession]:
        """:meth:`resume` for these cut-off placements (one at a time: a call adopted for
        one is never another's), skipping any this engine is placing now."""
        resumed: list[StoredSession] = []
        for session in sessions:
            if session.id in self._placing:
                continue
            self._placing.add(session.id)
            try:
                resumed.append(await self._resume(session))
            except Exception:  # one session's trouble does not keep the others queued
                log.exception("carrier.resume_failed", call_id=str(session.id))
                resumed.append(await self._fail(session, "internal error while resuming"))
            finally:
                self._placing.discard(session.id)
        return resumed

    async def _resume(self, session: StoredSession) -> StoredSession:
        """Adopt the live call a candidate carrier has of ``session``, else place it again
        (a ``provider.attempt`` event says why)."""
        log.info("carrier.resume", call_id=str(session.id))
        since = session.created_at - timedelta(minutes=1)
        notes: list[str] = []
        for provider in await self._candidates(session):
            call_id, note = await self._live_call(session, provider, since)
            notes.append(f"{provider.name}: {note}")
            if call_id is not None:
                attempt = _Attempt(
                    AttemptOutcome.CREATED, f"resumed after a restart: {note}", call_id
                )
                session = await self._record(
                    session, provider, attempt, FailoverDecision.STOP, call_id, []
                )
                return await self._placed(session, provider, call_id)
        session, _ = await self._store.sessions.append_event(
            session.tenant_id,
            session.id,
            CallEventType.PROVIDER_ATTEMPT,
            payload={
                "outcome": AttemptOutcome.NOT_SENT.value,
                "decision": FailoverDecision.NEXT.value,
                "reason": (
                    "resumed after a restart, no carrier has the call, placed again: "
                    + "; ".join(notes)
                )[:500],
            },
        )
        return await self.place(session)

    async def _live_call(
        self, session: StoredSession, provider: StoredProvider, since: datetime
    ) -> tuple[str | None, str]:
        """A live call ``provider``'s carrier has of ``session`` (no other session's), and
        what was found. A carrier without a lookup, or whose lookup fails, is waited out:
        whatever it made rings out ``reconcile_wait_s`` after the session was created."""
        secrets = await self._store.providers.secrets(provider.tenant_id, provider.id)
        adapter = self._adapter(provider, secrets)
        ring = int(config_number(provider, "ring_timeout_s", _DEFAULT_RING_S))
        request = _place_call(session, ring)
        try:
            found = await adapter.find(request, since)
            for call_id in found:
                owner = await self._store.webhooks.session_of_call(
                    session.tenant_id, provider.id, call_id
                )
                if owner is not None:
                    continue  # another session's call
                ref = CallRef(call_id, request.agent_number, request.customer_number)
                raw = (await adapter.status(ref)).raw_status()
                if raw is not None and _live(provider, raw):
                    return call_id, f"found live call {call_id}, adopted"
            return None, f"no live call among {len(found)} found"
        except CarrierError as exc:
            wait = config_number(provider, "reconcile_wait_s", 2.0 * ring)
            age = (datetime.now(UTC) - session.created_at).total_seconds()
            await asyncio.sleep(max(0.0, wait - age))
            return None, f"no lookup ({exc}): waited until {wait:g} s after the session began"

    async def _candidates(self, session: StoredSession) -> list[StoredProvider]:
        """The session's provider first, then the tenant's other active HTTP carriers."""
        providers = [
            p
            for p in await self._store.providers.all(session.tenant_id)
            if p.is_active and p.provider_type in HTTP_CARRIERS
        ]
        first = [p for p in providers if p.id == session.provider_id]
        rest = [p for p in providers if p.id != session.provider_id]
        by_id = {p.id: p for p in rest}
        # the tenant's default first among equals: one priority step ahead of its peers
        ordered = order_candidates(
            [Candidate(p.id, p.priority * 2 + (0 if p.is_default else 1), p.weight) for p in rest],
            self._pick(),
        )
        return first + [by_id[c.provider_id] for c in ordered]

    def _adapter(self, provider: StoredProvider, secrets: Any) -> CarrierAdapter:
        return self._carriers.adapter(provider, secrets)

    async def _attempt(self, session: StoredSession, provider: StoredProvider) -> _Attempt:
        limit = provider.max_concurrent_calls
        if limit is not None:
            live = await self._store.providers.live_calls(provider.id, besides=session.id)
            if live >= limit:
                return _Attempt(
                    AttemptOutcome.NOT_SENT,
                    f"at max_concurrent_calls ({live} of {limit})",
                    counted=False,
                )
        try:
            secrets = await self._store.providers.secrets(provider.tenant_id, provider.id)
            adapter = self._adapter(provider, secrets)
            ring = int(config_number(provider, "ring_timeout_s", _DEFAULT_RING_S))
            allowed = self._breakers.allows(provider)
        except (ConfigError, InvalidInput, SecretsError) as exc:
            # our row is wrong, the carrier was not asked: nothing for its breaker
            return _Attempt(AttemptOutcome.NOT_SENT, f"misconfigured: {exc}", counted=False)
        if not allowed:
            return _Attempt(AttemptOutcome.NOT_SENT, "circuit breaker open", counted=False)
        request = _place_call(session, ring)
        try:
            placed = await adapter.place(request)
        except CarrierError as exc:
            return _Attempt(attempt_outcome(exc), str(exc))
        return _Attempt(AttemptOutcome.CREATED, "accepted", placed.call_id, placed.raw_status)

    async def _reconcile(
        self, session: StoredSession, provider: StoredProvider, since: datetime
    ) -> tuple[list[str], str | None, str]:
        """After an uncertain create: the calls the carrier made for it, hung up (ids), the
        one kept as the session's when it cannot be hung up, and what was done."""
        secrets = await self._store.providers.secrets(provider.tenant_id, provider.id)
        adapter = self._adapter(provider, secrets)
        request = _place_call(session, int(config_number(provider, "ring_timeout_s", 30)))
        try:
            found = await adapter.find(request, since)
        except CarrierUnsupported:
            wait = config_number(provider, "reconcile_wait_s", 2.0 * request.ring_timeout_s)
            await asyncio.sleep(wait)  # what it may have created has rung out by then
            return [], None, f"no lookup: waited {wait:g} s for any call to ring out"
        except CarrierError as exc:
            wait = config_number(provider, "reconcile_wait_s", 2.0 * request.ring_timeout_s)
            await asyncio.sleep(wait)
            return [], None, f"lookup failed ({exc}): waited {wait:g} s"
        ended: list[str] = []
        for call_id in found:
            # a lookup by agent and day also finds other sessions' calls: never those
            owner = await self._store.webhooks.session_of_call(
                session.tenant_id, provider.id, call_id
            )
            if owner is not None and owner != session.id:
                continue
            ref = CallRef(call_id, request.agent_number, request.customer_number)
            try:
                await adapter.end(ref)
            except CarrierUnsupported:
                return ended, call_id, f"found {call_id}, which this carrier cannot hang up: kept"
            except CarrierRefused:
                continue  # the carrier says there is nothing to hang up: it has ended
            except CarrierError as exc:
                return ended, call_id, f"found {call_id}, hangup failed ({exc}): kept"
            ended.append(call_id)
        return ended, None, f"found {len(ended)} call(s) of this session, hung up"

    async def _record(
        self,
        session: StoredSession,
        provider: StoredProvider,
        attempt: _Attempt,
        decision: FailoverDecision,
        call_id: str | None,
        reconciled: list[str],
    ) -> StoredSession:
        payload: dict[str, Any] = {
            "provider": provider.name,
            "provider_id": str(provider.id),
            "provider_type": provider.provider_type,
            "outcome": attempt.outcome.value,
            "decision": decision.value,
            "reason": attempt.reason[:500],
            **({"provider_status": attempt.raw_status} if attempt.raw_status else {}),
            **({"provider_call_id": call_id} if call_id else {}),
            **({"reconciled": reconciled} if reconciled else {}),
        }
        changes = {"provider_id": provider.id, "provider_call_id": call_id} if call_id else None
        session, _ = await self._store.sessions.append_event(
            session.tenant_id,
            session.id,
            CallEventType.PROVIDER_ATTEMPT,
            payload=payload,
            changes=changes,
        )
        log.info(
            "carrier.attempt",
            call_id=str(session.id),
            provider_id=str(provider.id),
            outcome=attempt.outcome.value,
            decision=decision.value,
        )
        return session

    async def _placed(
        self, session: StoredSession, provider: StoredProvider, call_id: str
    ) -> StoredSession:
        """The carrier has the call; if the API ended the session meanwhile, hang it up."""
        if not session.status.is_terminal:
            return session
        secrets = await self._store.providers.secrets(provider.tenant_id, provider.id)
        try:
            await self._adapter(provider, secrets).end(_ref(session, call_id))
        except CarrierError as exc:
            log.warning("carrier.end_after_cancel_failed", call_id=str(session.id), error=str(exc))
        return session

    async def _fail(self, session: StoredSession, reason: str) -> StoredSession:
        try:
            session, _ = await self._store.sessions.transition(
                session.tenant_id,
                session.id,
                CallStatus.FAILED,
                event_type=CallEventType.CALL_FAILED,
                payload={"source": "provider", "reason": reason[:500]},
                changes={"end_reason": reason[:500]},
            )
        except IllegalTransition:  # ended meanwhile (the API)
            return await self._store.sessions.get(session.tenant_id, session.id)
        return session

    # -- the Dialer's other operations ------------------------------------------------------

    async def _session_adapter(self, session: StoredSession) -> tuple[CarrierAdapter, CallRef]:
        if session.provider_id is None or session.provider_call_id is None:
            raise Conflict(f"session {session.id} has no carrier call yet")
        provider = await self._store.providers.get(session.tenant_id, session.provider_id)
        secrets = await self._store.providers.secrets(session.tenant_id, provider.id)
        return self._adapter(provider, secrets), _ref(session, session.provider_call_id)

    async def _unsupported(self, session: StoredSession, what: str) -> CarrierUnsupported:
        kind = "carrier"
        if session.provider_id is not None:
            provider = await self._store.providers.get(session.tenant_id, session.provider_id)
            kind = provider.provider_type
        return CarrierUnsupported(kind, f"{what} not supported by this carrier")

    async def end_call(self, session: StoredSession, reason: str) -> StoredSession:
        """Hang up through the carrier (CarrierUnsupported where it has no hangup), then end
        the session: completed once connected, canceled before. A call still being placed
        is canceled now and hung up as soon as the carrier has it."""
        if session.provider_call_id is not None:
            adapter, ref = await self._session_adapter(session)
            await adapter.end(ref)
        return await end_in_store(self._store, session, reason)

    async def transfer(
        self, session: StoredSession, kind: TransferType, target: str, leg: Leg
    ) -> StoredTransfer:
        """A blind transfer of the customer to a number, replacing the agent (what the
        carriers that transfer offer); CarrierUnsupported for anything else."""
        if kind is not TransferType.BLIND or leg is not Leg.AGENT:
            raise await self._unsupported(
                session, "a transfer other than blind replacing the agent is"
            )
        number = to_e164(target, field="target")
        adapter, ref = await self._session_adapter(session)
        await adapter.transfer(ref, number)
        transfer = await self._store.transfers.create(
            NewTransfer(
                tenant_id=session.tenant_id,
                session_id=session.id,
                transfer_type=kind,
                from_leg=Leg.CUSTOMER.value,
                target_type=TransferTargetType.NUMBER,
                target=number,
                target_channel_id=None,
            )
        )
        return await self._store.transfers.update(transfer.id, TransferState.COMPLETED)

    async def complete_transfer(self, session: StoredSession) -> StoredTransfer:
        raise await self._unsupported(session, "an attended transfer is")

    async def cancel_transfer(self, session: StoredSession) -> StoredTransfer:
        raise await self._unsupported(session, "an attended transfer is")


def _live(provider: StoredProvider, raw_status: str) -> bool:
    found = meaning(ProviderType(provider.provider_type), raw_status)
    return found in (StatusMeaning.CREATED, StatusMeaning.RINGING, StatusMeaning.ANSWERED)


def _ref(session: StoredSession, call_id: str) -> CallRef:
    return CallRef(call_id, session.agent_number or "", session.customer_number or "")


def _place_call(session: StoredSession, ring_timeout_s: int) -> PlaceCall:
    if session.agent_number is None or session.customer_number is None:
        raise InvalidInput("agent_number", f"session {session.id} lacks a number to dial")
    return PlaceCall(
        session_id=session.id,
        agent_number=session.agent_number,
        customer_number=session.customer_number,
        caller_id=session.caller_id,
        ring_timeout_s=ring_timeout_s,
    )

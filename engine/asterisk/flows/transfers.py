"""Carries out transfers of connected click-to-calls over ARI.

The domain (:mod:`engine.domain.transfer`) decides; this module makes the ARI calls and
writes the ``call_transfer`` row and a ``call_event`` for every step. The Stasis app calls
it while holding the session's lock, so a transfer's steps never interleave with the
call's other facts.

Ids derive from the session *and* the transfer (a session may be transferred again and
again, one transfer in flight at a time): the target channel is
``c2c-<session>-target-<transfer>``, the consult bridge ``c2c-<session>-consult-<transfer>``
(:mod:`engine.asterisk.naming`), with ``<transfer>`` the ``call_transfer`` row's id. Both
are stored on the row. The legs
a transfer acts on are the session's *current* channels (``agent_channel_id``,
``customer_channel_id``): after a completed transfer they are its target's.

The call's session is written behind (:mod:`engine.store.journal`) while the transfer row is
written at once, so every write of the row first awaits the journal's flush: PostgreSQL
holds the session's facts before the transfer step that followed them, and what an engine
that stops leaves there is a prefix of what happened (the resync carries on from it).
The transfer in flight of each call this runner has seen is kept in memory (every change
of a click-to-call's transfer row is made here), so the facts around a call's end look
nothing up.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

import structlog

from engine.asterisk.flows.dialing import dial_string
from engine.asterisk.links.ari import AriClient, AriNotFound
from engine.asterisk.naming import (
    call_bridge_id,
    consult_bridge_id,
    current_leg_channel,
    target_channel_id,
    target_channel_variables,
    target_stasis_args,
)
from engine.config.settings import CallSettings
from engine.domain.call import CallStatus
from engine.domain.click_to_call import Leg
from engine.domain.event_types import CallEventType, leg_released, leg_replaced
from engine.domain.ivr import TransferTargetType
from engine.domain.phone import to_e164
from engine.domain.transfer import (
    AdoptTarget,
    BridgeTarget,
    ConsultBridge,
    DestroyConsult,
    Finish,
    HangupTarget,
    HoldCustomer,
    OriginateTarget,
    ReleaseLeg,
    ReturnAgent,
    SetState,
    TransferFact,
    TransferState,
    TransferStep,
    TransferType,
    UnholdCustomer,
    decide_transfer,
    other_leg,
    start_transfer,
)
from engine.errors import AriError, Conflict, InvalidInput
from engine.store.records import NewTransfer, StoredSession, StoredTransfer
from engine.store.repositories import Store

__all__ = ["TransferRunner", "replaced_leg"]

log = structlog.get_logger(__name__)

_ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def replaced_leg(transfer: StoredTransfer) -> Leg:
    """The leg the transfer replaces: the other one than ``from_leg`` (the leg that stays)."""
    return other_leg(Leg(transfer.from_leg))


def _target(transfer: StoredTransfer) -> str:
    if transfer.target_channel_id is None:  # set by start() on every row it creates
        raise RuntimeError(f"transfer {transfer.id} has no target channel")
    return transfer.target_channel_id


def _consult(transfer: StoredTransfer) -> str:
    return transfer.consult_bridge_id or consult_bridge_id(transfer.session_id, transfer.id)


class TransferRunner:
    """Starts transfers and carries out their steps (the caller holds the session lock)."""

    def __init__(
        self,
        ari: AriClient,
        store: Store,
        calls: CallSettings,
        *,
        leg_variables: Mapping[str, str] | None = None,
    ) -> None:
        self._ari = ari
        self._store = store
        self._calls = calls
        # set on every target dialed, as on the legs (the hangup handler)
        self._leg_variables = dict(leg_variables or {})
        # each followed call's transfer in flight (None: none), until forget()
        self._in_flight: dict[uuid.UUID, StoredTransfer | None] = {}

    def new_call(self, session_id: uuid.UUID) -> None:
        """A call that has just been created: it has no transfer."""
        self._in_flight[session_id] = None

    def follows(self, session_id: uuid.UUID) -> bool:
        """Whether the call's transfer in flight is known here (until :meth:`forget`)."""
        return session_id in self._in_flight

    def forget(self, session_id: uuid.UUID) -> None:
        """The call is over: its transfer is read from PostgreSQL again if ever asked."""
        self._in_flight.pop(session_id, None)

    # -- requests (the caller holds the session lock) -----------------------------------------

    async def begin(
        self, session: StoredSession, kind: TransferType, target: str, leg: Leg = Leg.AGENT
    ) -> StoredTransfer:
        if session.status is not CallStatus.CONNECTED:
            raise Conflict(
                f"session {session.id} is {session.status.value}; only connected calls transfer"
            )
        if await self.live_transfer(session) is not None:
            raise Conflict(f"session {session.id} already has a transfer in flight")
        target_type, target, endpoint = await self._resolve(target)
        transfer_id = uuid.uuid4()
        await self._store.journal.flush()  # see the module docstring
        transfer = await self._store.transfers.create(
            NewTransfer(
                id=transfer_id,
                tenant_id=session.tenant_id,
                session_id=session.id,
                transfer_type=kind,
                # the leg that stays and is moved to the target; ``leg`` is released
                from_leg=other_leg(leg).value,
                target_type=target_type,
                target=target,
                target_channel_id=target_channel_id(session.id, transfer_id),
                consult_bridge_id=consult_bridge_id(session.id, transfer_id)
                if kind is TransferType.ATTENDED
                else None,
            )
        )
        self._in_flight[session.id] = transfer
        await self._event(
            session,
            CallEventType.TRANSFER_REQUESTED,
            transfer,
            {"type": kind.value, "target": target, "endpoint": endpoint, "leg": leg},
        )
        return await self._run(session, transfer, start_transfer(kind), endpoint=endpoint)

    async def live_transfer(self, session: StoredSession) -> StoredTransfer | None:
        """The session's transfer in flight (initiated or consulting), if any."""
        if session.id in self._in_flight:
            return self._in_flight[session.id]
        transfer = await self._store.transfers.live(session.id)
        self._in_flight[session.id] = transfer
        return transfer

    async def on_fact(self, session: StoredSession, fact: TransferFact) -> StoredTransfer | None:
        """Apply a telephony or API fact to the live transfer; None when there is none or
        the fact does not apply in its state."""
        transfer = await self.live_transfer(session)
        if transfer is None:
            return None
        steps = decide_transfer(
            transfer.transfer_type,
            transfer.state,
            fact,
            replaced_leg(transfer),
        )
        if steps is None:
            return None
        return await self._run(session, transfer, steps)

    async def abort(self, session: StoredSession, reason: str) -> None:
        """The call ended while a transfer was in flight: release the target, close the row."""
        transfer = await self.live_transfer(session)
        if transfer is None:
            return
        with contextlib.suppress(AriError):
            await self._ari.hangup(_target(transfer))
        with contextlib.suppress(AriError):
            await self._ari.destroy_bridge(_consult(transfer))
        await self._update(transfer, TransferState.FAILED, failure_cause=reason[:500])
        await self._event(session, CallEventType.TRANSFER_FAILED, transfer, {"reason": reason})

    async def request_fact(
        self, session: StoredSession, fact: TransferFact, what: str
    ) -> StoredTransfer:
        """``complete``/``cancel`` from the API: 409 without a transfer in the right state."""
        done = await self.on_fact(session, fact)
        if done is None:
            raise Conflict(f"session {session.id} has no attended transfer to {what}")
        return done

    # -- carrying out -------------------------------------------------------------------------

    async def _resolve(self, target: str) -> tuple[TransferTargetType, str, str]:
        """(target_type, normalised target, dial string); InvalidInput if unknown."""
        if target.startswith("+"):
            number = to_e164(target, field="target")
            return TransferTargetType.NUMBER, number, dial_string(self._calls, number)
        if not _ENDPOINT_NAME.match(target):
            raise InvalidInput("target", "neither an E.164 number nor an endpoint name")
        endpoint = dial_string(self._calls, target, outside_line=False)
        tech, _, resource = endpoint.partition("/")
        if tech and resource and "@" not in resource:
            try:
                await self._ari.request("GET", f"/endpoints/{tech}/{resource}")
            except AriNotFound as exc:
                raise InvalidInput("target", f"unknown endpoint {target!r}") from exc
        return TransferTargetType.AGENT, target, endpoint

    async def _run(
        self,
        session: StoredSession,
        transfer: StoredTransfer,
        steps: tuple[TransferStep, ...],
        *,
        endpoint: str | None = None,
    ) -> StoredTransfer:
        for step in steps:
            try:
                transfer = await self._step(session, transfer, step, endpoint)
            except AriError as exc:
                log.warning(
                    "transfer.step_failed",
                    call_id=str(session.id),
                    step=type(step).__name__,
                    error=str(exc),
                )
                return await self._recover(session, transfer, f"{type(step).__name__}: {exc}")
        return transfer

    async def _step(
        self,
        session: StoredSession,
        transfer: StoredTransfer,
        step: TransferStep,
        endpoint: str | None,
    ) -> StoredTransfer:
        sid = session.id
        # the session as the transfer began: its legs' channels before any adoption
        agent, customer = (
            current_leg_channel(session, Leg.AGENT),
            current_leg_channel(session, Leg.CUSTOMER),
        )
        target, consult = _target(transfer), _consult(transfer)
        match step:
            case HoldCustomer():
                await self._ari.request("POST", f"/channels/{customer}/moh")
                await self._event(session, CallEventType.TRANSFER_CUSTOMER_HELD, transfer)
            case UnholdCustomer():
                with contextlib.suppress(AriNotFound):
                    await self._ari.request("DELETE", f"/channels/{customer}/moh")
                await self._event(session, CallEventType.TRANSFER_CUSTOMER_UNHELD, transfer)
            case OriginateTarget():
                if endpoint is None:
                    raise AriError("no endpoint to dial for the transfer target")
                if replaced_leg(transfer) is Leg.AGENT:
                    # a new agent: it sees who they are about to talk to
                    caller_id: str | None = session.customer_number
                    ring = self._calls.agent_ring_timeout
                else:
                    # a new outside party for the agent: it sees our number, as a customer
                    caller_id = session.caller_id or self._calls.default_caller_id
                    ring = self._calls.customer_ring_timeout
                await self._ari.originate(
                    endpoint,
                    channel_id=target,
                    app_args=target_stasis_args(sid),
                    caller_id=caller_id,
                    ring_timeout=ring,
                    variables={**target_channel_variables(sid, transfer.id), **self._leg_variables},
                )
                await self._event(
                    session, CallEventType.TRANSFER_TARGET_DIALING, transfer, {"endpoint": endpoint}
                )
            case BridgeTarget():
                with contextlib.suppress(AriNotFound):
                    await self._remove(consult, target)
                await self._ari.add_to_bridge(call_bridge_id(sid), target)
                await self._event(session, CallEventType.TRANSFER_TARGET_BRIDGED, transfer)
            case ConsultBridge():
                await self._remove(call_bridge_id(sid), agent)
                await self._ari.create_bridge(consult)
                await self._ari.add_to_bridge(consult, agent, target)
                await self._event(
                    session, CallEventType.TRANSFER_CONSULT_BRIDGED, transfer, {"bridge": consult}
                )
            case ReturnAgent():
                with contextlib.suppress(AriNotFound):
                    await self._remove(consult, agent)
                await self._ari.add_to_bridge(call_bridge_id(sid), agent)
                await self._event(session, CallEventType.TRANSFER_AGENT_RETURNED, transfer)
            case DestroyConsult():
                with contextlib.suppress(AriNotFound):
                    await self._ari.destroy_bridge(consult)
            case ReleaseLeg():
                with contextlib.suppress(AriNotFound):
                    await self._ari.hangup(current_leg_channel(session, step.leg))
                await self._event(
                    session,
                    leg_released(step.leg),
                    transfer,
                    {"channel": current_leg_channel(session, step.leg)},
                )
            case HangupTarget():
                with contextlib.suppress(AriNotFound):
                    await self._ari.hangup(target)
                await self._event(session, CallEventType.TRANSFER_TARGET_RELEASED, transfer)
            case AdoptTarget():
                column = f"{step.leg.value}_channel_id"
                await self._store.sessions.append_event(
                    session.tenant_id,
                    sid,
                    leg_replaced(step.leg),
                    payload={
                        "transfer_id": str(transfer.id),
                        "channel": target,
                        "replaced": current_leg_channel(session, step.leg),
                    },
                    changes={column: target},
                )
            case SetState():
                transfer = await self._update(transfer, step.state)
                await self._event(session, step.event_type, transfer)
            case Finish():
                transfer = await self._update(
                    transfer,
                    step.state,
                    failure_cause=step.reason[:500] if step.reason else None,
                    hangup_cause=step.cause,
                )
                payload: dict[str, Any] = {"state": step.state.value}
                if step.reason:
                    payload["reason"] = step.reason
                if step.cause is not None:
                    payload["hangup_cause"] = step.cause
                await self._event(session, step.event_type, transfer, payload)
        return transfer

    async def _remove(self, bridge: str, channel: str) -> None:
        await self._ari.request("POST", f"/bridges/{bridge}/removeChannel", {"channel": channel})

    async def _recover(
        self, session: StoredSession, transfer: StoredTransfer, reason: str
    ) -> StoredTransfer:
        """A step failed: release the target, put the agent back with the customer."""
        agent, customer = (
            current_leg_channel(session, Leg.AGENT),
            current_leg_channel(session, Leg.CUSTOMER),
        )
        consult = _consult(transfer)
        with contextlib.suppress(AriError):
            await self._ari.hangup(_target(transfer))
        with contextlib.suppress(AriError):
            await self._remove(consult, agent)
        with contextlib.suppress(AriError):
            await self._ari.add_to_bridge(call_bridge_id(session.id), agent)
        with contextlib.suppress(AriError):
            await self._ari.destroy_bridge(consult)
        with contextlib.suppress(AriError):
            await self._ari.request("DELETE", f"/channels/{customer}/moh")
        transfer = await self._update(transfer, TransferState.FAILED, failure_cause=reason[:500])
        await self._event(session, CallEventType.TRANSFER_FAILED, transfer, {"reason": reason})
        return transfer

    async def _update(
        self, transfer: StoredTransfer, state: TransferState, **changes: Any
    ) -> StoredTransfer:
        """Write the transfer's new state after the session's facts so far (see the module
        docstring), and keep it as the call's transfer in flight while it is live."""
        await self._store.journal.flush()
        updated = await self._store.transfers.update(transfer.id, state, **changes)
        self._in_flight[updated.session_id] = updated if updated.state.is_live else None
        return updated

    async def _event(
        self,
        session: StoredSession,
        event_type: CallEventType,
        transfer: StoredTransfer,
        payload: dict[str, Any] | None = None,
    ) -> None:
        await self._store.sessions.append_event(
            session.tenant_id,
            session.id,
            event_type,
            payload={"transfer_id": str(transfer.id), **(payload or {})},
        )

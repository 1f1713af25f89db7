"""Carries out transfers of connected click-to-calls over ARI.

The domain (:mod:`engine.domain.transfer`) decides; this module makes the ARI calls and
writes the ``call_transfer`` row and a ``call_event`` for every step. The Stasis app calls
it while holding the session's lock, so a transfer's steps never interleave with the
call's other facts.

Ids: the target channel is ``c2c-<uuid>-target``, the consult bridge ``c2c-<uuid>-consult``.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import Any

import structlog

from engine.asterisk.ari import AriClient, AriNotFound
from engine.asterisk.dialing import dial_string
from engine.config import CallSettings
from engine.domain.call import CallStatus
from engine.domain.phone import to_e164
from engine.domain.transfer import (
    AdoptTarget,
    BridgeTarget,
    ConsultBridge,
    DestroyConsult,
    Finish,
    HangupAgent,
    HangupTarget,
    HoldCustomer,
    OriginateTarget,
    ReturnAgent,
    SetState,
    TransferFact,
    TransferState,
    TransferStep,
    TransferType,
    UnholdCustomer,
    decide_transfer,
    start_transfer,
)
from engine.errors import AriError, Conflict, InvalidInput
from engine.store import Store
from engine.store.sessions import StoredSession
from engine.store.transfers import NewTransfer, StoredTransfer

__all__ = ["TransferRunner", "consult_bridge_id", "target_channel_id"]

log = structlog.get_logger(__name__)

_ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def target_channel_id(session_id: uuid.UUID) -> str:
    return f"c2c-{session_id}-target"


def consult_bridge_id(session_id: uuid.UUID) -> str:
    return f"c2c-{session_id}-consult"


def _main_bridge(session_id: uuid.UUID) -> str:
    return f"c2c-{session_id}"


def _agent(session_id: uuid.UUID) -> str:
    return f"c2c-{session_id}-agent"


def _customer(session_id: uuid.UUID) -> str:
    return f"c2c-{session_id}-customer"


class TransferRunner:
    def __init__(self, ari: AriClient, store: Store, calls: CallSettings) -> None:
        self._ari = ari
        self._store = store
        self._calls = calls

    # -- requests (the caller holds the session lock) -----------------------------------------

    async def start(
        self, session: StoredSession, kind: TransferType, target: str, leg: str = "agent"
    ) -> StoredTransfer:
        if session.status is not CallStatus.CONNECTED:
            raise Conflict(
                f"session {session.id} is {session.status.value}; only connected calls transfer"
            )
        if leg != "agent":
            raise InvalidInput("leg", "only the agent leg can be transferred")
        if await self._store.transfers.live(session.id) is not None:
            raise Conflict(f"session {session.id} already has a transfer in flight")
        if session.agent_channel_id == target_channel_id(session.id):
            raise Conflict(f"session {session.id} was already transferred once")
        target_type, target, endpoint = await self._resolve(target)
        transfer = await self._store.transfers.create(
            NewTransfer(
                tenant_id=session.tenant_id,
                session_id=session.id,
                transfer_type=kind.value,
                from_leg="customer",  # the leg that stays; the agent is released
                target_type=target_type,
                target=target,
                target_channel_id=target_channel_id(session.id),
                consult_bridge_id=consult_bridge_id(session.id)
                if kind is TransferType.ATTENDED
                else None,
            )
        )
        await self._event(
            session,
            "transfer.requested",
            transfer,
            {"type": kind.value, "target": target, "endpoint": endpoint, "leg": leg},
        )
        return await self._run(session, transfer, start_transfer(kind), endpoint=endpoint)

    async def on_fact(self, session: StoredSession, fact: TransferFact) -> StoredTransfer | None:
        """Apply a telephony or API fact to the live transfer; None when there is none or
        the fact does not apply in its state."""
        transfer = await self._store.transfers.live(session.id)
        if transfer is None:
            return None
        steps = decide_transfer(
            TransferType(transfer.transfer_type), TransferState(transfer.state), fact
        )
        if steps is None:
            return None
        return await self._run(session, transfer, steps)

    async def abort(self, session: StoredSession, reason: str) -> None:
        """The call ended while a transfer was in flight: release the target, close the row."""
        transfer = await self._store.transfers.live(session.id)
        if transfer is None:
            return
        sid = session.id
        with contextlib.suppress(AriError):
            await self._ari.hangup(target_channel_id(sid))
        with contextlib.suppress(AriError):
            await self._ari.destroy_bridge(consult_bridge_id(sid))
        await self._store.transfers.update(
            transfer.id, TransferState.FAILED.value, failure_cause=reason[:500]
        )
        await self._event(session, "transfer.failed", transfer, {"reason": reason})

    async def request_fact(
        self, session: StoredSession, fact: TransferFact, what: str
    ) -> StoredTransfer:
        """``complete``/``cancel`` from the API: 409 without a transfer in the right state."""
        done = await self.on_fact(session, fact)
        if done is None:
            raise Conflict(f"session {session.id} has no attended transfer to {what}")
        return done

    # -- carrying out -------------------------------------------------------------------------

    async def _resolve(self, target: str) -> tuple[str, str, str]:
        """(target_type, normalised target, dial string); InvalidInput if unknown."""
        if target.startswith("+"):
            number = to_e164(target, field="target")
            return "number", number, dial_string(self._calls, number)
        if not _ENDPOINT_NAME.match(target):
            raise InvalidInput("target", "neither an E.164 number nor an endpoint name")
        endpoint = dial_string(self._calls, target, outside_line=False)
        tech, _, resource = endpoint.partition("/")
        if tech and resource and "@" not in resource:
            try:
                await self._ari.request("GET", f"/endpoints/{tech}/{resource}")
            except AriNotFound as exc:
                raise InvalidInput("target", f"unknown endpoint {target!r}") from exc
        return "agent", target, endpoint

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
        match step:
            case HoldCustomer():
                await self._ari.request("POST", f"/channels/{_customer(sid)}/moh")
                await self._event(session, "transfer.customer_held", transfer)
            case UnholdCustomer():
                with contextlib.suppress(AriNotFound):
                    await self._ari.request("DELETE", f"/channels/{_customer(sid)}/moh")
                await self._event(session, "transfer.customer_unheld", transfer)
            case OriginateTarget():
                if endpoint is None:
                    raise AriError("no endpoint to dial for the transfer target")
                await self._ari.originate(
                    endpoint,
                    channel_id=target_channel_id(sid),
                    app_args=f"c2c,{sid},target",
                    caller_id=session.customer_number,
                    ring_timeout=self._calls.agent_ring_timeout,
                    variables={"CTC_SESSION_ID": str(sid), "CTC_LEG": "target"},
                )
                await self._event(
                    session, "transfer.target_dialing", transfer, {"endpoint": endpoint}
                )
            case BridgeTarget():
                with contextlib.suppress(AriNotFound):
                    await self._remove(consult_bridge_id(sid), target_channel_id(sid))
                await self._ari.add_to_bridge(_main_bridge(sid), target_channel_id(sid))
                await self._event(session, "transfer.target_bridged", transfer)
            case ConsultBridge():
                await self._remove(_main_bridge(sid), _agent(sid))
                await self._ari.create_bridge(consult_bridge_id(sid))
                await self._ari.add_to_bridge(
                    consult_bridge_id(sid), _agent(sid), target_channel_id(sid)
                )
                await self._event(
                    session,
                    "transfer.consult_bridged",
                    transfer,
                    {"bridge": consult_bridge_id(sid)},
                )
            case ReturnAgent():
                with contextlib.suppress(AriNotFound):
                    await self._remove(consult_bridge_id(sid), _agent(sid))
                await self._ari.add_to_bridge(_main_bridge(sid), _agent(sid))
                await self._event(session, "transfer.agent_returned", transfer)
            case DestroyConsult():
                with contextlib.suppress(AriNotFound):
                    await self._ari.destroy_bridge(consult_bridge_id(sid))
            case HangupAgent():
                with contextlib.suppress(AriNotFound):
                    await self._ari.hangup(_agent(sid))
                await self._event(session, "transfer.agent_released", transfer)
            case HangupTarget():
                with contextlib.suppress(AriNotFound):
                    await self._ari.hangup(target_channel_id(sid))
                await self._event(session, "transfer.target_released", transfer)
            case AdoptTarget():
                await self._store.sessions.append_event(
                    session.tenant_id,
                    sid,
                    "transfer.agent_replaced",
                    payload={"transfer_id": str(transfer.id), "channel": target_channel_id(sid)},
                    changes={"agent_channel_id": target_channel_id(sid)},
                )
            case SetState():
                transfer = await self._store.transfers.update(transfer.id, step.state.value)
                await self._event(session, step.event_type, transfer)
            case Finish():
                transfer = await self._store.transfers.update(
                    transfer.id,
                    step.state.value,
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
        sid = session.id
        with contextlib.suppress(AriError):
            await self._ari.hangup(target_channel_id(sid))
        with contextlib.suppress(AriError):
            await self._remove(consult_bridge_id(sid), _agent(sid))
        with contextlib.suppress(AriError):
            await self._ari.add_to_bridge(_main_bridge(sid), _agent(sid))
        with contextlib.suppress(AriError):
            await self._ari.destroy_bridge(consult_bridge_id(sid))
        with contextlib.suppress(AriError):
            await self._ari.request("DELETE", f"/channels/{_customer(sid)}/moh")
        transfer = await self._store.transfers.update(
            transfer.id, TransferState.FAILED.value, failure_cause=reason[:500]
        )
        await self._event(session, "transfer.failed", transfer, {"reason": reason})
        return transfer

    async def _event(
        self,
        session: StoredSession,
        event_type: str,
        transfer: StoredTransfer,
        payload: dict[str, Any] | None = None,
    ) -> None:
        await self._store.sessions.append_event(
            session.tenant_id,
            session.id,
            event_type,
            payload={"transfer_id": str(transfer.id), **(payload or {})},
        )

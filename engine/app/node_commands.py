"""The commands other engines send this engine for the calls it owns, carried out through
the same use cases its own API calls (:mod:`engine.app.forwarding` is the sending side).

Why apart: it needs the call and control use cases, which import the sending side."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import structlog

from engine.app.calls import CallService
from engine.app.controls import CallControlService, decode_control
from engine.app.forwarding import error_result
from engine.domain.click_to_call import Leg
from engine.domain.transfer import TransferType
from engine.errors import CtcError, InvalidInput
from engine.store.node_commands import PendingCommand
from engine.store.repositories import Store

__all__ = ["CommandRunner"]

log = structlog.get_logger(__name__)


class CommandRunner:
    """Runs on the owning engine the commands other engines sent it, through the same use
    cases its own API calls."""

    def __init__(self, store: Store, calls: CallService, controls: CallControlService) -> None:
        self._store = store
        self._calls = calls
        self._controls = controls

    async def run(self, command: PendingCommand) -> dict[str, Any]:
        """Carry ``command`` out; its result (never raises for the command's own failure)."""
        fields = command.command
        try:
            result = await self._carry_out(command.session_id, fields)
            # the sender reads the session from PostgreSQL: what this engine wrote behind
            # for it is committed first
            await self._store.journal.flush()
        except Exception as exc:
            if not isinstance(exc, CtcError):
                log.exception("node_command.failed", command_id=command.id)
            return error_result(exc)
        log.info(
            "node_command.done",
            command_id=command.id,
            op=fields.get("op"),
            call_id=str(command.session_id),
            sent_by=command.sent_by,
        )
        return result

    async def _carry_out(self, session_id: uuid.UUID, fields: Mapping[str, Any]) -> dict[str, Any]:
        tenant = await self._store.tenants.by_slug(str(fields.get("tenant")))
        match fields.get("op"):
            case "control":
                await self._controls.apply(tenant, session_id, decode_control(fields))
            case "end":
                reason = fields.get("reason")
                await self._calls.end(tenant, session_id, reason=reason)
            case "transfer":
                transfer = await self._calls.transfer(
                    tenant,
                    session_id,
                    TransferType(fields["kind"]),
                    str(fields["target"]),
                    Leg(fields["leg"]),
                )
                return {"ok": True, "transfer_id": str(transfer.id)}
            case "transfer_complete":
                transfer = await self._calls.complete_transfer(tenant, session_id)
                return {"ok": True, "transfer_id": str(transfer.id)}
            case "transfer_cancel":
                transfer = await self._calls.cancel_transfer(tenant, session_id)
                return {"ok": True, "transfer_id": str(transfer.id)}
            case other:
                raise InvalidInput("op", f"unknown forwarded operation {other!r}")
        return {"ok": True}

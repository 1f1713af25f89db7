"""Transfers of live calls (``call_transfer``): one row per transfer with its outcome."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from engine.domain.transfer import TransferState
from engine.errors import Conflict, NotFound
from engine.store.database import Database, returned
from engine.store.records import NewTransfer, StoredTransfer

__all__ = ["TransferRepository"]

_COLS = (
    "id, tenant_id, session_id, transfer_type, initiated_by, from_leg, target_type, target, "
    "target_channel_id, consult_bridge_id, state, failure_cause, hangup_cause, requested_at, "
    "answered_at, completed_at, option_id, routing_rule_id"
)


class TransferRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, new: NewTransfer) -> StoredTransfer:
        """Store an initiated transfer; Conflict if the session already has one in flight."""
        try:
            row = await self._db.fetchrow(
                "INSERT INTO call_transfer (id, tenant_id, session_id, transfer_type, "
                "initiated_by, from_leg, target_type, target, target_channel_id, "
                "consult_bridge_id, option_id, routing_rule_id) "
                "VALUES (coalesce($10, gen_random_uuid()), $1, $2, $3, $4, "
                f"$5, $6, $7, $8, $9, $11, $12) RETURNING {_COLS}",
                new.tenant_id,
                new.session_id,
                new.transfer_type.value,
                new.initiated_by,
                new.from_leg,
                new.target_type.value,
                new.target,
                new.target_channel_id,
                new.consult_bridge_id,
                new.id,
                new.option_id,
                new.routing_rule_id,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"session {new.session_id} already has a transfer in flight") from exc
        return StoredTransfer.from_row(returned(row, "INSERT INTO call_transfer"))

    async def get(self, tenant_id: uuid.UUID, transfer_id: uuid.UUID) -> StoredTransfer:
        """The tenant's transfer (NotFound otherwise)."""
        row = await self._db.fetchrow(
            f"SELECT {_COLS} FROM call_transfer WHERE id = $1 AND tenant_id = $2",
            transfer_id,
            tenant_id,
        )
        if row is None:
            raise NotFound("transfer", transfer_id)
        return StoredTransfer.from_row(row)

    async def live(self, session_id: uuid.UUID) -> StoredTransfer | None:
        """The session's transfer in flight (initiated or consulting), if any."""
        row = await self._db.fetchrow(
            f"SELECT {_COLS} FROM call_transfer WHERE session_id = $1 "
            "AND state IN ('initiated', 'consulting')",
            session_id,
        )
        return None if row is None else StoredTransfer.from_row(row)

    async def update(
        self, transfer_id: uuid.UUID, state: TransferState, **changes: Any
    ) -> StoredTransfer:
        """Set the state (and answered_at when consulting, completed_at when terminal).

        ``answered_at`` may be given when the answer came earlier than now (FastAGI learns
        it only when Dial returns), ``target_channel_id`` once the answering channel is known.
        """
        allowed = {"failure_cause", "hangup_cause", "target_channel_id", "answered_at"}
        extra = {k: v for k, v in changes.items() if k in allowed}
        sets = ["state = $2"]
        args: list[Any] = [transfer_id, state.value]
        for key, value in extra.items():
            args.append(value)
            sets.append(f"{key} = ${len(args)}")
        answered = state in (TransferState.CONSULTING, TransferState.COMPLETED)
        if answered and "answered_at" not in extra:
            sets.append("answered_at = coalesce(answered_at, now())")
        if not state.is_live:
            sets.append("completed_at = now()")
        row = await self._db.fetchrow(
            f"UPDATE call_transfer SET {', '.join(sets)} WHERE id = $1 RETURNING {_COLS}",
            *args,
        )
        if row is None:
            raise NotFound("transfer", transfer_id)
        return StoredTransfer.from_row(row)

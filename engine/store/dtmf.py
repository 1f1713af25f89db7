"""``call_dtmf_interaction``: one row per key decision in an IVR (digit, menu, option or
invalid/timeout, ms since the prompt). The IVR adapter also appends a ``call_event``.

Rows of a live session owned by the :class:`~engine.store.journal.CallJournal` (see
:class:`~engine.store.ownership.SessionOwnership`) are written behind with the session's
other changes; others are inserted at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from engine.store.database import Database
from engine.store.ownership import SessionOwnership
from engine.store.records import DtmfRow

__all__ = ["DtmfRepository"]


class DtmfRepository:
    def __init__(self, db: Database, ownership: SessionOwnership) -> None:
        self._db = db
        self._ownership = ownership

    async def record(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        *,
        menu_id: uuid.UUID,
        menu_version: int,
        option_id: uuid.UUID | None,
        digit: str | None,
        input_value: str | None,
        outcome: str,
        attempt: int,
        ms_since_prompt: int | None,
        channel_id: str | None,
    ) -> None:
        row = DtmfRow(
            tenant_id=tenant_id,
            session_id=session_id,
            menu_id=menu_id,
            menu_version=menu_version,
            option_id=option_id,
            digit=digit,
            input_value=input_value,
            outcome=outcome,
            attempt=attempt,
            ms_since_prompt=ms_since_prompt,
            channel_id=channel_id,
            occurred_at=datetime.now(UTC),
        )
        if self._ownership.written_behind(session_id):
            self._ownership.journal.dtmf(row)
            return
        await self._db.execute(
            "INSERT INTO call_dtmf_interaction (tenant_id, session_id, menu_id, menu_version, "
            "option_id, digit, input_value, outcome, attempt, ms_since_prompt, channel_id, "
            "occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            tenant_id,
            session_id,
            menu_id,
            menu_version,
            option_id,
            digit,
            input_value,
            outcome,
            attempt,
            ms_since_prompt,
            channel_id,
            row.occurred_at,
        )

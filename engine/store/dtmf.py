"""``call_dtmf_interaction``: one row per key decision in an IVR (digit, menu, option or
invalid/timeout, ms since the prompt). The IVR adapter also appends a ``call_event``."""

from __future__ import annotations

import uuid

from engine.store.database import Database

__all__ = ["DtmfRepository"]


class DtmfRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

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
    ) -> int:
        row_id: int = await self._db.fetchval(
            "INSERT INTO call_dtmf_interaction (tenant_id, session_id, menu_id, menu_version, "
            "option_id, digit, input_value, outcome, attempt, ms_since_prompt, channel_id) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
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
        )
        return row_id

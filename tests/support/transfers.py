"""A session's ``call_transfer`` rows, read straight from PostgreSQL.

The engine itself only ever needs the transfer in flight (``TransferRepository.live``);
tests check every transfer a call had, in the order they were asked for.
"""

from __future__ import annotations

import dataclasses
import uuid

from engine.store.records import StoredTransfer
from engine.store.repositories import Store

__all__ = ["session_transfers"]

_COLUMNS = ", ".join(field.name for field in dataclasses.fields(StoredTransfer))


async def session_transfers(
    store: Store, tenant_id: uuid.UUID, session_id: uuid.UUID
) -> list[StoredTransfer]:
    """The session's transfers, oldest request first."""
    rows = await store.db.fetch(
        f"SELECT {_COLUMNS} FROM call_transfer WHERE tenant_id = $1 AND session_id = $2 "
        "ORDER BY requested_at, id",
        tenant_id,
        session_id,
    )
    return [StoredTransfer.from_row(row) for row in rows]

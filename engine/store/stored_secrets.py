"""Every secret column at once: how many values are not yet sealed under the primary key,
and re-sealing them (``ctc secrets rotate``).

Why a module of its own: rotation must reach every secret column, and listing them in one
place (:data:`SECRET_COLUMNS`) keeps a new secret column from being forgotten by it. The
sealing itself is :class:`~engine.secrets.Keyring`'s, and so is the rule of which values
are current (:meth:`~engine.secrets.Keyring.current_prefix`).
"""

from __future__ import annotations

from engine.errors import SecretsError
from engine.secrets import NO_KEY_HINT, Keyring
from engine.store.database import Database

__all__ = ["SECRET_COLUMNS", "StoredSecrets"]

SECRET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tenant", "callback_secret"),
    ("tenant", "previous_callback_secret"),
    ("voip_provider", "credentials"),
    ("voip_provider", "webhook_secret"),
)
"""(table, column) of every stored secret; each table has an ``id`` primary key."""


class StoredSecrets:
    def __init__(self, db: Database, keyring: Keyring) -> None:
        self._db = db
        self._keyring = keyring

    async def not_current(self) -> dict[str, int]:
        """``table.column`` -> how many stored values are plaintext or under an old key."""
        out: dict[str, int] = {}
        for table, column in SECRET_COLUMNS:
            count = await self._db.fetchval(
                f"SELECT count(*) FROM {table} "
                f"WHERE {column} IS NOT NULL AND NOT starts_with({column}, $1)",
                self._keyring.current_prefix(),
            )
            out[f"{table}.{column}"] = int(count or 0)
        return out

    async def rotate(self) -> dict[str, int]:
        """Re-seal every value that is plaintext or under an old key with the primary key,
        in one transaction; ``table.column`` -> values re-sealed."""
        if not self._keyring.configured:
            raise SecretsError(f"cannot rotate: {NO_KEY_HINT}")
        out: dict[str, int] = {}
        async with self._db.transaction() as conn:
            for table, column in SECRET_COLUMNS:
                rows = await conn.fetch(
                    f"SELECT id, {column} AS value FROM {table} "
                    f"WHERE {column} IS NOT NULL AND NOT starts_with({column}, $1) FOR UPDATE",
                    self._keyring.current_prefix(),
                )
                what = f"{table}.{column}"
                updates = [
                    (
                        row["id"],
                        self._keyring.seal(
                            self._keyring.unseal(row["value"], what=f"{what} of {row['id']}"),
                            what=what,
                        ),
                    )
                    for row in rows
                ]
                await conn.executemany(f"UPDATE {table} SET {column} = $2 WHERE id = $1", updates)
                out[what] = len(updates)
        return out

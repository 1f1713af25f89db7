"""The stored-secrets use case: re-encrypt every stored secret under the primary key
(``ctc secrets rotate``), after which the other keys may leave the configuration."""

from __future__ import annotations

from engine.store.repositories import Store

__all__ = ["StoredSecretsService"]


class StoredSecretsService:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def rotate(self) -> dict[str, int]:
        """Re-seal what is plaintext or under an old key; ``table.column`` -> values re-sealed.
        SecretsError when no key is configured."""
        return await self._store.secrets.rotate()

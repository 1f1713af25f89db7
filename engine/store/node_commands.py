"""Commands for the engine that owns a session, sent by another engine (``node_command``,
sql/0025_claim_queue.sql): how a hold, an end or a transfer asked of engine B reaches the
call engine A carries on its Asterisk, with PostgreSQL as the only go-between.

B inserts the command (NOTIFY ``ctc_node_commands`` with A's name, at commit); A takes its
pending ones (:meth:`NodeCommandRepository.take`: only unexpired ones, so a command B gave
up on is never carried out late), carries them out and writes each result (NOTIFY
``ctc_node_results`` with the id); B reads the result. B withdraws a command A has not
taken when it stops waiting (:meth:`NodeCommandRepository.withdraw`): then it is certain
the command was not carried out.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any, Final

from engine.store.database import Database

__all__ = ["COMMANDS_CHANNEL", "RESULTS_CHANNEL", "NodeCommandRepository", "PendingCommand"]

COMMANDS_CHANNEL: Final = "ctc_node_commands"  # payload: the node that is to carry it out
RESULTS_CHANNEL: Final = "ctc_node_results"  # payload: the command's id
_KEEP_SECONDS: Final = 3600.0  # answered or expired commands are deleted after this


@dataclasses.dataclass(frozen=True, slots=True)
class PendingCommand:
    id: int
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    sent_by: str | None
    command: dict[str, Any]


class NodeCommandRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def send(
        self,
        node: str,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        command: Mapping[str, Any],
        *,
        sent_by: str | None,
        expires_in: float,
    ) -> int:
        """Store a command for ``node`` (notified at commit); its id."""
        command_id = await self._db.fetchval(
            "WITH c AS (INSERT INTO node_command (node, sent_by, tenant_id, session_id, "
            "command, expires_at) VALUES ($1, $2, $3, $4, $5, "
            "now() + make_interval(secs => $6)) RETURNING id) "
            f"SELECT id FROM c, pg_notify('{COMMANDS_CHANNEL}', $1)",
            node,
            sent_by,
            tenant_id,
            session_id,
            dict(command),
            expires_in,
        )
        return int(command_id)

    async def take(self, node: str) -> list[PendingCommand]:
        """``node``'s unexpired commands nobody took yet, now taken, oldest first."""
        rows = await self._db.fetch(
            "UPDATE node_command SET taken_at = now() WHERE node = $1 AND taken_at IS NULL "
            "AND expires_at > now() RETURNING id, tenant_id, session_id, sent_by, command",
            node,
        )
        return sorted((PendingCommand(**dict(r)) for r in rows), key=lambda c: c.id)

    async def answer(self, command_id: int, result: Mapping[str, Any]) -> None:
        """Write a taken command's result (notified at commit)."""
        await self._db.execute(
            "WITH u AS (UPDATE node_command SET done_at = now(), result = $2 WHERE id = $1 "
            f"RETURNING id) SELECT pg_notify('{RESULTS_CHANNEL}', id::text) FROM u",
            command_id,
            dict(result),
        )

    async def result(self, command_id: int) -> dict[str, Any] | None:
        """The command's result, None while there is none."""
        found: dict[str, Any] | None = await self._db.fetchval(
            "SELECT result FROM node_command WHERE id = $1 AND done_at IS NOT NULL", command_id
        )
        return found

    async def withdraw(self, command_id: int) -> bool:
        """Whether the command was withdrawn before its node took it (then it never runs)."""
        withdrawn = await self._db.fetchval(
            "UPDATE node_command SET taken_at = now(), done_at = now(), "
            "result = '{\"withdrawn\": true}' WHERE id = $1 AND taken_at IS NULL "
            "RETURNING true",
            command_id,
        )
        return bool(withdrawn)

    async def prune(self) -> int:
        """Delete commands answered or expired more than an hour ago; how many."""
        count = await self._db.fetchval(
            "WITH gone AS (DELETE FROM node_command WHERE greatest(expires_at, "
            "coalesce(done_at, expires_at)) < now() - make_interval(secs => $1) RETURNING 1) "
            "SELECT count(*) FROM gone",
            _KEEP_SECONDS,
        )
        return int(count)

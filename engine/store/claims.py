"""Who owns a click-to-call among the engines that share the database: the claim queue,
the hand-back of a silent node's undialled calls, and the take-over of a dead node's live
calls (sql/0025_claim_queue.sql).

Why here and only here: a session's ``node`` is its owner, and exactly one engine may dial
a call or end it for a dead owner. Every change of ``node`` is one UPDATE whose WHERE
clause says what the row must still be (``FOR UPDATE SKIP LOCKED`` picks rows no other
engine is taking; a concurrent UPDATE re-checks the clause on the row it waited for), so
two engines never both win a row. The journal never writes ``node``.

- :meth:`ClaimRepository.claim`: unclaimed queued click-to-calls, oldest first, become this
  node's (``claimed_at`` set); the claim commits before anything is dialled.
- :meth:`ClaimRepository.release`: a queued call this node stored (and screened) goes to
  the queue.
- :meth:`ClaimRepository.claim_one`: a queued call a resync found, unclaimed or already
  this node's, is this node's (None when another node has it).
- :meth:`ClaimRepository.requeue_stale`: queued click-to-calls of nodes whose last beat is
  older than ``stale_after`` go back to the queue (node NULL, which NOTIFYs the claimers),
  those claimed and never handed to a dialer only: queued in the table says nothing about
  whether a call was dialled (the journal writes the dial, ``dialing_agent``, within its
  batch interval of the originate), the ``session.claimed`` event committed before the
  hand-over does.
- :meth:`ClaimRepository.take_lost`: live sessions of nodes silent for longer than
  ``failover_after`` become this node's, to be ended (or requeued) by the caller.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Final

import asyncpg

from engine.domain.call import LIVE_STATUSES
from engine.domain.providers import HTTP_CARRIERS
from engine.store.database import Database
from engine.store.records import SESSION_COLUMNS, StoredSession
from engine.store.session_queries import by_carrier

__all__ = ["CHANNEL", "ClaimRepository", "ClaimedCall", "LostCall", "QueueCounts"]

CHANNEL: Final = "ctc_call_queue"  # NOTIFYed by sql/0025's triggers

_COLS: Final = ", ".join(f"s.{c}" for c in SESSION_COLUMNS)
_TENANT_URL: Final = (
    "(SELECT callback_url FROM tenant t WHERE t.id = s.tenant_id) AS tenant_callback_url"
)
_UNCLAIMED: Final = "status = 'queued' AND direction = 'click_to_call' AND node IS NULL"
# A queued call of a silent node may go back to the queue only when it was claimed from
# the queue and never handed to a dialer: the claimer commits ``session.claimed`` before it
# hands the call over. A call its own engine's initiate dialled at once (never claimed), or
# one handed over, may have been dialled: it is never requeued (a second dial), the node
# failover ends it after the grace period instead.
_NEVER_HANDED_OVER: Final = (
    "s.claimed_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM call_event e "
    "WHERE e.session_id = s.id AND e.event_type = 'session.claimed')"
)
_SILENT_NODES: Final = (
    "SELECT name, heartbeat_at FROM engine_node WHERE name <> $1 "
    "AND heartbeat_at < now() - make_interval(secs => $2)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedCall:
    """A call this node claimed, with what the journal needs to own it."""

    session: StoredSession
    tenant_callback_url: str | None
    queued_ms: int  # how long it waited unclaimed (since it was stored)
    provider_type: str | None = None  # its provider's (a ProviderType value), if it has one


@dataclasses.dataclass(frozen=True, slots=True)
class LostCall:
    """A live session of a dead node, now this node's."""

    session: StoredSession
    lost_node: str
    heartbeat_at: datetime  # the dead node's last beat


@dataclasses.dataclass(frozen=True, slots=True)
class QueueCounts:
    unclaimed: int  # queued click-to-calls no node has claimed
    claimed: dict[str, int]  # per node: queued calls it claimed and has not dialled yet


def _session(row: asyncpg.Record) -> StoredSession:
    return StoredSession.from_row({name: row[name] for name in SESSION_COLUMNS})


class ClaimRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, node: str, limit: int) -> list[ClaimedCall]:
        """Up to ``limit`` unclaimed queued click-to-calls, oldest first, now ``node``'s."""
        rows = await self._db.fetch(
            f"WITH picked AS (SELECT id FROM click_to_call_session WHERE {_UNCLAIMED} "
            f"ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
            f"UPDATE click_to_call_session s SET node = $1, claimed_at = now() FROM picked "
            f"WHERE s.id = picked.id RETURNING {_COLS}, {_TENANT_URL}, "
            f"(extract(epoch FROM now() - s.created_at) * 1000)::int AS queued_ms, "
            f"(SELECT p.provider_type FROM voip_provider p WHERE p.id = s.provider_id) "
            f"AS provider_type",
            node,
            limit,
        )
        calls = [
            ClaimedCall(
                _session(r), r["tenant_callback_url"], max(0, r["queued_ms"]), r["provider_type"]
            )
            for r in rows
        ]
        return sorted(calls, key=lambda c: c.session.created_at)

    async def claim_one(self, session_id: uuid.UUID) -> bool:
        """Whether the queued session is this connection's node's now (it was unclaimed or
        already its own); False when another node has it or it is no longer queued."""
        claimed = await self._db.fetchval(
            "UPDATE click_to_call_session SET node = NULLIF(current_setting('ctc.node', true), "
            "''), claimed_at = coalesce(claimed_at, now()) WHERE id = $1 AND status = 'queued' "
            "AND (node IS NULL OR node = NULLIF(current_setting('ctc.node', true), '')) "
            "RETURNING true",
            session_id,
        )
        return bool(claimed)

    async def release(self, session_id: uuid.UUID) -> bool:
        """Hand this connection's node's queued session to the queue (node NULL, which
        NOTIFYs the claimers); whether it was still queued and its own."""
        released = await self._db.fetchval(
            "UPDATE click_to_call_session SET node = NULL, claimed_at = NULL WHERE id = $1 "
            "AND status = 'queued' AND node = NULLIF(current_setting('ctc.node', true), '') "
            "RETURNING true",
            session_id,
        )
        return bool(released)

    async def requeue_lost(self, session_id: uuid.UUID) -> bool:
        """Hand a dead node's queued call, taken by this connection's node, back to the
        queue when it was never handed to a dialer; whether it was (else it may have been
        dialled, and the caller ends it)."""
        released = await self._db.fetchval(
            f"UPDATE click_to_call_session s SET node = NULL, claimed_at = NULL "
            f"WHERE s.id = $1 AND s.status = 'queued' "
            f"AND s.node = NULLIF(current_setting('ctc.node', true), '') "
            f"AND {_NEVER_HANDED_OVER} RETURNING true",
            session_id,
        )
        return bool(released)

    async def requeue_stale(self, node: str, stale_after: float) -> int:
        """Hand the queued click-to-calls of nodes silent for ``stale_after`` seconds back
        to the queue; how many. Not a carrier's: a carrier session stays ``queued`` while
        the carrier places it (until its first webhook), so queued says nothing about
        whether it was dialled."""
        count = await self._db.fetchval(
            f"WITH silent AS ({_SILENT_NODES}), moved AS (UPDATE click_to_call_session s "
            f"SET node = NULL, claimed_at = NULL FROM silent WHERE s.node = silent.name "
            f"AND s.status = 'queued' AND s.direction = 'click_to_call' "
            f"AND {_NEVER_HANDED_OVER} AND NOT {by_carrier('s', 3)} RETURNING s.id) "
            f"SELECT count(*) FROM moved",
            node,
            stale_after,
            sorted(HTTP_CARRIERS),
        )
        return int(count)

    async def take_lost(self, node: str, failover_after: float, limit: int) -> list[LostCall]:
        """Up to ``limit`` live sessions of nodes silent for ``failover_after`` seconds,
        now ``node``'s (each taken by exactly one surviving node). Not a carrier's: its
        call lives on at the carrier, and its webhooks reach any engine."""
        rows = await self._db.fetch(
            f"WITH silent AS ({_SILENT_NODES}), picked AS (SELECT s.id, s.node AS lost_node, "
            f"silent.heartbeat_at FROM click_to_call_session s JOIN silent "
            f"ON silent.name = s.node WHERE s.status = ANY($3) AND NOT {by_carrier('s', 5)} "
            f"ORDER BY s.created_at "
            f"LIMIT $4 FOR UPDATE OF s SKIP LOCKED) "
            f"UPDATE click_to_call_session s SET node = $1 FROM picked WHERE s.id = picked.id "
            f"RETURNING {_COLS}, picked.lost_node, picked.heartbeat_at AS lost_heartbeat_at",
            node,
            failover_after,
            [s.value for s in LIVE_STATUSES],
            limit,
            sorted(HTTP_CARRIERS),
        )
        return [LostCall(_session(r), r["lost_node"], r["lost_heartbeat_at"]) for r in rows]

    async def counts(self) -> QueueCounts:
        """The queue now: unclaimed calls, and claimed-not-dialled ones per node."""
        rows = await self._db.fetch(
            "SELECT node, count(*)::int AS n FROM click_to_call_session "
            "WHERE status = 'queued' AND direction = 'click_to_call' GROUP BY node"
        )
        claimed = {r["node"]: r["n"] for r in rows if r["node"] is not None}
        unclaimed = sum(r["n"] for r in rows if r["node"] is None)
        return QueueCounts(unclaimed, claimed)

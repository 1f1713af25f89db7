"""The engines that share this database (``engine_node``): their heartbeats, and the list.

Each engine upserts its own row every ``node.heartbeat_interval`` seconds (the row is keyed
by the node name, so a restarted engine takes its row back), and marks it stopped on a
graceful stop. The database's clock is the one that ages heartbeats: engines on several
hosts never compare their own clocks. Live calls are counted from the sessions, not
reported by the node, so a dead node's calls still show against it.
"""

from __future__ import annotations

from engine.domain.call import LIVE_STATUSES
from engine.store.database import Database
from engine.store.records import NodeBeat, StoredNode

__all__ = ["NodeRepository"]

_NODE_COLS = (
    "n.name, n.version, n.host, n.pid, n.started_at, n.heartbeat_at, n.stopped_at, "
    "n.max_calls, n.asterisk, extract(epoch FROM now() - n.heartbeat_at)::float8 AS "
    "heartbeat_age, coalesce(l.live, 0)::int AS live_calls"
)
_LIVE_PER_NODE = (
    "LEFT JOIN (SELECT node, count(*) AS live FROM click_to_call_session "
    "WHERE status = ANY($1) AND node IS NOT NULL GROUP BY node) l ON l.node = n.name"
)


class NodeRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def beat(self, beat: NodeBeat) -> None:
        """Record that ``beat.name`` is alive now (its row created or taken back)."""
        await self._db.execute(
            "INSERT INTO engine_node (name, version, host, pid, started_at, heartbeat_at, "
            "max_calls, asterisk) VALUES ($1, $2, $3, $4, $5, now(), $6, $7) "
            "ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, "
            "host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, "
            "heartbeat_at = now(), stopped_at = NULL, max_calls = EXCLUDED.max_calls, "
            "asterisk = EXCLUDED.asterisk",
            beat.name,
            beat.version,
            beat.host,
            beat.pid,
            beat.started_at,
            beat.max_calls,
            beat.asterisk,
        )

    async def stopped(self, beat: NodeBeat) -> None:
        """Mark the node stopped, if its row is still this engine's (same host, pid and
        start: another engine that took the name over keeps its row)."""
        await self._db.execute(
            "UPDATE engine_node SET stopped_at = now() WHERE name = $1 AND host = $2 "
            "AND pid = $3 AND started_at = $4 AND stopped_at IS NULL",
            beat.name,
            beat.host,
            beat.pid,
            beat.started_at,
        )

    async def get(self, name: str) -> StoredNode | None:
        row = await self._db.fetchrow(
            f"SELECT {_NODE_COLS} FROM engine_node n {_LIVE_PER_NODE} WHERE n.name = $2",
            [s.value for s in LIVE_STATUSES],
            name,
        )
        return None if row is None else StoredNode(**dict(row))

    async def list(self) -> list[StoredNode]:
        """Every node that ever registered, by name."""
        rows = await self._db.fetch(
            f"SELECT {_NODE_COLS} FROM engine_node n {_LIVE_PER_NODE} ORDER BY n.name",
            [s.value for s in LIVE_STATUSES],
        )
        return [StoredNode(**dict(r)) for r in rows]

"""Listing, history and per-minute activity of sessions: the read side that spans many
sessions (the manager's statistics are :mod:`engine.store.stats`).

These queries read PostgreSQL only. A live session owned by the
:class:`~engine.store.journal.CallJournal` reaches them once its batch is committed, so a
listing may lag the calls in progress by up to the journal's interval; one
session's current state is read through :class:`~engine.store.sessions.SessionRepository`,
which asks the session's owner.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from engine.domain.call import LIVE_STATUSES
from engine.domain.providers import HTTP_CARRIERS
from engine.errors import InvalidInput
from engine.store.database import Database
from engine.store.records import (
    EVENT_COLUMNS,
    SESSION_COLUMNS,
    AgentLastCall,
    CallEvent,
    CallsInMinute,
    RingTimeCount,
    SessionFilter,
    SessionPage,
    StoredSession,
)

__all__ = [
    "SessionQueries",
    "by_carrier",
    "decode_cursor",
    "encode_cursor",
]

_SESSION_COLS: Final = ", ".join(SESSION_COLUMNS)
_EVENT_COLS: Final = ", ".join(EVENT_COLUMNS)


def encode_cursor(created_at: datetime, session_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{session_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, sid = raw.split("|")
        return datetime.fromisoformat(when), uuid.UUID(sid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor", "not a cursor this API returned") from exc


def by_carrier(table: str, param: int) -> str:
    """SQL: the session row ``table`` is a click-to-call an HTTP carrier places (``$param``
    holds ``sorted(HTTP_CARRIERS)``). Its legs are the carrier's and its facts the carrier's
    webhooks, which any engine applies: no engine resyncs, requeues or fails it over."""
    return (
        f"({table}.direction = 'click_to_call' AND {table}.provider_id IS NOT NULL "
        f"AND {table}.provider_id IN (SELECT id FROM voip_provider "
        f"WHERE provider_type = ANY(${param})))"
    )


class SessionQueries:
    """Queries over many sessions and their events, from PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(
        self,
        tenant_id: uuid.UUID,
        filters: SessionFilter,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        where = ["tenant_id = $1"]
        args: list[Any] = [tenant_id]

        def add(sql: str, value: Any) -> None:
            args.append(value)
            where.append(sql.format(f"${len(args)}"))

        if filters.statuses:
            add("status = ANY({})", [s.value for s in filters.statuses])
        if filters.direction is not None:
            add("direction = {}", filters.direction.value)
        if filters.agent_id is not None:
            add("agent_id = {}", filters.agent_id)
        if filters.customer_number is not None:
            add("customer_number = {}", filters.customer_number)
        if filters.external_ref is not None:
            add("external_ref = {}", filters.external_ref)
        if filters.created_after is not None:
            add("created_at >= {}", filters.created_after)
        if filters.created_before is not None:
            add("created_at < {}", filters.created_before)
        if cursor is not None:
            at, sid = decode_cursor(cursor)
            args.extend([at, sid])
            where.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        rows = await self._db.fetch(
            f"SELECT {_SESSION_COLS} FROM click_to_call_session WHERE {' AND '.join(where)} "
            f"ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
            *args,
        )
        items = [StoredSession.from_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if more else None
        return SessionPage(items, next_cursor)

    async def events(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[CallEvent]:
        rows = await self._db.fetch(
            f"SELECT {_EVENT_COLS} FROM call_event WHERE tenant_id = $1 AND session_id = $2 "
            f"ORDER BY seq",
            tenant_id,
            session_id,
        )
        return [CallEvent.from_row(r) for r in rows]

    async def events_after(
        self,
        tenant_id: uuid.UUID,
        after_id: int,
        *,
        session_id: uuid.UUID | None = None,
        limit: int = 1000,
        skip: Sequence[int] = (),
    ) -> list[CallEvent]:
        """The tenant's events with ``id > after_id`` but ``skip``, oldest first, at most
        ``limit``.

        One statement, so one snapshot: for every session the result is a gap-free run of
        its committed events (replay for ``GET /api/v1/events`` with ``Last-Event-ID``).
        """
        rows = await self._db.fetch(
            f"SELECT {_EVENT_COLS} FROM call_event WHERE tenant_id = $1 AND id > $2 "
            f"AND ($3::uuid IS NULL OR session_id = $3) AND NOT (id = ANY($5::bigint[])) "
            f"ORDER BY id LIMIT $4",
            tenant_id,
            after_id,
            session_id,
            limit,
            list(skip),
        )
        return [CallEvent.from_row(r) for r in rows]

    async def newest_event_id(self) -> int:
        """The highest call_event id committed now (0 for none): one index lookup."""
        return int(await self._db.fetchval("SELECT coalesce(max(id), 0) FROM call_event"))

    async def live(self) -> list[StoredSession]:
        """Every non-terminal session of every tenant that this engine owns (for resync
        after a reconnect): the ones its node created (``node``, the connection's
        ``ctc.node``) and the ones no node claims (written before nodes, or by a tool).
        Another engine's calls are on its own Asterisk: never this engine's to adopt, end
        or start. Nor are click-to-calls an HTTP carrier places (their legs are the
        carrier's, their facts its webhooks)."""
        rows = await self._db.fetch(
            f"SELECT {_SESSION_COLS} FROM click_to_call_session WHERE status = ANY($1) "
            f"AND (node IS NULL OR node = current_setting('ctc.node', true)) "
            f"AND NOT {by_carrier('click_to_call_session', 2)} ORDER BY created_at",
            [s.value for s in LIVE_STATUSES],
            sorted(HTTP_CARRIERS),
        )
        return [StoredSession.from_row(r) for r in rows]

    async def placements_cut_off(self, older_than: timedelta) -> list[StoredSession]:
        """Click-to-calls an HTTP carrier was placing that are not ended, have no carrier
        call id and were created more than ``older_than`` ago, of this engine's node, oldest
        first: placements a stopped engine cut off (the carrier dialer's ``resume`` finds or
        places their call). Not the unclaimed ones (node NULL): those wait in the claim
        queue, and the engine that claims one places it."""
        rows = await self._db.fetch(
            f"SELECT {_SESSION_COLS} FROM click_to_call_session WHERE status = ANY($1) "
            f"AND provider_call_id IS NULL AND node = current_setting('ctc.node', true) "
            f"AND created_at < now() - $3::interval "
            f"AND {by_carrier('click_to_call_session', 2)} ORDER BY created_at",
            [s.value for s in LIVE_STATUSES],
            sorted(HTTP_CARRIERS),
            older_than,
        )
        return [StoredSession.from_row(r) for r in rows]

    async def recordings_unsettled(self, ended_within: timedelta) -> list[uuid.UUID]:
        """Ended sessions (within ``ended_within``) whose recording's end was never stored:
        the resync asks ARI what became of those recordings."""
        rows = await self._db.fetch(
            "SELECT id FROM click_to_call_session WHERE recording_path IS NOT NULL "
            "AND recording_duration_ms IS NULL AND ended_at > now() - $1::interval",
            ended_within,
        )
        return [r["id"] for r in rows]

    async def calls_by_minute(
        self, tenant_id: uuid.UUID, since: datetime, until: datetime
    ) -> list[CallsInMinute]:
        """The tenant's sessions created in ``[since, until)``, counted per minute (only
        minutes that had one), oldest first."""
        rows = await self._db.fetch(
            "SELECT date_trunc('minute', created_at) AS minute, count(*) AS placed, "
            "  count(*) FILTER (WHERE connected_at IS NOT NULL) AS answered, "
            "  count(*) FILTER (WHERE connected_at IS NOT NULL OR NOT status = ANY($4)) "
            "    AS decided "
            "FROM click_to_call_session WHERE tenant_id = $1 "
            "AND created_at >= $2 AND created_at < $3 GROUP BY 1 ORDER BY 1",
            tenant_id,
            since,
            until,
            [s.value for s in LIVE_STATUSES],
        )
        return [
            CallsInMinute(r["minute"], int(r["placed"]), int(r["answered"]), int(r["decided"]))
            for r in rows
        ]

    async def ring_times(
        self, tenant_id: uuid.UUID, since: datetime, until: datetime, bounds_ms: list[int]
    ) -> list[RingTimeCount]:
        """How long the tenant's sessions created in ``[since, until)`` rang, counted in
        the buckets that start at each of ``bounds_ms`` (ascending, the first 0): a bucket
        per bound, the last one open-ended. Sessions that never rang are not counted."""
        rows = await self._db.fetch(
            "SELECT width_bucket(ring_ms, $4::int[]) AS bucket, count(*) AS n "
            "FROM click_to_call_session WHERE tenant_id = $1 "
            "AND created_at >= $2 AND created_at < $3 AND ring_ms IS NOT NULL GROUP BY 1",
            tenant_id,
            since,
            until,
            bounds_ms,
        )
        # width_bucket: 1 for bounds[0] <= x < bounds[1], ..., len(bounds) past the last
        counts = {int(r["bucket"]): int(r["n"]) for r in rows}
        return [RingTimeCount(bound, counts.get(i + 1, 0)) for i, bound in enumerate(bounds_ms)]

    async def last_call_per_agent(
        self, tenant_id: uuid.UUID, since: datetime
    ) -> list[AgentLastCall]:
        """Each agent's newest session among those created since ``since`` or still live,
        with the agent's count of them, by agent."""
        rows = await self._db.fetch(
            f"SELECT DISTINCT ON (agent) * FROM ("
            f"  SELECT {_SESSION_COLS}, coalesce(agent_id, agent_number) AS agent, "
            f"    count(*) OVER (PARTITION BY coalesce(agent_id, agent_number)) AS calls "
            f"  FROM click_to_call_session WHERE tenant_id = $1 "
            f"  AND coalesce(agent_id, agent_number) IS NOT NULL "
            f"  AND (created_at >= $2 OR status = ANY($3))) s "
            f"ORDER BY agent, created_at DESC, id DESC",
            tenant_id,
            since,
            [s.value for s in LIVE_STATUSES],
        )
        return [
            AgentLastCall(
                r["agent"],
                StoredSession.from_row({name: r[name] for name in SESSION_COLUMNS}),
                int(r["calls"]),
            )
            for r in rows
        ]

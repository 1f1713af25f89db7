"""Call sessions, their append-only event log, and the callback outbox.

The session row is a projection of its events: every change goes through
:meth:`SessionRepository.transition` or :meth:`SessionRepository.append_event`, which lock
the row, let the domain state machine decide, and write the row, the ``call_event`` and
(when the tenant or request has a callback URL) the ``callback_outbox`` row in one
transaction. ``version`` counts the events, so ``call_event.seq`` is dense per session.

With an :class:`~engine.events.EventBus`, each event is published once its transaction has
committed (never before: a subscriber must not see an event that may still roll back),
before the connection goes back to the pool and with no ``await`` in between, so one
session's events reach subscribers in commit order, which is ``seq`` order.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from engine.domain.call import LIVE_STATUSES, CallSession, CallStatus, Direction
from engine.errors import Conflict, InvalidInput, NotFound
from engine.store.database import Connection, Database

if TYPE_CHECKING:
    from engine.events import EventBus
    from engine.store.journal import CallJournal

__all__ = [
    "SESSION_COLUMNS",
    "CallEvent",
    "NewSession",
    "SessionFilter",
    "SessionPage",
    "SessionRepository",
    "SessionStats",
    "StoredSession",
    "callback_payload",
]

# Columns a caller may set alongside a transition or event (telephony handles, outcome).
_WRITABLE = frozenset(
    {
        "agent_channel_id",
        "customer_channel_id",
        "bridge_id",
        "provider_call_id",
        "hangup_cause",
        "hangup_cause_text",
        "end_reason",
        "end_estimated",
        "recording_path",
        "recording_duration_ms",
        "caller_id",
    }
)
_EVENT_COLS = (
    "id, tenant_id, session_id, seq, event_type, status_from, status_to, payload, occurred_at"
)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredSession:
    id: uuid.UUID
    tenant_id: uuid.UUID
    provider_id: uuid.UUID | None
    direction: Direction
    status: CallStatus
    agent_number: str | None
    customer_number: str | None
    caller_id: str | None
    agent_id: str | None
    external_ref: str | None
    callback_url: str | None
    metadata: dict[str, Any]
    idempotency_key: str | None
    request_hash: str | None
    agent_channel_id: str | None
    customer_channel_id: str | None
    bridge_id: str | None
    provider_call_id: str | None
    hangup_cause: int | None
    hangup_cause_text: str | None
    end_reason: str | None
    recording_path: str | None
    recording_duration_ms: int | None
    ring_ms: int | None
    talk_ms: int | None
    created_at: datetime
    dialing_agent_at: datetime | None
    agent_answered_at: datetime | None
    dialing_customer_at: datetime | None
    connected_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime
    version: int
    caller_number: str | None = None
    dialed_number: str | None = None
    ivr_menu: str | None = None
    # ended_at/talk_ms/ring_ms taken when the engine noticed the end, not from Asterisk
    end_estimated: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record | Mapping[str, Any]) -> StoredSession:
        values = dict(row)
        values["status"] = CallStatus(values["status"])
        values["direction"] = Direction(values["direction"])
        return cls(**values)

    def machine(self) -> CallSession:
        return CallSession(
            status=self.status,
            created_at=self.created_at,
            direction=self.direction,
            dialing_agent_at=self.dialing_agent_at,
            agent_answered_at=self.agent_answered_at,
            dialing_customer_at=self.dialing_customer_at,
            connected_at=self.connected_at,
            ended_at=self.ended_at,
        )


# the columns of click_to_call_session, in StoredSession's field order
SESSION_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StoredSession))
_SESSION_COLS = ", ".join(SESSION_COLUMNS)


@dataclasses.dataclass(frozen=True, slots=True)
class NewSession:
    tenant_id: uuid.UUID
    agent_number: str | None
    customer_number: str | None
    direction: Direction = Direction.CLICK_TO_CALL
    provider_id: uuid.UUID | None = None
    caller_id: str | None = None
    agent_id: str | None = None
    external_ref: str | None = None
    callback_url: str | None = None
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    idempotency_key: str | None = None
    request_hash: str | None = None
    caller_number: str | None = None
    dialed_number: str | None = None
    ivr_menu: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CallEvent:
    id: int
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    seq: int
    event_type: str
    status_from: str | None
    status_to: str | None
    payload: dict[str, Any]
    occurred_at: datetime
    # an outbox row was written with it (so the notifier has something to deliver)
    callback_queued: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CallEvent:
        return cls(**dict(row))


@dataclasses.dataclass(frozen=True, slots=True)
class SessionFilter:
    statuses: Sequence[CallStatus] = ()
    direction: Direction | None = None
    agent_id: str | None = None
    customer_number: str | None = None
    external_ref: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SessionPage:
    items: list[StoredSession]
    next_cursor: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class SessionStats:
    total: int
    by_status: dict[str, int]
    live: int
    connected: int  # reached the customer (connected or completed after connecting)
    connect_rate: float | None
    avg_ring_ms: int | None
    avg_talk_ms: int | None
    total_talk_ms: int


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


def _now() -> datetime:
    return datetime.now(UTC)


class SessionRepository:
    """Sessions in PostgreSQL; the live sessions this process owns (:meth:`open_live`) are
    read and changed in memory and written behind by the
    :class:`~engine.store.journal.CallJournal`."""

    def __init__(self, db: Database, journal: CallJournal, events: EventBus | None = None) -> None:
        self._db = db
        self._events = events
        self._journal = journal

    def open_live(
        self, new: NewSession, *, tenant_callback_url: str | None = None
    ) -> StoredSession:
        """A queued session owned by this process, written behind (no idempotency key)."""
        session, _ = self._journal.open(new, tenant_callback_url=tenant_callback_url)
        return session

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[tuple[Connection, list[CallEvent]]]:
        """One transaction; the events appended to the list are published after COMMIT."""
        committed: list[CallEvent] = []
        async with self._db.connection() as conn:
            async with conn.transaction():
                yield conn, committed
            # COMMIT has returned and nothing is awaited before publishing: see module doc
            if self._events is not None:
                for event in committed:
                    self._events.publish(event)

    # -- create -----------------------------------------------------------------------------

    async def create(self, new: NewSession) -> tuple[StoredSession, bool]:
        """Store a queued session; return it and whether this call created it.

        With an idempotency key, a repeat returns the first session (``False``); the same key
        with a different request body raises :class:`Conflict`.
        """
        async with self._writing() as (conn, committed):
            row = await conn.fetchrow(
                f"INSERT INTO click_to_call_session (tenant_id, provider_id, direction, "
                f"agent_number, customer_number, caller_id, agent_id, external_ref, "
                f"callback_url, metadata, idempotency_key, request_hash, caller_number, "
                f"dialed_number, ivr_menu, version) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 1) "
                f"ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL "
                f"DO NOTHING RETURNING {_SESSION_COLS}",
                new.tenant_id,
                new.provider_id,
                new.direction.value,
                new.agent_number,
                new.customer_number,
                new.caller_id,
                new.agent_id,
                new.external_ref,
                new.callback_url,
                dict(new.metadata),
                new.idempotency_key,
                new.request_hash,
                new.caller_number,
                new.dialed_number,
                new.ivr_menu,
            )
            if row is None:
                existing = await conn.fetchrow(
                    f"SELECT {_SESSION_COLS} FROM click_to_call_session "
                    f"WHERE tenant_id = $1 AND idempotency_key = $2",
                    new.tenant_id,
                    new.idempotency_key,
                )
                assert existing is not None
                first = StoredSession.from_row(existing)
                if first.request_hash != new.request_hash:
                    raise Conflict(
                        f"Idempotency-Key {new.idempotency_key!r} was used with a different "
                        f"request body (session {first.id})"
                    )
                return first, False
            session = StoredSession.from_row(row)
            event = await self._insert_event(
                conn,
                session,
                seq=1,
                event_type="session.created",
                status_from=None,
                status_to=session.status.value,
                payload={"direction": session.direction.value},
                at=session.created_at,
            )
            committed.append(event)
            return session, True

    # -- read -------------------------------------------------------------------------------

    async def by_id(self, session_id: uuid.UUID) -> StoredSession | None:
        """A session of any tenant: for telephony events, which carry no tenant."""
        if (live := self._journal.live(session_id)) is not None:
            return live
        row = await self._db.fetchrow(
            f"SELECT {_SESSION_COLS} FROM click_to_call_session WHERE id = $1", session_id
        )
        return None if row is None else StoredSession.from_row(row)

    async def get(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> StoredSession:
        if (live := self._journal.live(session_id)) is not None:
            if live.tenant_id != tenant_id:
                raise NotFound("session", session_id)
            return live
        row = await self._db.fetchrow(
            f"SELECT {_SESSION_COLS} FROM click_to_call_session WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            session_id,
        )
        if row is None:
            raise NotFound("session", session_id)
        return StoredSession.from_row(row)

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
    ) -> list[CallEvent]:
        """The tenant's events with ``id > after_id``, oldest first, at most ``limit``.

        One statement, so one snapshot: for every session the result is a gap-free run of
        its committed events (replay for ``GET /api/v1/events`` with ``Last-Event-ID``).
        """
        rows = await self._db.fetch(
            f"SELECT {_EVENT_COLS} FROM call_event WHERE tenant_id = $1 AND id > $2 "
            f"AND ($3::uuid IS NULL OR session_id = $3) ORDER BY id LIMIT $4",
            tenant_id,
            after_id,
            session_id,
            limit,
        )
        return [CallEvent.from_row(r) for r in rows]

    async def live(self) -> list[StoredSession]:
        """Every non-terminal session of every tenant (for resync after a reconnect)."""
        rows = await self._db.fetch(
            f"SELECT {_SESSION_COLS} FROM click_to_call_session WHERE status = ANY($1) "
            f"ORDER BY created_at",
            [s.value for s in LIVE_STATUSES],
        )
        return [StoredSession.from_row(r) for r in rows]

    async def stats(
        self,
        tenant_id: uuid.UUID,
        *,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        agent_id: str | None = None,
    ) -> SessionStats:
        row = await self._db.fetchrow(
            "SELECT count(*) AS total, "
            "  count(*) FILTER (WHERE status = ANY($5)) AS live, "
            "  count(*) FILTER (WHERE connected_at IS NOT NULL) AS connected, "
            "  avg(ring_ms)::bigint AS avg_ring_ms, avg(talk_ms)::bigint AS avg_talk_ms, "
            "  coalesce(sum(talk_ms), 0)::bigint AS total_talk_ms, "
            "  coalesce(jsonb_object_agg(status, n) FILTER (WHERE status IS NOT NULL), '{}') "
            "    AS by_status "
            "FROM (SELECT *, count(*) OVER (PARTITION BY status) AS n "
            "      FROM click_to_call_session WHERE tenant_id = $1 "
            "      AND ($2::timestamptz IS NULL OR created_at >= $2) "
            "      AND ($3::timestamptz IS NULL OR created_at < $3) "
            "      AND ($4::text IS NULL OR agent_id = $4)) s",
            tenant_id,
            created_after,
            created_before,
            agent_id,
            [s.value for s in LIVE_STATUSES],
        )
        assert row is not None
        total = int(row["total"])
        finished = total - int(row["live"])
        connected = int(row["connected"])
        return SessionStats(
            total=total,
            by_status={k: int(v) for k, v in row["by_status"].items()},
            live=int(row["live"]),
            connected=connected,
            connect_rate=round(connected / finished, 4) if finished else None,
            avg_ring_ms=row["avg_ring_ms"],
            avg_talk_ms=row["avg_talk_ms"],
            total_talk_ms=int(row["total_talk_ms"]),
        )

    # -- change -----------------------------------------------------------------------------

    async def transition(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        target: CallStatus | str,
        *,
        event_type: str = "status.changed",
        payload: Mapping[str, Any] | None = None,
        changes: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> tuple[StoredSession, CallEvent]:
        """Move a session to ``target`` if the state machine allows it (else IllegalTransition).

        Writes the row, its event and, if a callback URL applies, the outbox row, atomically.
        """
        live = self._live_change(tenant_id, session_id, target, event_type, payload, changes, at)
        if live is not None:
            return live
        when = at or _now()
        async with self._writing() as (conn, committed):
            current, callback_url = await self._lock(conn, tenant_id, session_id)
            decided = current.machine().transition(target, when)
            columns = {**_checked(changes), **decided.changes}
            updated = await self._update(conn, current, columns)
            event = await self._insert_event(
                conn,
                updated,
                seq=updated.version,
                event_type=event_type,
                status_from=decided.status_from.value,
                status_to=decided.status_to.value,
                payload=dict(payload or {}),
                at=when,
            )
            url = current.callback_url or callback_url
            if url:
                await self._enqueue_callback(conn, updated, event, url)
                event = dataclasses.replace(event, callback_queued=True)
            committed.append(event)
            return updated, event

    async def append_event(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        event_type: str,
        *,
        payload: Mapping[str, Any] | None = None,
        changes: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> tuple[StoredSession, CallEvent]:
        """Record a telephony fact that is not a status change (DTMF, recording, ...)."""
        live = self._live_change(tenant_id, session_id, None, event_type, payload, changes, at)
        if live is not None:
            return live
        when = at or _now()
        async with self._writing() as (conn, committed):
            current, _ = await self._lock(conn, tenant_id, session_id)
            updated = await self._update(conn, current, _checked(changes))
            event = await self._insert_event(
                conn,
                updated,
                seq=updated.version,
                event_type=event_type,
                status_from=None,
                status_to=None,
                payload=dict(payload or {}),
                at=when,
            )
            committed.append(event)
            return updated, event

    def _live_change(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        target: CallStatus | str | None,
        event_type: str,
        payload: Mapping[str, Any] | None,
        changes: Mapping[str, Any] | None,
        at: datetime | None,
    ) -> tuple[StoredSession, CallEvent] | None:
        """The change applied in memory when the journal owns the session, else None."""
        if (live := self._journal.live(session_id)) is None:
            return None
        if live.tenant_id != tenant_id:
            raise NotFound("session", session_id)
        return self._journal.change(
            session_id,
            target=target,
            event_type=event_type,
            payload=payload,
            changes=_checked(changes),
            at=at,
        )

    async def _lock(
        self, conn: Connection, tenant_id: uuid.UUID, session_id: uuid.UUID
    ) -> tuple[StoredSession, str | None]:
        # the tenant's callback URL comes along: one round trip per change, not two
        row = await conn.fetchrow(
            f"SELECT {_SESSION_COLS}, "
            f"(SELECT callback_url FROM tenant t WHERE t.id = s.tenant_id) AS tenant_callback_url "
            f"FROM click_to_call_session s WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            tenant_id,
            session_id,
        )
        if row is None:
            raise NotFound("session", session_id)
        values = dict(row)
        tenant_url = values.pop("tenant_callback_url")
        return StoredSession.from_row(values), tenant_url

    async def _update(
        self, conn: Connection, current: StoredSession, columns: Mapping[str, Any]
    ) -> StoredSession:
        sets = ["version = version + 1", "updated_at = now()"]
        args: list[Any] = [current.id]
        for name, value in columns.items():
            args.append(value)
            sets.append(f"{name} = ${len(args)}")
        row = await conn.fetchrow(
            f"UPDATE click_to_call_session SET {', '.join(sets)} WHERE id = $1 "
            f"RETURNING {_SESSION_COLS}",
            *args,
        )
        assert row is not None
        return StoredSession.from_row(row)

    async def _insert_event(
        self,
        conn: Connection,
        session: StoredSession,
        *,
        seq: int,
        event_type: str,
        status_from: str | None,
        status_to: str | None,
        payload: dict[str, Any],
        at: datetime,
    ) -> CallEvent:
        row = await conn.fetchrow(
            f"INSERT INTO call_event (tenant_id, session_id, seq, event_type, status_from, "
            f"status_to, payload, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            f"RETURNING {_EVENT_COLS}",
            session.tenant_id,
            session.id,
            seq,
            event_type,
            status_from,
            status_to,
            payload,
            at,
        )
        assert row is not None
        return CallEvent.from_row(row)

    async def _enqueue_callback(
        self, conn: Connection, session: StoredSession, event: CallEvent, url: str
    ) -> None:
        await conn.execute(
            "INSERT INTO callback_outbox (tenant_id, session_id, event_id, url, payload) "
            "VALUES ($1, $2, $3, $4, $5)",
            session.tenant_id,
            session.id,
            event.id,
            url,
            callback_payload(session, event),
        )


def callback_payload(session: StoredSession, event: CallEvent) -> dict[str, Any]:
    """The JSON body an ERP receives for one status change."""
    return {
        "event_id": event.id,
        "event_type": event.event_type,
        "session_id": str(session.id),
        "seq": event.seq,
        "status": session.status.value,
        "previous_status": event.status_from,
        "occurred_at": event.occurred_at.isoformat(),
        "external_ref": session.external_ref,
        "agent_number": session.agent_number,
        "customer_number": session.customer_number,
        "hangup_cause": session.hangup_cause,
        "ring_ms": session.ring_ms,
        "talk_ms": session.talk_ms,
        "recording_path": session.recording_path,
    }


def _checked(changes: Mapping[str, Any] | None) -> dict[str, Any]:
    if not changes:
        return {}
    unknown = set(changes) - _WRITABLE
    if unknown:
        # a programming error, not user input: the column list is fixed here
        raise ValueError(f"not writable session columns: {sorted(unknown)}")
    return dict(changes)

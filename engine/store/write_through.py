"""Write-through: each change of a session is its own PostgreSQL transaction.

The session row is a projection of its events: :meth:`WriteThrough.transition` and
:meth:`WriteThrough.append_event` lock the row, let the domain state machine decide, and
write the row, the ``call_event`` and (when the tenant or request has a callback URL) the
``callback_outbox`` row in one transaction. ``version`` counts the events, so
``call_event.seq`` is dense per session.

With an :class:`~engine.events.EventBus`, each event is published once its transaction has
committed (never before: a subscriber must not see an event that may still roll back),
before the connection goes back to the pool and with no ``await`` in between, so one
session's events reach subscribers in commit order, which is ``seq`` order.

This is the writer of every session the :class:`~engine.store.journal.CallJournal` does not
own (:class:`~engine.store.ownership.SessionOwnership` says which).
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from engine.contract import status_callback
from engine.domain.call import CallStatus
from engine.domain.compliance import Finding
from engine.domain.event_types import CallEventType
from engine.errors import AgentBusy, Conflict, NotFound, StoreError
from engine.events import EventBus
from engine.store.database import Connection, Database, returned
from engine.store.guards import AgentGuard, CreateGuard, agent_facts, attempts_since, lock
from engine.store.records import (
    EVENT_COLUMNS,
    SESSION_COLUMNS,
    CallEvent,
    NewSession,
    StoredSession,
    writable_changes,
)

__all__ = ["SessionBatch", "WriteThrough"]

_SESSION_COLS: Final = ", ".join(SESSION_COLUMNS)
# an event's columns beside its session's in one result row (both have id and tenant_id)
_EVENT_PREFIX: Final = "event_"
_EVENT_COLS_PREFIXED: Final = ", ".join(f"{c} AS {_EVENT_PREFIX}{c}" for c in EVENT_COLUMNS)


def _now() -> datetime:
    return datetime.now(UTC)


# beside a session ``s``'s columns: its tenant's callback URL
_TENANT_CALLBACK_URL: Final = (
    "(SELECT callback_url FROM tenant t WHERE t.id = s.tenant_id) AS tenant_callback_url"
)


def _with_tenant_url(row: asyncpg.Record) -> tuple[StoredSession, str | None]:
    values = dict(row)
    tenant_url = values.pop("tenant_callback_url")
    return StoredSession.from_row(values), tenant_url


def _session_and_event(row: asyncpg.Record) -> tuple[StoredSession, CallEvent]:
    """A row of a session's columns beside its event's (prefixed) as the two records."""
    session = StoredSession.from_row({name: row[name] for name in SESSION_COLUMNS})
    event = CallEvent(
        **{name: row[_EVENT_PREFIX + name] for name in EVENT_COLUMNS},
        direction=session.direction,
        agent=session.agent_id or session.agent_number,
    )
    return session, event


class WriteThrough:
    """Sessions read and changed in PostgreSQL, one transaction per change."""

    def __init__(self, db: Database, events: EventBus | None = None) -> None:
        self._db = db
        self._events = events

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

    async def create(
        self,
        new: NewSession,
        *,
        tenant_callback_url: str | None = None,
        guard: CreateGuard | None = None,
    ) -> tuple[StoredSession, bool]:
        """Store a new session; return it and whether this call created it.

        The row and its ``session.created`` event are one statement (atomic by itself, one
        round trip). When a callback URL applies (the request's, else
        ``tenant_callback_url``), the creation's callback (status ``queued``) is written in
        the same transaction. With an idempotency key, a repeat returns the first session
        (``False``); the same key with a different request body raises :class:`Conflict`.

        ``guard`` (:mod:`engine.store.guards`): its locks are taken first, so a repeat of an
        idempotency key sees the first call; a refusal (given, or the attempts judge's)
        stores the row ``rejected`` at once, with its ``session.rejected`` event, in the
        same statement: no row of a refused call is ever ``queued``. A busy agent the guard
        must not pass raises :class:`AgentBusy` and nothing is stored.
        """
        url = new.callback_url or tenant_callback_url
        guard = guard or CreateGuard()
        locking = guard.attempts is not None or guard.agent is not None
        async with self._db.connection() as conn:
            async with contextlib.AsyncExitStack() as stack:
                if url or locking or guard.refusal is not None:  # several statements
                    await stack.enter_async_context(conn.transaction())
                if guard.attempts is not None and guard.refusal is None:
                    await lock(conn, "attempts", new.tenant_id, guard.attempts.number)
                if guard.agent is not None and guard.refusal is None:
                    await lock(conn, "agent", new.tenant_id, guard.agent.agent)
                first = await self._existing(conn, new) if locking else None
                found: list[tuple[StoredSession, CallEvent]] | None = None
                if first is None:
                    refusal, reserve = await self._judged(conn, new, guard)
                    found = await self._insert_created(conn, new, refusal, reserve)
                if found:
                    session = found[-1][0]
                    events = [event for _, event in found]
                    if url:
                        for i, (shown, event) in enumerate(found):
                            await self._enqueue_callback(conn, shown, event, url)
                            events[i] = dataclasses.replace(event, callback_queued=True)
            if found:
                # committed, and nothing awaited before publishing: see module doc
                if self._events is not None:
                    for event in events:
                        self._events.publish(event)
                return session, True
            if first is None:
                first = await self._existing(conn, new)
        if first is None:
            raise StoreError(f"Idempotency-Key {new.idempotency_key!r} conflicted with no session")
        if first.request_hash != new.request_hash:
            raise Conflict(
                f"Idempotency-Key {new.idempotency_key!r} was used with a different "
                f"request body (session {first.id})"
            )
        return first, False

    async def _existing(self, conn: Connection, new: NewSession) -> StoredSession | None:
        """The session stored before under ``new``'s idempotency key, if any."""
        if new.idempotency_key is None:
            return None
        row = await conn.fetchrow(
            f"SELECT {_SESSION_COLS} FROM click_to_call_session "
            f"WHERE tenant_id = $1 AND idempotency_key = $2",
            new.tenant_id,
            new.idempotency_key,
        )
        return None if row is None else StoredSession.from_row(row)

    async def _judged(
        self, conn: Connection, new: NewSession, guard: CreateGuard
    ) -> tuple[Finding | None, AgentGuard | None]:
        """The refusal of the new call, if any, and the agent to log ``ringing`` with it, if
        any, with the guard's locks held: the refusal given, else the attempts judge's over
        the recount; the agent when its judge finds it free over its facts read now (before
        the new row, which would make it look busy with this very call). A busy agent the
        guard must not pass raises :class:`AgentBusy`; one it lets through is not logged."""
        if guard.refusal is not None:
            return guard.refusal, None
        if guard.attempts is not None:
            check = guard.attempts
            done = await attempts_since(conn, new.tenant_id, check.number, check.since)
            refusal = check.judge(done)
            if refusal is not None:
                return refusal, None
        claim = guard.agent
        if claim is None:
            return None, None
        busy = claim.judge(*await agent_facts(conn, new.tenant_id, claim.agent, _now()))
        if busy is None:
            return None, claim
        if claim.refuse:
            raise AgentBusy(claim.agent, busy)
        return None, None

    async def _insert_created(
        self,
        conn: Connection,
        new: NewSession,
        refusal: Finding | None = None,
        reserve: AgentGuard | None = None,
    ) -> list[tuple[StoredSession, CallEvent]] | None:
        """The new row and its ``session.created`` event; None when the idempotency key was
        taken already. With ``refusal`` the row is stored ``rejected`` (ended, its
        ``end_reason`` the refusal's) and a second event, ``session.rejected``, follows
        (queued → rejected, so the timeline and the callbacks read as for any call): the
        first pair's session is the row as it was created (queued), the second's as it is.
        With ``reserve`` (never with ``refusal``), its agent's ``ringing`` row for the new
        call is inserted by the same statement (one round trip)."""
        status, ended, version = ("queued", "NULL", 1)
        events = (
            "SELECT tenant_id, id, 1, $16::text, NULL::text, 'queued', $17::jsonb, created_at "
            "FROM created"
        )
        args: list[Any] = []
        if refusal is not None:
            status, ended, version = ("rejected", "now()", 2)
            events += (
                " UNION ALL SELECT tenant_id, id, 2, $20::text, 'queued', 'rejected', "
                "$21::jsonb, created_at FROM created"
            )
            args = [CallEventType.SESSION_REJECTED, refusal.as_payload(), refusal.reason[:500]]
        ringing = ""
        if reserve is not None and refusal is None:
            ringing = (
                f", ringing AS (INSERT INTO agent_activity_log (tenant_id, agent_id, activity, "
                f"session_id, details, occurred_at) SELECT tenant_id, ${20 + len(args)}::text, "
                f"'ringing', id, ${21 + len(args)}::jsonb, created_at FROM created)"
            )
            args += [reserve.agent, dict(reserve.details)]
        rows = await conn.fetch(
            f"WITH created AS (INSERT INTO click_to_call_session (tenant_id, provider_id, "
            f"direction, agent_number, customer_number, caller_id, agent_id, external_ref, "
            f"callback_url, metadata, idempotency_key, request_hash, caller_number, "
            f"dialed_number, ivr_menu, agent_channel_id, version, status, ended_at, "
            f"end_reason, node) "
            f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, "
            f"$18, {version}, '{status}', {ended}, "
            f"{'$22' if refusal is not None else 'NULL'}, "
            f"CASE WHEN $19 THEN NULL ELSE NULLIF(current_setting('ctc.node', true), '') END) "
            f"ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL "
            f"DO NOTHING RETURNING {_SESSION_COLS}), "
            f"event AS (INSERT INTO call_event (tenant_id, session_id, seq, event_type, "
            f"status_from, status_to, payload, occurred_at) {events} "
            f"RETURNING {_EVENT_COLS_PREFIXED}){ringing} "
            f"SELECT * FROM created, event ORDER BY {_EVENT_PREFIX}seq",
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
            CallEventType.SESSION_CREATED,
            {"direction": new.direction.value},
            new.agent_channel_id,
            new.unclaimed,
            *args,
        )
        if not rows:
            return None
        pairs = [_session_and_event(row) for row in rows]
        if refusal is not None:  # the creation as it was: queued, not yet ended
            session, created = pairs[0]
            queued = dataclasses.replace(
                session, status=CallStatus.QUEUED, ended_at=None, end_reason=None, version=1
            )
            pairs[0] = (queued, created)
        return pairs

    # -- read -------------------------------------------------------------------------------

    async def by_id(self, session_id: uuid.UUID) -> StoredSession | None:
        row = await self._db.fetchrow(
            f"SELECT {_SESSION_COLS} FROM click_to_call_session WHERE id = $1", session_id
        )
        return None if row is None else StoredSession.from_row(row)

    async def get(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> StoredSession:
        row = await self._db.fetchrow(
            f"SELECT {_SESSION_COLS} FROM click_to_call_session WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            session_id,
        )
        if row is None:
            raise NotFound("session", session_id)
        return StoredSession.from_row(row)

    async def with_tenant_callback_url(
        self, session_id: uuid.UUID
    ) -> tuple[StoredSession, str | None] | None:
        """A session of any tenant and its tenant's callback URL (one round trip), to hand
        it to the journal."""
        row = await self._db.fetchrow(
            f"SELECT {_SESSION_COLS}, {_TENANT_CALLBACK_URL} FROM click_to_call_session s "
            f"WHERE id = $1",
            session_id,
        )
        return None if row is None else _with_tenant_url(row)

    # -- change -----------------------------------------------------------------------------

    async def transition(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        target: CallStatus,
        *,
        event_type: CallEventType,
        payload: Mapping[str, Any] | None,
        changes: Mapping[str, Any],
        at: datetime | None,
    ) -> tuple[StoredSession, CallEvent]:
        """Move a session to ``target`` if the state machine allows it (else IllegalTransition).

        Writes the row, its event and, if a callback URL applies, the outbox row, atomically.
        ``changes`` are already checked (:func:`~engine.store.records.writable_changes`).
        """
        async with self._writing() as (conn, committed):
            current, callback_url = await self._lock(conn, tenant_id, session_id)
            return await self._transition_locked(
                conn,
                committed,
                current,
                callback_url,
                target,
                event_type=event_type,
                payload=payload,
                changes=changes,
                at=at or _now(),
            )

    async def _transition_locked(
        self,
        conn: Connection,
        committed: list[CallEvent],
        current: StoredSession,
        callback_url: str | None,
        target: CallStatus,
        *,
        event_type: CallEventType,
        payload: Mapping[str, Any] | None,
        changes: Mapping[str, Any],
        at: datetime,
    ) -> tuple[StoredSession, CallEvent]:
        decided = current.machine().transition(target, at)
        columns = {**changes, **decided.changes}
        updated, event = await self._update_with_event(
            conn,
            current,
            columns,
            event_type=event_type,
            status_from=decided.status_from.value,
            status_to=decided.status_to.value,
            payload=dict(payload or {}),
            at=at,
        )
        url = current.callback_url or callback_url
        if url:
            await self._enqueue_callback(conn, updated, event, url)
            event = dataclasses.replace(event, callback_queued=True)
        committed.append(event)
        return updated, event

    @contextlib.asynccontextmanager
    async def batch(
        self, tenant_id: uuid.UUID, session_id: uuid.UUID
    ) -> AsyncIterator[SessionBatch]:
        """One session's changes, and whatever else the caller writes on ``batch.conn``, in
        one transaction: the row stays locked until COMMIT, and nothing is kept when the
        block raises (its events are published after COMMIT, as every change's)."""
        async with self._writing() as (conn, committed):
            current, callback_url = await self._lock(conn, tenant_id, session_id)
            yield SessionBatch(self, conn, committed, current, callback_url)

    async def append_event(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        event_type: CallEventType,
        *,
        payload: Mapping[str, Any] | None,
        changes: Mapping[str, Any],
        at: datetime | None,
    ) -> tuple[StoredSession, CallEvent]:
        """Record a telephony fact that is not a status change (DTMF, recording, ...)."""
        when = at or _now()
        async with self._writing() as (conn, committed):
            current, _ = await self._lock(conn, tenant_id, session_id)
            updated, event = await self._update_with_event(
                conn,
                current,
                changes,
                event_type=event_type,
                status_from=None,
                status_to=None,
                payload=dict(payload or {}),
                at=when,
            )
            committed.append(event)
            return updated, event

    async def _lock(
        self, conn: Connection, tenant_id: uuid.UUID, session_id: uuid.UUID
    ) -> tuple[StoredSession, str | None]:
        # the tenant's callback URL comes along: one round trip per change, not two
        row = await conn.fetchrow(
            f"SELECT {_SESSION_COLS}, {_TENANT_CALLBACK_URL} "
            f"FROM click_to_call_session s WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            tenant_id,
            session_id,
        )
        if row is None:
            raise NotFound("session", session_id)
        return _with_tenant_url(row)

    async def _update_with_event(
        self,
        conn: Connection,
        current: StoredSession,
        columns: Mapping[str, Any],
        *,
        event_type: CallEventType,
        status_from: str | None,
        status_to: str | None,
        payload: dict[str, Any],
        at: datetime,
    ) -> tuple[StoredSession, CallEvent]:
        """Write the locked row and insert its event (``seq``: the row's new ``version``).

        One statement, so one round trip: a call's facts are mostly this, and every round
        trip costs the engine a send and a wake-up (bench/originate.py, py-spy).
        """
        sets = ["version = version + 1", "updated_at = now()"]
        args: list[Any] = [current.id, event_type, status_from, status_to, payload, at]
        for name, value in columns.items():
            args.append(value)
            sets.append(f"{name} = ${len(args)}")
        row = await conn.fetchrow(
            f"WITH updated AS (UPDATE click_to_call_session SET {', '.join(sets)} "
            f"WHERE id = $1 RETURNING {_SESSION_COLS}), "
            f"event AS (INSERT INTO call_event (tenant_id, session_id, seq, event_type, "
            f"status_from, status_to, payload, occurred_at) SELECT tenant_id, id, version, "
            f"$2::text, $3::text, $4::text, $5::jsonb, $6::timestamptz FROM updated "
            f"RETURNING {_EVENT_COLS_PREFIXED}) "
            f"SELECT * FROM updated, event",
            *args,
        )
        return _session_and_event(returned(row, f"UPDATE of locked session {current.id}"))

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
            status_callback(session, event).model_dump(mode="json"),
        )


class SessionBatch:
    """Changes of one locked session inside one transaction (:meth:`WriteThrough.batch`);
    ``session`` is the row as the last change left it."""

    def __init__(
        self,
        writer: WriteThrough,
        conn: Connection,
        committed: list[CallEvent],
        session: StoredSession,
        callback_url: str | None,
    ) -> None:
        self._writer = writer
        self.conn = conn
        self._committed = committed
        self.session = session
        self._callback_url = callback_url

    async def transition(
        self,
        target: CallStatus,
        *,
        event_type: CallEventType,
        payload: Mapping[str, Any] | None = None,
        changes: Mapping[str, Any] | None = None,
    ) -> CallEvent:
        """Move the session to ``target`` (IllegalTransition when the machine refuses)."""
        self.session, event = await self._writer._transition_locked(
            self.conn,
            self._committed,
            self.session,
            self._callback_url,
            target,
            event_type=event_type,
            payload=payload,
            changes=writable_changes(changes),
            at=_now(),
        )
        return event

    async def append_event(
        self, event_type: CallEventType, *, payload: Mapping[str, Any] | None = None
    ) -> CallEvent:
        self.session, event = await self._writer._update_with_event(
            self.conn,
            self.session,
            {},
            event_type=event_type,
            status_from=None,
            status_to=None,
            payload=dict(payload or {}),
            at=_now(),
        )
        self._committed.append(event)
        return event

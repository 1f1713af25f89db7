"""Write-behind for the calls this process owns: inbound IVR sessions and click-to-calls.

Why: an IVR call is a burst of small facts (session created, answered, a DTMF row and an
event per key, ended). Written one transaction each, they cost ~30 round trips to PostgreSQL
per call, and those round trips were most of the engine's CPU per call (measured with
py-spy under ``bench/ivr.py``); a click-to-call written through took ~41 round trips
(``bench/originate.py``). The journal holds such a call's session in memory;
every change is applied there at once (the domain state machine still decides) and queued
here, and a single writer task commits the queue every ``interval`` seconds, all sessions
together, in **one statement** (one round trip): the sessions' latest rows (upsert), their
events, their callback outbox rows and their DTMF rows.

What holds:

- Atomic per batch: a batch commits whole or not at all; a committed event's session row,
  outbox row and DTMF rows are committed with it.
- Events are published to the :class:`~engine.events.EventBus` after their batch commits,
  in ``seq`` order per session, as :class:`~engine.store.write_through.WriteThrough` does.
  So a subscriber never sees a fact that is not in the database.
- PostgreSQL away: the batch is kept and retried with capped backoff; calls in progress go
  on. The backlog is bounded: past ``max_backlog`` queued rows, :meth:`CallJournal.take`
  and :meth:`CallJournal.require_room` refuse new calls (``DatabaseUnavailable``) while
  calls already owned keep recording.
- A batch PostgreSQL refuses (a bug, or e.g. an IVR option deleted mid-call) is retried one
  session at a time, so one bad session cannot block the others; that session's rows are
  logged and dropped.
- Readers in this process see live sessions from memory: the journal is their owner
  (:class:`~engine.store.ownership.SessionOwnership`) and answers ``get``/``by_id``;
  listings and stats read PostgreSQL and may lag by up to ``interval``. Code that writes a
  row referring to a live session outside the journal first awaits :meth:`created` (the
  session's row is in PostgreSQL), or :meth:`flush` when the row must also come after
  every fact of the session so far.
- One owner: a session is owned by the process that opened it (single engine per database
  for now, as the event bus already assumes).

How a session comes and goes:

- :meth:`CallJournal.take`: an IVR call, born in memory (its row is written behind too);
  the journal lets it go when it ends.
- :meth:`CallJournal.adopt`: a session whose row PostgreSQL already has (a click-to-call,
  created write-through so that its idempotency key is exact; or one found live by the
  resync after a restart). The journal keeps it after it ends, until :meth:`release`: the
  facts that follow a click-to-call's end (the other leg's hangup, the recording's end)
  are then read and written in memory too.
- A session let go stays owned until its last batch is committed: whoever reads it next
  from PostgreSQL (write-through) reads what the journal wrote, never an older row.

Lifecycle: :meth:`CallJournal.start` starts the writer task; :meth:`CallJournal.close`
writes what is queued (within ``close_grace`` seconds), then stops it. Closed, it refuses
new sessions and changes (``ClosedResourceError``).

An event's ``id`` is assigned by PostgreSQL, so :meth:`transition` and :meth:`append_event`
return events whose ``id`` is 0; published events carry the real id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import structlog

from engine import json_text
from engine.contract import status_callback
from engine.domain.call import CallStatus
from engine.domain.event_types import CallEventType
from engine.domain.values import evolve
from engine.errors import ClosedResourceError, DatabaseUnavailable, NotFound
from engine.events import EventBus
from engine.health import HealthReport
from engine.lifecycle import Lifecycle, cancel_tasks
from engine.store.database import Database
from engine.store.records import (
    EVENT_COLUMNS,
    SESSION_COLUMNS,
    CallEvent,
    DtmfRow,
    NewSession,
    StoredSession,
)

__all__ = ["CallJournal"]

log = structlog.get_logger(__name__)

# How long :meth:`CallJournal.flush` waits for PostgreSQL by default: a healthy writer
# commits every interval (50 ms), so this only runs out while PostgreSQL is away.
FLUSH_TIMEOUT = 10.0

DEFAULT_INTERVAL: Final = 0.05
DEFAULT_MAX_BACKLOG: Final = 100_000
_RETRY_CAP: Final = 2.0

# One round trip: the sessions' latest state (upsert; an older version never overwrites a
# newer one), their events, the outbox rows of the events that have a callback URL (joined
# to the event ids PostgreSQL assigns), their DTMF rows. Foreign keys are checked at the
# end of the statement, so an event may refer to a session inserted by the same statement.
_FLUSH = """
WITH s AS (
    INSERT INTO click_to_call_session AS t ({cols})
    SELECT {cols} FROM jsonb_populate_recordset(NULL::click_to_call_session, $1::text::jsonb)
    ON CONFLICT (id) DO UPDATE SET {updates}
    WHERE t.version < EXCLUDED.version
), e AS (
    INSERT INTO call_event (tenant_id, session_id, seq, event_type, status_from, status_to,
                            payload, occurred_at)
    SELECT tenant_id, session_id, seq, event_type, status_from, status_to, payload, occurred_at
    FROM jsonb_populate_recordset(NULL::call_event, $2::text::jsonb)
    RETURNING id, session_id, seq
), o AS (
    INSERT INTO callback_outbox (tenant_id, session_id, event_id, url, payload)
    SELECT c.tenant_id, c.session_id, e.id, c.url,
           c.payload || jsonb_build_object('event_id', e.id)
    FROM jsonb_to_recordset($3::text::jsonb)
         AS c(tenant_id uuid, session_id uuid, seq integer, url text, payload jsonb)
    JOIN e ON e.session_id = c.session_id AND e.seq = c.seq
), d AS (
    INSERT INTO call_dtmf_interaction (tenant_id, session_id, menu_id, menu_version, option_id,
                                       digit, input_value, outcome, attempt, ms_since_prompt,
                                       channel_id, occurred_at)
    SELECT tenant_id, session_id, menu_id, menu_version, option_id, digit, input_value,
           outcome, attempt, ms_since_prompt, channel_id, occurred_at
    FROM jsonb_populate_recordset(NULL::call_dtmf_interaction, $4::text::jsonb)
)
SELECT id, session_id, seq FROM e
"""


@dataclasses.dataclass(slots=True)
class _Pending:
    """What is queued for one session since the last batch."""

    session: StoredSession
    events: list[CallEvent] = dataclasses.field(default_factory=list)
    callbacks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    dtmf: list[DtmfRow] = dataclasses.field(default_factory=list)

    @property
    def size(self) -> int:
        return 1 + len(self.events) + len(self.callbacks) + len(self.dtmf)


def _now() -> datetime:
    return datetime.now(UTC)


class CallJournal(Lifecycle):
    """Live sessions in memory, written behind in batches. See the module docstring."""

    def __init__(
        self,
        db: Database,
        events: EventBus | None = None,
        *,
        interval: float = DEFAULT_INTERVAL,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        close_grace: float = 10.0,
        flush_timeout: float = FLUSH_TIMEOUT,
    ) -> None:
        self._db = db
        self._events = events
        self._interval = interval
        self._max_backlog = max_backlog
        self._close_grace = close_grace
        self._flush_timeout = flush_timeout
        # owned: live sessions, and ended ones kept or not yet written (module docstring)
        self._live: dict[uuid.UUID, StoredSession] = {}
        self._callback_urls: dict[uuid.UUID, str | None] = {}
        self._kept: set[uuid.UUID] = set()  # adopted, not released: kept after their end
        self._leaving: set[uuid.UUID] = set()  # let go, owned until their last batch commits
        self._unborn: set[uuid.UUID] = set()  # taken here, their row not committed yet
        self._pending: dict[uuid.UUID, _Pending] = {}
        self._writing: dict[uuid.UUID, _Pending] = {}  # the batch being committed
        self._backlog = 0
        # monotonic time of the oldest row queued and not yet written: in ``_pending``, in
        # the batch being written (None: nothing there)
        self._pending_since: float | None = None
        self._writing_since: float | None = None
        self._queued = 0  # generation: bumped by every change queued
        self._written = 0  # the generation the last committed batch covered
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._hurry = False
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0  # rows PostgreSQL refused (logged)
        self.batches = 0  # committed
        self.failures = 0  # attempts that found PostgreSQL away (the batch was kept)
        # where the writer reports "journal" (up; down while rows wait for PostgreSQL)
        self.health: HealthReport | None = None
        self._failing = False

    # -- what callers use -------------------------------------------------------------------

    def owns(self, session_id: uuid.UUID) -> bool:
        return session_id in self._live

    def live_count(self) -> int:
        """The sessions it owns that have not ended: this engine's live calls."""
        return sum(1 for s in self._live.values() if not s.status.is_terminal)

    def backlog_age(self) -> float:
        """Seconds since the oldest row not yet committed was queued; 0 when none waits."""
        oldest = _earliest(self._writing_since, self._pending_since)
        return 0.0 if oldest is None else time.monotonic() - oldest

    async def by_id(self, session_id: uuid.UUID) -> StoredSession | None:
        return self._live.get(session_id)

    async def get(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> StoredSession:
        return self._held(tenant_id, session_id)

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
        """:meth:`change` with a status ``target``, for a session of ``tenant_id``."""
        self._held(tenant_id, session_id)
        return self.change(
            session_id,
            target=target,
            event_type=event_type,
            payload=payload,
            changes=changes,
            at=at,
        )

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
        """:meth:`change` without a status change, for a session of ``tenant_id``."""
        self._held(tenant_id, session_id)
        return self.change(
            session_id, target=None, event_type=event_type, payload=payload, changes=changes, at=at
        )

    def _held(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> StoredSession:
        """The live session, or NotFound (also when another tenant's: not theirs to see)."""
        session = self._live.get(session_id)
        if session is None or session.tenant_id != tenant_id:
            raise NotFound("session", session_id)
        return session

    @property
    def backlog(self) -> int:
        """Rows queued and not yet committed."""
        return self._backlog

    def require_room(self) -> None:
        """Raise ``DatabaseUnavailable`` while the backlog is full (new calls are refused;
        calls already owned keep recording), ``ClosedResourceError`` once closed."""
        self._check_open()
        if self._backlog >= self._max_backlog:
            raise DatabaseUnavailable(
                f"{self._backlog} call rows are waiting for PostgreSQL; refusing new calls"
            )

    def take(
        self, new: NewSession, *, tenant_callback_url: str | None = None
    ) -> tuple[StoredSession, CallEvent]:
        """A queued session owned in memory from now on, and its ``session.created`` event;
        let go when it ends."""
        self.require_room()
        now = _now()
        session = StoredSession(
            id=uuid.uuid4(),
            tenant_id=new.tenant_id,
            provider_id=new.provider_id,
            direction=new.direction,
            status=CallStatus.QUEUED,
            agent_number=new.agent_number,
            customer_number=new.customer_number,
            caller_id=new.caller_id,
            agent_id=new.agent_id,
            external_ref=new.external_ref,
            callback_url=new.callback_url,
            metadata=dict(new.metadata),
            idempotency_key=None,
            request_hash=None,
            agent_channel_id=new.agent_channel_id,
            customer_channel_id=None,
            bridge_id=None,
            provider_call_id=None,
            hangup_cause=None,
            hangup_cause_text=None,
            end_reason=None,
            recording_path=None,
            recording_duration_ms=None,
            ring_ms=None,
            talk_ms=None,
            created_at=now,
            dialing_agent_at=None,
            agent_answered_at=None,
            dialing_customer_at=None,
            connected_at=None,
            ended_at=None,
            updated_at=now,
            version=1,
            caller_number=new.caller_number,
            dialed_number=new.dialed_number,
            ivr_menu=new.ivr_menu,
            node=self._db.node,  # as the row's default (the connection's ctc.node) says
        )
        self._live[session.id] = session
        self._unborn.add(session.id)
        self._callback_urls[session.id] = new.callback_url or tenant_callback_url
        event = self._queue(
            session,
            event_type=CallEventType.SESSION_CREATED,
            status_from=None,
            status_to=session.status.value,
            payload={"direction": session.direction.value},
            at=now,
            status_change=True,  # the creation (queued) sends a callback, as write-through
        )
        return session, event

    def adopt(self, session: StoredSession, *, tenant_callback_url: str | None = None) -> None:
        """Own ``session``, a live row PostgreSQL has, from now on, and keep it after its end
        until :meth:`release`. A session owned already stays as it is (its state in memory
        is the newer one)."""
        self._check_open()
        if session.status.is_terminal:
            raise ValueError(f"session {session.id} has ended ({session.status.value})")
        if session.id in self._live:
            return
        self._live[session.id] = session
        self._callback_urls[session.id] = session.callback_url or tenant_callback_url
        self._kept.add(session.id)

    def release(self, session_id: uuid.UUID) -> None:
        """The adopter needs the session no longer once it has ended: let it go then (now,
        if it has), like a taken one."""
        self._kept.discard(session_id)
        session = self._live.get(session_id)
        if session is not None and session.status.is_terminal:
            self._let_go(session_id)

    def _let_go(self, session_id: uuid.UUID) -> None:
        """Stop owning an ended session once what is queued of it is committed."""
        if session_id in self._pending or session_id in self._writing:
            self._leaving.add(session_id)
        else:
            self._forget(session_id)

    def _forget(self, session_id: uuid.UUID) -> None:
        self._leaving.discard(session_id)
        self._unborn.discard(session_id)
        self._live.pop(session_id, None)
        self._callback_urls.pop(session_id, None)

    def change(
        self,
        session_id: uuid.UUID,
        *,
        target: CallStatus | None,
        event_type: CallEventType,
        payload: Mapping[str, Any] | None,
        changes: Mapping[str, Any],
        at: datetime | None,
    ) -> tuple[StoredSession, CallEvent]:
        """Apply a transition (``target``) or a plain fact to a live session and queue it.

        ``changes`` are already checked column changes; the state machine decides the rest
        and raises :class:`~engine.errors.IllegalTransition` as the database path does.
        """
        self._check_open()
        current = self._live.get(session_id)
        if current is None:
            raise NotFound("session", session_id)
        when = at or _now()
        columns = dict(changes)
        status_from = status_to = None
        if target is not None:
            decided = current.machine().transition(target, when)
            columns.update(decided.changes)
            status_from, status_to = decided.status_from.value, decided.status_to.value
        if "status" in columns:
            columns["status"] = CallStatus(columns["status"])
        updated = evolve(current, **columns, version=current.version + 1, updated_at=_now())
        self._live[session_id] = updated
        event = self._queue(
            updated,
            event_type=event_type,
            status_from=status_from,
            status_to=status_to,
            payload=dict(payload or {}),
            at=when,
            status_change=target is not None,
        )
        if updated.status.is_terminal and session_id not in self._kept:
            self._let_go(session_id)
        return updated, event

    def dtmf(self, row: DtmfRow) -> None:
        self._check_open()
        session = self._live.get(row.session_id)
        if session is None:
            raise NotFound("session", row.session_id)
        self._pending_for(session).dtmf.append(row)
        self._bump(1)

    async def flush(self) -> None:
        """Return once everything queued before this call is committed (or dropped),
        including a batch being written right now; ``DatabaseUnavailable`` when that takes
        longer than ``flush_timeout`` seconds (PostgreSQL away: the writer keeps retrying,
        and a caller holding a call's lock must not wait for it without end)."""
        if self._queued <= self._written:
            return
        self.require_open("flushed")
        try:
            async with asyncio.timeout(self._flush_timeout):
                await self._flushed()
        except TimeoutError:
            raise DatabaseUnavailable(
                f"{self._backlog} call rows have not reached PostgreSQL "
                f"within {self._flush_timeout:g} s"
            ) from None

    async def created(self, session_ids: Iterable[uuid.UUID]) -> None:
        """Return once the rows of those of ``session_ids`` born here (:meth:`take`) are in
        PostgreSQL. Whoever writes a row that refers to a session (a foreign key) outside
        the journal awaits this first. A session whose first batch has committed, or one
        adopted (its row was there), costs nothing: only one still waiting for its first
        batch makes this a :meth:`flush` (``DatabaseUnavailable`` after
        ``flush_timeout``), so rows written long after a call began never hurry the
        writer."""
        if not self._unborn.isdisjoint(session_ids):
            await self.flush()

    async def _flushed(self) -> None:
        if self._queued <= self._written:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((self._queued, waiter))
        self._hurry = True
        self._wake.set()
        # shielded: a flush that gives up leaves the waiter for the writer to settle
        await asyncio.shield(waiter)

    # -- lifecycle --------------------------------------------------------------------------

    async def _open(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._writer(), name="call-journal")

    async def _close(self) -> None:
        """Write what is queued (within ``close_grace`` seconds), then stop the writer."""
        try:
            if self._task is not None and not self._task.done():
                with contextlib.suppress(TimeoutError, ClosedResourceError):
                    await asyncio.wait_for(asyncio.shield(self._flushed()), self._close_grace)
        finally:
            task, self._task = self._task, None
            await cancel_tasks(task)
            if self._backlog:
                log.error("journal.closed_with_backlog", rows=self._backlog)
            self._fail_waiters(ClosedResourceError("CallJournal is closed"))

    # -- queueing ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        self.require_open("changed")

    def _pending_for(self, session: StoredSession) -> _Pending:
        """The session's entry in the next batch, carrying its latest row."""
        pending = self._pending.get(session.id)
        if pending is None:
            pending = self._pending[session.id] = _Pending(session)
            self._backlog += 1  # the session row itself
        pending.session = session
        return pending

    def _queue(
        self,
        session: StoredSession,
        *,
        event_type: CallEventType,
        status_from: str | None,
        status_to: str | None,
        payload: dict[str, Any],
        at: datetime,
        status_change: bool,
    ) -> CallEvent:
        pending = self._pending_for(session)
        url = self._callback_urls.get(session.id) if status_change else None
        event = CallEvent(
            id=0,
            tenant_id=session.tenant_id,
            session_id=session.id,
            seq=session.version,
            event_type=event_type,
            status_from=status_from,
            status_to=status_to,
            payload=payload,
            occurred_at=at,
            callback_queued=bool(url),
            direction=session.direction,
            agent=session.agent_id or session.agent_number,
        )
        pending.events.append(event)
        added = 1
        if url:
            pending.callbacks.append(
                {
                    "tenant_id": session.tenant_id,
                    "session_id": session.id,
                    "seq": event.seq,
                    "url": url,
                    "payload": status_callback(session, event).model_dump(mode="json"),
                }
            )
            added += 1
        self._bump(added)
        return event

    def _bump(self, rows: int) -> None:
        self._backlog += rows
        self._queued += 1
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._wake.set()

    # -- the writer -------------------------------------------------------------------------

    async def _writer(self) -> None:
        delay = 0.05
        while True:
            await self._wake.wait()
            if not self._hurry:
                await asyncio.sleep(self._interval)  # gather a batch: one round trip for all
            self._wake.clear()
            self._hurry = False
            generation, batch = self._queued, self._pending
            self._pending, self._writing = {}, batch
            self._writing_since, self._pending_since = self._pending_since, None
            size = sum(p.size for p in batch.values())
            try:
                written = await self._write(batch)
            except ClosedResourceError as exc:
                # the database was closed under us (shutdown order): nothing more to do
                self._pending, self._writing = batch, {}
                self._requeued()
                log.error("journal.database_closed", rows=self._backlog, error=str(exc))
                self._fail_waiters(exc)
                return
            except (DatabaseUnavailable, _Retry) as exc:
                # keep the batch (older than anything queued since) and try again later
                for sid, later in self._pending.items():
                    if sid in batch:
                        _merge(batch[sid], later)
                    else:
                        batch[sid] = later
                self._pending, self._writing = batch, {}
                self._requeued()
                self.failures += 1
                self._failing = True
                if self.health is not None:
                    self.health.set(
                        "journal",
                        "down",
                        f"{self._backlog} call rows waiting for PostgreSQL: {exc}",
                        required=False,
                    )
                log.warning("journal.write_failed", error=str(exc), retry_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_CAP)
                self._wake.set()
                continue
            delay = 0.05
            if self._failing:
                self._failing = False
                log.info("journal.writing_again", rows=size)
                if self.health is not None:
                    self.health.set("journal", "up", "writing", required=False)
            self.batches += 1
            self._backlog -= size
            # born: their rows are in (or, refused, never will be: nothing to wait for)
            self._unborn.difference_update(batch)
            self._writing = {}
            self._writing_since = None
            self._publish(batch, written)
            for sid in self._leaving.intersection(batch):
                if sid not in self._pending:  # else its next batch lets it go
                    self._forget(sid)
            self._written = generation
            self._wake_waiters()

    def _requeued(self) -> None:
        """The batch being written went back to ``_pending``, older than what came since."""
        self._pending_since = _earliest(self._writing_since, self._pending_since)
        self._writing_since = None

    def _fail_waiters(self, exc: Exception) -> None:
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(exc)
        self._waiters.clear()

    def _wake_waiters(self) -> None:
        still = []
        for generation, waiter in self._waiters:
            if generation <= self._written:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((generation, waiter))
        self._waiters = still
        if still:
            self._hurry = True
            self._wake.set()

    async def _write(self, batch: dict[uuid.UUID, _Pending]) -> dict[tuple[uuid.UUID, int], int]:
        """Commit ``batch``; event ids by (session, seq). Isolates a session PostgreSQL refuses."""
        try:
            return await self._statement(list(batch.values()))
        except asyncpg.PostgresError as exc:
            if len(batch) == 1:
                self._drop(next(iter(batch.values())), exc)
                return {}
        ids: dict[tuple[uuid.UUID, int], int] = {}
        for pending in batch.values():
            try:
                ids.update(await self._statement([pending]))
            except asyncpg.PostgresError as exc:
                self._drop(pending, exc)
        return ids

    def _drop(self, pending: _Pending, exc: Exception) -> None:
        self.dropped += pending.size
        pending.events.clear()  # nothing of it was written: publish nothing
        log.error(
            "journal.rows_refused",
            call_id=str(pending.session.id),
            rows=pending.size,
            error=str(exc),
        )

    async def _statement(self, batch: list[_Pending]) -> dict[tuple[uuid.UUID, int], int]:
        """One round trip for ``batch``; a refusal is an ``asyncpg.PostgresError``, a
        condition that passes a :class:`_Retry`."""
        # in id order, as a batch of quality rows refers to its sessions (see _KEY_COLUMNS)
        batch = sorted(batch, key=lambda pending: pending.session.id)
        sessions = [_row(p.session, _WRITTEN_COLUMNS) for p in batch]
        events = [_row(e, _EVENT_FIELDS) for p in batch for e in p.events]
        callbacks = [c for p in batch for c in p.callbacks]
        dtmf = [_row(d, _DTMF_FIELDS) for p in batch for d in p.dtmf]
        try:
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    _FLUSH_SQL,
                    _dumps(sessions),
                    _dumps(events),
                    _dumps(callbacks),
                    _dumps(dtmf),
                )
        except asyncpg.PostgresError as exc:
            if _transient(exc):
                raise _Retry(str(exc)) from exc
            raise
        return {(r["session_id"], r["seq"]): r["id"] for r in rows}

    def _publish(
        self, batch: dict[uuid.UUID, _Pending], ids: dict[tuple[uuid.UUID, int], int]
    ) -> None:
        if self._events is None:
            return
        for pending in batch.values():
            for event in pending.events:
                event_id = ids.get((event.session_id, event.seq))
                if event_id is not None:
                    self._events.publish(evolve(event, id=event_id))


class _Retry(Exception):
    """PostgreSQL answered, but with a condition that passes (shutdown, deadlock...)."""


# SQLSTATE classes that say "try again later", not "this row is wrong": connection
# exception, insufficient resources, operator intervention (shutdown), transaction rollback.
_TRANSIENT_CLASSES: Final = ("08", "53", "57", "40")


def _transient(exc: asyncpg.PostgresError) -> bool:
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in _TRANSIENT_CLASSES


def _merge(older: _Pending, newer: _Pending) -> None:
    older.session = newer.session
    older.events.extend(newer.events)
    older.callbacks.extend(newer.callbacks)
    older.dtmf.extend(newer.dtmf)


# never `node`: a new row takes its default (this engine), and only a claim or a failover
# (engine/store/claims.py) changes the owner of a row
_WRITTEN_COLUMNS: Final = tuple(c for c in SESSION_COLUMNS if c != "node")


def _row(obj: object, fields: tuple[str, ...]) -> dict[str, Any]:
    # not dataclasses.asdict: that deep-copies every value, and this runs for every row
    return {name: getattr(obj, name) for name in fields}


_DTMF_FIELDS: Final = tuple(f.name for f in dataclasses.fields(DtmfRow))
# call_event's columns we write (its id comes from PostgreSQL)
_EVENT_FIELDS: Final = tuple(c for c in EVENT_COLUMNS if c != "id")


def _dumps(rows: list[dict[str, Any]]) -> str:
    return json_text.dumps(rows)


# The upsert sets no key column (``id``, ``tenant_id``: every foreign key refers to
# ``UNIQUE (tenant_id, id)``; a session's tenant never changes). Naming one in ``SET`` makes
# ``ON CONFLICT DO UPDATE`` lock the row ``FOR UPDATE``, which waits for, and deadlocks with,
# the ``FOR KEY SHARE`` lock every insert referring to the session takes (billing lines,
# quality rows, agent activity); without, it is ``FOR NO KEY UPDATE``, which does not.
_KEY_COLUMNS: Final = frozenset({"id", "tenant_id"})


def _flush_sql() -> str:
    cols = ", ".join(_WRITTEN_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _WRITTEN_COLUMNS if c not in _KEY_COLUMNS)
    return _FLUSH.format(cols=cols, updates=updates)


_FLUSH_SQL: Final = _flush_sql()


def _earliest(first: float | None, second: float | None) -> float | None:
    if first is None or second is None:
        return second if first is None else first
    return min(first, second)

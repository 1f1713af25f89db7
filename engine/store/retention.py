"""The retention prune's SQL: old ``call_event`` rows, delivered ``callback_outbox`` rows,
and the recordings of calls that ended long ago.

Why batches over the primary key, not one ``DELETE ... WHERE recorded_at < cut-off``: one
statement over millions of rows holds its row locks and its snapshot for minutes, makes
one huge WAL burst and leaves autovacuum all the dead rows at once. A batch here walks the
next ``limit`` rows by id from where the last one stopped (an index range scan: ids grow
with time, so the oldest rows come first), deletes those of them that are old enough, and
commits. ``bench/retention.py`` measured it against dropping monthly partitions; the
figures and the choice are in the README's design notes.

What a batch never deletes:

- an event newer than the cut-off (the ``recorded_at`` test is in the ``DELETE`` itself;
  the walk only decides where to stop);
- an event an outbox row still points at: a callback waiting for delivery (or dead,
  kept for an admin to look at) keeps its event; PostgreSQL's own ``ON DELETE CASCADE``
  would otherwise take the callback with it;
- an outbox row that is not ``delivered``.

Concurrent calls are not blocked: a ``DELETE`` takes a ``ROW EXCLUSIVE`` table lock, which
does not conflict with the ``INSERT`` of new events and callbacks, and its row locks are on
old rows no call writes (the retention integration tests hold a batch open and
writes a call meanwhile). ``call_event`` is append-only by trigger; the batch's
transaction says ``SET LOCAL ctc.prune = 'retention'``, which that trigger lets delete
(migration 0008).

Number-list entries whose ``expires_at`` has passed are deleted too (the pre-dial check
ignores them already; a batch of ``limit`` at a time, by the partial index of 0022).

Sessions are kept: one row per call, which stats, billing and the ERP's references read,
against ten or more events per call. A session whose events were pruned has
``version`` > the number of its events.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final, Literal

from engine.domain.retention import Cutoffs
from engine.store.database import Database, returned

__all__ = [
    "BatchResult",
    "DueCounts",
    "DueRecording",
    "PrunedTable",
    "RecordingDeletion",
    "RetentionRepository",
]

PrunedTable = Literal["call_event", "callback_outbox"]
RecordingDeletion = Literal["retention", "missing"]

_AS_PRUNE: Final = "SELECT set_config('ctc.prune', 'retention', true)"
# pg_advisory_xact_lock key: "ctc-ret" in ASCII. Engines sharing one database take turns
# batch by batch instead of deleting the same rows at once (which can deadlock).
_BATCH_LOCK: Final = "SELECT pg_advisory_xact_lock(x'6374632d726574'::bigint)"

# an outbox row that keeps its event: anything but a delivered row older than $2
# ($2 NULL: delivered rows are kept forever, so every outbox row keeps its event)
_KEEPS_EVENT: Final = (
    "SELECT 1 FROM callback_outbox o WHERE o.event_id = e.id"
    " AND NOT (o.state = 'delivered' AND o.delivered_at < $2)"
)
_KEEPS_EVENT_NOW: Final = "SELECT 1 FROM callback_outbox o WHERE o.event_id = e.id"

_EVENTS_BATCH: Final = (
    "WITH scanned AS ("
    "  SELECT id, recorded_at FROM call_event WHERE id > $1 ORDER BY id LIMIT $3"
    "), gone AS ("
    "  DELETE FROM call_event e USING scanned s"
    "   WHERE e.id = s.id AND e.recorded_at < $2"
    f"    AND NOT EXISTS ({_KEEPS_EVENT_NOW})"
    "  RETURNING e.id"
    ") "
    "SELECT (SELECT count(*) FROM gone) AS deleted,"
    "       (SELECT max(id) FROM scanned) AS last_id,"
    "       coalesce((SELECT bool_or(recorded_at >= $2) FROM scanned), true) AS reached"
)

_CALLBACKS_BATCH: Final = (
    "WITH scanned AS ("
    "  SELECT id, created_at FROM callback_outbox WHERE id > $1 ORDER BY id LIMIT $3"
    "), gone AS ("
    "  DELETE FROM callback_outbox c USING scanned s"
    "   WHERE c.id = s.id AND c.state = 'delivered' AND c.delivered_at < $2"
    "  RETURNING c.id"
    ") "
    "SELECT (SELECT count(*) FROM gone) AS deleted,"
    "       (SELECT max(id) FROM scanned) AS last_id,"
    # delivered after it was created: past the first row created after the cut-off,
    # nothing can be due (ids grow with created_at)
    "       coalesce((SELECT bool_or(created_at >= $2) FROM scanned), true) AS reached"
)


@dataclasses.dataclass(frozen=True, slots=True)
class BatchResult:
    """One batch: rows it deleted, the last id it looked at, whether the walk is done."""

    deleted: int
    last_id: int
    done: bool


@dataclasses.dataclass(frozen=True, slots=True)
class DueCounts:
    """What a prune with these cut-offs would delete now (``None``: that kind is kept)."""

    call_events: int | None
    delivered_callbacks: int | None
    recordings: int | None
    expired_list_entries: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class DueRecording:
    session_id: uuid.UUID
    tenant_id: uuid.UUID
    path: str
    ended_at: datetime


def _count_events(cutoff: datetime, cutoffs: Cutoffs) -> tuple[str, list[datetime]]:
    """The dry run's count of events: those a prune deletes once its callbacks step ran."""
    count = "SELECT count(*) FROM call_event e WHERE e.recorded_at < $1 AND NOT EXISTS "
    if cutoffs.delivered_callbacks is None:
        return f"{count}({_KEEPS_EVENT_NOW})", [cutoff]
    return f"{count}({_KEEPS_EVENT})", [cutoff, cutoffs.delivered_callbacks]


class RetentionRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        # test seam: awaited inside each batch's transaction, after its DELETE (a test
        # holds a batch open there to show calls are written meanwhile)
        self.in_batch: Callable[[PrunedTable], Awaitable[None]] | None = None

    async def count_due(self, cutoffs: Cutoffs) -> DueCounts:
        """What a prune would delete now, the way it would (the dry run). Counting the
        events reads the whole table: seconds at ten million rows, an admin's command."""
        async with self._db.connection() as conn:
            events = None
            if cutoffs.call_events is not None:
                query, args = _count_events(cutoffs.call_events, cutoffs)
                events = await conn.fetchval(query, *args)
            callbacks = None
            if cutoffs.delivered_callbacks is not None:
                callbacks = await conn.fetchval(
                    "SELECT count(*) FROM callback_outbox"
                    " WHERE state = 'delivered' AND delivered_at < $1",
                    cutoffs.delivered_callbacks,
                )
            recordings = None
            if cutoffs.recordings is not None:
                recordings = await conn.fetchval(
                    "SELECT count(*) FROM click_to_call_session WHERE recording_path IS NOT NULL"
                    " AND recording_deleted_at IS NULL AND ended_at < $1",
                    cutoffs.recordings,
                )
            expired = 0
            if cutoffs.expired_entries is not None:
                expired = await conn.fetchval(
                    "SELECT count(*) FROM phone_number_list WHERE expires_at < $1",
                    cutoffs.expired_entries,
                )
        return DueCounts(events, callbacks, recordings, expired)

    async def purge_expired_list_entries(self, now: datetime, limit: int) -> int:
        """Delete up to ``limit`` number-list entries that expired before ``now``; how many."""
        status = await self._db.execute(
            "DELETE FROM phone_number_list WHERE id IN (SELECT id FROM phone_number_list "
            "WHERE expires_at < $1 LIMIT $2)",
            now,
            limit,
        )
        return int(status.rsplit(" ", 1)[-1])

    async def prune_batch(
        self, table: PrunedTable, cutoff: datetime, *, after_id: int, limit: int
    ) -> BatchResult:
        """Delete what is due among the ``limit`` rows of ``table`` after ``after_id``, in
        one transaction; ``done`` once the walk reached rows newer than ``cutoff`` (or the
        end of the table)."""
        statement = _EVENTS_BATCH if table == "call_event" else _CALLBACKS_BATCH
        async with self._db.transaction() as conn:
            await conn.execute(_BATCH_LOCK)
            await conn.execute(_AS_PRUNE)
            row = returned(await conn.fetchrow(statement, after_id, cutoff, limit), statement)
            if self.in_batch is not None:
                await self.in_batch(table)
        last_id = row["last_id"]
        return BatchResult(
            deleted=int(row["deleted"]),
            last_id=after_id if last_id is None else int(last_id),
            done=last_id is None or bool(row["reached"]),
        )

    async def recordings_due(self, cutoff: datetime, limit: int) -> list[DueRecording]:
        """Up to ``limit`` recordings of calls that ended before ``cutoff`` whose file is
        not yet marked deleted, oldest first."""
        rows = await self._db.fetch(
            "SELECT id, tenant_id, recording_path, ended_at FROM click_to_call_session"
            " WHERE recording_path IS NOT NULL AND recording_deleted_at IS NULL"
            "   AND ended_at < $1 ORDER BY ended_at LIMIT $2",
            cutoff,
            limit,
        )
        return [
            DueRecording(r["id"], r["tenant_id"], r["recording_path"], r["ended_at"]) for r in rows
        ]

    async def mark_recording_deleted(
        self, recording: DueRecording, reason: RecordingDeletion
    ) -> bool:
        """Note on the session that its recording file is gone; False if the session's
        recording changed meanwhile (then nothing is noted)."""
        status = await self._db.execute(
            "UPDATE click_to_call_session SET recording_deleted_at = now(),"
            " recording_deleted_reason = $3"
            " WHERE id = $1 AND recording_path = $2 AND recording_deleted_at IS NULL",
            recording.session_id,
            recording.path,
            reason,
        )
        return status.endswith(" 1")

"""Retention: what ``ctc db prune`` and the engine's periodic prune do.

One run takes one ``now``, derives the cut-offs from the policy
(:class:`~engine.domain.retention.RetentionPolicy`) and then, in this order:

1. delivered callbacks older than their cut-off (so the events they pointed at may go);
2. call events older than theirs, except those an outbox row still points at;
3. number-list entries whose expiry has passed (the pre-dial check ignores them already);
4. recordings of calls that ended before theirs: the file is deleted and the session row
   notes when and why (``recording_deleted_reason``: ``retention``, or ``missing`` when
   the file was already gone), so the API says so instead of handing out a dead path.

Steps 1 and 2 go in batches of ``batch_size`` rows, one short transaction each, with
``batch_pause`` seconds between them (:mod:`engine.store.retention` says why that does
not block calls). The dry run (:meth:`RetentionService.plan`) counts what the same
cut-offs would delete, without deleting.

Failure policy: a database error ends the run (the error propagates; the periodic pruner
reports it in health and tries again next interval); what was committed stays deleted,
and the next run carries on from the oldest rows left. A recording file the system
refuses to delete is logged, left unmarked and tried again next run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, Literal, TypeAlias

import structlog

from engine.app.ports import FileDeletion, RecordingFiles
from engine.config.settings import RetentionSettings
from engine.domain.retention import Cutoffs, RetentionPolicy
from engine.store.retention import DueCounts, PrunedTable, RetentionRepository

__all__ = ["PruneKind", "PrunePlan", "PruneReport", "RetentionService"]

log = structlog.get_logger(__name__)

PruneKind: TypeAlias = Literal[
    "call_events", "delivered_callbacks", "recordings", "expired_list_entries"
]
"""What a prune deletes (the ``kind`` label of ``ctc_retention_pruned_total``)."""

_KIND_OF: Final[dict[PrunedTable, PruneKind]] = {
    "call_event": "call_events",
    "callback_outbox": "delivered_callbacks",
}


@dataclasses.dataclass(frozen=True, slots=True)
class PrunePlan:
    """The dry run: the cut-offs and what they would delete now."""

    cutoffs: Cutoffs
    due: DueCounts


@dataclasses.dataclass(slots=True)
class PruneReport:
    """What one run deleted."""

    cutoffs: Cutoffs
    call_events: int = 0
    delivered_callbacks: int = 0
    expired_list_entries: int = 0
    recordings: dict[FileDeletion, int] = dataclasses.field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0

    def count(self, kind: PruneKind) -> int:
        if kind == "recordings":
            return self.recordings.get("deleted", 0) + self.recordings.get("missing", 0)
        if kind == "expired_list_entries":
            return self.expired_list_entries
        return self.call_events if kind == "call_events" else self.delivered_callbacks


class RetentionService:
    def __init__(
        self,
        repository: RetentionRepository,
        policy: RetentionPolicy,
        files: RecordingFiles,
        *,
        batch_size: int = 5000,
        batch_pause: float = 0.05,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repository = repository
        self._policy = policy
        self._files = files
        self._batch_size = batch_size
        self._batch_pause = batch_pause
        self._clock = clock
        # called after every batch with what it deleted (the pruner's metrics)
        self.on_pruned: Callable[[PruneKind, int], None] | None = None

    @classmethod
    def from_settings(
        cls, repository: RetentionRepository, settings: RetentionSettings, files: RecordingFiles
    ) -> RetentionService:
        """The service the ``retention:`` settings describe."""
        policy = RetentionPolicy(
            call_events_days=settings.call_events_days,
            delivered_callbacks_days=settings.delivered_callbacks_days,
            recordings_days=settings.recordings_days,
        )
        return cls(
            repository,
            policy,
            files,
            batch_size=settings.batch_size,
            batch_pause=settings.batch_pause,
        )

    @property
    def policy(self) -> RetentionPolicy:
        return self._policy

    async def plan(self) -> PrunePlan:
        """What a prune now would delete (``ctc db prune --dry-run``)."""
        cutoffs = self._policy.cutoffs(self._clock())
        return PrunePlan(cutoffs, await self._repository.count_due(cutoffs))

    async def prune(self) -> PruneReport:
        """Delete what the policy says has been kept long enough; see the module doc."""
        started = time.monotonic()
        report = PruneReport(self._policy.cutoffs(self._clock()))
        cutoffs = report.cutoffs
        if cutoffs.delivered_callbacks is not None:
            report.delivered_callbacks = await self._walk(
                "callback_outbox", cutoffs.delivered_callbacks, report
            )
        if cutoffs.call_events is not None:
            report.call_events = await self._walk("call_event", cutoffs.call_events, report)
        if cutoffs.expired_entries is not None:
            report.expired_list_entries = await self._purge_expired(cutoffs.expired_entries)
        if cutoffs.recordings is not None:
            await self._delete_recordings(cutoffs.recordings, report)
        report.seconds = time.monotonic() - started
        log.info(
            "retention.pruned",
            call_events=report.call_events,
            delivered_callbacks=report.delivered_callbacks,
            expired_list_entries=report.expired_list_entries,
            recordings=dict(report.recordings),
            batches=report.batches,
            seconds=round(report.seconds, 3),
        )
        return report

    async def _walk(self, table: PrunedTable, cutoff: datetime, report: PruneReport) -> int:
        """Batches over ``table`` from its oldest row until the walk passes ``cutoff``."""
        deleted = 0
        after_id = 0
        while True:
            batch = await self._repository.prune_batch(
                table, cutoff, after_id=after_id, limit=self._batch_size
            )
            report.batches += 1
            deleted += batch.deleted
            self._pruned(_KIND_OF[table], batch.deleted)
            if batch.done:
                return deleted
            after_id = batch.last_id
            await asyncio.sleep(self._batch_pause)

    async def _purge_expired(self, before: datetime) -> int:
        """Number-list entries that expired before ``before``, ``batch_size`` at a time."""
        deleted = 0
        while True:
            count = await self._repository.purge_expired_list_entries(before, self._batch_size)
            deleted += count
            self._pruned("expired_list_entries", count)
            if count < self._batch_size:
                return deleted
            await asyncio.sleep(self._batch_pause)

    async def _delete_recordings(self, cutoff: datetime, report: PruneReport) -> None:
        skipped: set[uuid.UUID] = set()  # refused or failed this run: not asked for again
        while True:
            due = [
                recording
                for recording in await self._repository.recordings_due(
                    cutoff, self._batch_size + len(skipped)
                )
                if recording.session_id not in skipped
            ]
            if not due:
                return
            for recording in due:
                outcome = await self._files.delete(recording.path)
                report.recordings[outcome] = report.recordings.get(outcome, 0) + 1
                if outcome in ("deleted", "missing"):
                    await self._repository.mark_recording_deleted(
                        recording, "retention" if outcome == "deleted" else "missing"
                    )
                    self._pruned("recordings", 1)
                else:
                    skipped.add(recording.session_id)
            await asyncio.sleep(self._batch_pause)

    def _pruned(self, kind: PruneKind, count: int) -> None:
        if self.on_pruned is not None and count:
            self.on_pruned(kind, count)

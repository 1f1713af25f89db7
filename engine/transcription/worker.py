"""The daemon's transcript worker: takes queued recordings from PostgreSQL and transcribes
them, never in the way of calls.

- The decoder is CPU-bound and blocking: it runs in worker processes
  (``transcripts.concurrency`` of them, default 1) started with a niceness of
  ``transcripts.nice``, so the event loop never waits on it and the kernel gives calls'
  work (Asterisk, the engine's loop) the CPU first. A process keeps its loaded model
  between recordings.
- Jobs come from ``call_transcript`` (:class:`~engine.store.transcripts.TranscriptRepository`):
  claimed one at a time per runner, leased, retried after ``backoff_initial`` doubling
  until ``max_attempts``, then failed. Each outcome is a call event
  (``transcript.completed`` / ``transcript.failed``).
- A worker process that dies (e.g. killed for memory) fails its job's attempt and is
  replaced.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import time
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from pathlib import Path

import structlog

from engine.app.ports import Transcriber
from engine.config.settings import TranscriptSettings
from engine.domain.event_types import CallEventType
from engine.domain.transcripts import Transcript, retry_delay
from engine.errors import CtcError, TranscriptionError
from engine.health import HealthReport
from engine.lifecycle import Lifecycle, cancel_tasks
from engine.store.records import TranscriptJob
from engine.store.repositories import Store

__all__ = ["TranscriptWorker"]

log = structlog.get_logger(__name__)


def _lower_priority(nice: int) -> None:
    """In each worker process: yield the CPU to calls."""
    with contextlib.suppress(OSError):
        os.nice(nice)


def _transcribe(transcriber: Transcriber, path: str) -> tuple[Transcript, int]:
    """In a worker process: the transcript and how long the decoder took (ms)."""
    started = time.perf_counter()
    transcript = transcriber.transcribe(Path(path))
    return transcript, round((time.perf_counter() - started) * 1000)


class TranscriptWorker(Lifecycle):
    """Runs ``settings.concurrency`` runners over the queue. ``executor`` replaces the
    process pool (tests run a fake transcriber in threads); closing cancels what runs and
    ends the worker processes (a job cut off is taken up again after its lease).
    ``completed`` and ``failed`` count jobs whose outcome and call event are stored."""

    def __init__(
        self,
        store: Store,
        transcriber: Transcriber,
        settings: TranscriptSettings,
        *,
        executor: concurrent.futures.Executor | None = None,
        health: HealthReport | None = None,
    ) -> None:
        self._store = store
        self._transcriber = transcriber
        self._settings = settings
        self._given_executor = executor
        self._executor: concurrent.futures.Executor | None = executor
        self._health = health
        self._runners: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.completed = 0
        self.failed = 0

    def _pool(self) -> concurrent.futures.Executor:
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=self._settings.concurrency,
                # not fork: the engine's process holds threads and sockets
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_lower_priority,
                initargs=(self._settings.nice,),
            )
        return self._executor

    async def _open(self) -> None:
        for n in range(self._settings.concurrency):
            self._runners.append(asyncio.create_task(self._run(), name=f"transcripts-{n}"))
        if self._health is not None:
            self._health.set(
                "transcripts", "up", f"{self._transcriber.name} backend", required=False
            )

    async def _close(self) -> None:
        await cancel_tasks(*self._runners)
        self._runners.clear()
        if self._executor is not None and self._given_executor is None:
            self._end_pool(self._executor)
            self._executor = None

    @staticmethod
    def _end_pool(executor: concurrent.futures.Executor) -> None:
        executor.shutdown(wait=False, cancel_futures=True)
        # a decode in progress would hold the shutdown for minutes: end its process
        processes = getattr(executor, "_processes", None) or {}
        for process in list(processes.values()):
            with contextlib.suppress(OSError, ValueError):
                process.kill()

    def wake(self) -> None:
        """Look at the queue now (e.g. a recording was just queued)."""
        self._wake.set()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval)
        self._wake.clear()

    async def _run(self) -> None:
        lease = timedelta(seconds=self._settings.lease)
        while True:
            try:
                job = await self._store.transcripts.claim(lease)
            except CtcError as exc:  # e.g. the database is away: look again later
                log.warning("transcripts.claim_failed", error=str(exc))
                await self._idle()
                continue
            if job is None:
                await self._idle()
                continue
            try:
                await self.run_job(job)
            except CtcError as exc:  # storing the outcome failed: the lease brings it back
                log.warning("transcripts.not_stored", job=job.id, error=str(exc))
            except Exception:  # a bug: logged, the runner goes on
                log.exception("transcripts.job_crashed", job=job.id)

    async def run_job(self, job: TranscriptJob) -> bool:
        """Transcribe one claimed job and store the outcome; whether it completed."""
        bound = log.bind(call_id=str(job.session_id), tenant_id=str(job.tenant_id), job=job.id)
        try:
            # submitted from a thread: the pool starts its worker processes (a forkserver
            # first) inside submit(), which would hold the event loop for most of a second
            future = await asyncio.to_thread(
                self._pool().submit, _transcribe, self._transcriber, job.recording_path
            )
            transcript, decode_ms = await asyncio.wrap_future(future)
        except (TranscriptionError, OSError) as exc:
            await self._failed(job, str(exc), bound)
            return False
        except BrokenProcessPool as exc:
            # the worker process died under this job: a new pool for the next one
            if self._executor is not None and self._given_executor is None:
                self._end_pool(self._executor)
                self._executor = None
            await self._failed(job, f"worker process died: {exc}", bound)
            return False
        await self._store.transcripts.complete(job, transcript, decode_ms)
        rtf = decode_ms / transcript.audio_ms if transcript.audio_ms else None
        await self._store.sessions.append_event(
            job.tenant_id,
            job.session_id,
            CallEventType.TRANSCRIPT_COMPLETED,
            payload={
                "backend": transcript.backend,
                "words": len(transcript.words),
                "audio_ms": transcript.audio_ms,
                "decode_ms": decode_ms,
            },
        )
        self.completed += 1
        bound.info(
            "transcripts.completed",
            backend=transcript.backend,
            words=len(transcript.words),
            real_time_factor=None if rtf is None else round(rtf, 3),
        )
        return True

    async def _failed(self, job: TranscriptJob, error: str, bound: structlog.BoundLogger) -> None:
        settings = self._settings
        if job.attempts < settings.max_attempts:
            delay = retry_delay(job.attempts, settings.backoff_initial)
            await self._store.transcripts.fail(job, error, timedelta(seconds=delay))
            bound.warning("transcripts.retry", error=error, attempts=job.attempts, retry_in=delay)
            return
        await self._store.transcripts.fail(job, error, None)
        await self._store.sessions.append_event(
            job.tenant_id,
            job.session_id,
            CallEventType.TRANSCRIPT_FAILED,
            payload={"error": error[:500], "attempts": job.attempts},
        )
        self.failed += 1
        bound.error("transcripts.failed", error=error, attempts=job.attempts)

"""How late the event loop runs what is due, and how long the garbage collector stops it.

Why: everything the engine does for every call shares one event loop. A caller's key that
arrives while the loop is stalled can be lost (FastAGI hears DTMF only while a command
runs), so a stall is a telephony fault, not only a slowdown. ``LoopWatch`` wakes every
``interval`` seconds and records how late it woke (``ctc_event_loop_lag_seconds``);
collections of the cyclic garbage collector are timed (``ctc_gc_pause_seconds``) and a
pause or lag over ``warn_after`` is logged.

:func:`settle_heap` is the collector's policy for the daemon process: a full (generation
2) collection walks every tracked object, the start-up heap included (modules, pydantic
models, the wiring: about 80,000 objects, counted in the ``gc.settled`` log line), and
under IVR load in ``bench/ivr.py`` collections paused the loop for up to 245 ms — every call
on it stalled that long. Once the engine has
started, what is alive stays alive: it is frozen (``gc.freeze``), so collections walk only
what calls allocated since, and young collections run less often (most of a call's
objects die young, by reference count, before any collection sees them).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import time
from typing import Any

import structlog

from engine.lifecycle import Lifecycle, cancel_tasks
from engine.metrics import Metrics

__all__ = ["LoopWatch", "settle_heap"]

log = structlog.get_logger(__name__)

# generation 0 is collected after this many net allocations of tracked objects (Python's
# default, 700, ran a young collection every few calls); generations 1 and 2 as default
_THRESHOLDS = (10_000, 10, 10)
# samples (``interval`` apart) that LoopWatch.sustained_lag spans
_SUSTAINED = 3


def settle_heap() -> None:
    """Collect once, freeze what is left and raise the young threshold: the daemon's
    start-up heap is never walked again. For the daemon process only (``ctc run``): in a
    test process it would keep every earlier test's objects out of the collector's reach.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_THRESHOLDS)
    log.info("gc.settled", frozen_objects=gc.get_freeze_count(), thresholds=_THRESHOLDS)


class LoopWatch(Lifecycle):
    """Watches the running loop while open (its task and the GC callback)."""

    def __init__(self, metrics: Metrics, *, interval: float = 0.1, warn_after: float = 0.1) -> None:
        self._metrics = metrics
        self._interval = interval
        self._warn_after = warn_after
        self._task: asyncio.Task[None] | None = None
        self._gc_started: float | None = None
        self.max_lag = 0.0
        self._recent: collections.deque[float] = collections.deque([0.0], maxlen=_SUSTAINED)
        self.max_gc_pause = 0.0

    @property
    def sustained_lag(self) -> float:
        """How late the loop has run in each of the last few samples (their minimum): one
        late wake-up (a burst, a collection) is not lateness that lasts."""
        return min(self._recent)

    async def _open(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="loop-watch")

    async def _close(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        task, self._task = self._task, None
        await cancel_tasks(task)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            lag = max(0.0, loop.time() - due)
            self._metrics.loop_lag.observe(lag)
            self._recent.append(lag)
            self.max_lag = max(self.max_lag, lag)
            if lag > self._warn_after:
                log.warning("loop.lagging", lag_ms=round(lag * 1000))

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        if self._gc_started is None:
            return
        pause = time.perf_counter() - self._gc_started
        self._gc_started = None
        self._metrics.gc_pause.labels(generation=str(info.get("generation", "?"))).observe(pause)
        self.max_gc_pause = max(self.max_gc_pause, pause)
        if pause > self._warn_after:
            log.warning(
                "gc.paused",
                pause_ms=round(pause * 1000),
                generation=info.get("generation"),
                collected=info.get("collected"),
            )

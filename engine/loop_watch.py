"""How late the event loop runs what is due, and how long the garbage collector stops it.

Why: everything the engine does for every call shares one event loop. A caller's key that
arrives while the loop is stalled can be lost (FastAGI hears DTMF only while a command
runs), so a stall is a telephony fault, not only a slowdown. ``LoopWatch`` wakes every
``interval`` seconds and records how late it woke (``ctc_event_loop_lag_seconds``);
collections of the cyclic garbage collector are timed (``ctc_gc_pause_seconds``) and a
pause or lag over ``warn_after`` is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any

import structlog

from engine.lifecycle import Lifecycle
from engine.metrics import Metrics

__all__ = ["LoopWatch"]

log = structlog.get_logger(__name__)


class LoopWatch(Lifecycle):
    """Watches the running loop while open (its task and the GC callback)."""

    def __init__(self, metrics: Metrics, *, interval: float = 0.1, warn_after: float = 0.1) -> None:
        self._metrics = metrics
        self._interval = interval
        self._warn_after = warn_after
        self._task: asyncio.Task[None] | None = None
        self._gc_started: float | None = None
        self.max_lag = 0.0
        self.max_gc_pause = 0.0

    async def _open(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="loop-watch")

    async def _close(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            lag = max(0.0, loop.time() - due)
            self._metrics.loop_lag.observe(lag)
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

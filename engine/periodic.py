"""One loop for every component that does a round of work every N seconds.

Why: the stats compactor, the node heartbeat and failover, the retention pruner, the event
feed, the node link, the claim queue, the hangup-record sweep and the quality sampler each
had their own copy of the same loop (a task made in ``_open``, cancelled in ``_close``,
a sleep, a round, a failure logged) and each its own idea of what a failing round does.
:class:`Periodic` is that loop once, on top of :class:`~engine.lifecycle.Lifecycle`:

* **Timing.** The first round runs ``first_delay`` seconds after ``start()`` (the default:
  one ``interval``; ``0``: at once, in the loop's task). Each next round runs
  ``interval`` seconds after the previous one *ended*: rounds never overlap, and a slow
  round delays the next one rather than piling up.
* **Wake-up.** :meth:`Periodic.wake` (e.g. a NOTIFY's callback) ends the current wait at
  once: a round runs now, then the next waits a full ``interval``. A wake that comes
  while a round runs makes the next round run as soon as that one ends.
* **Failure policy.** A round that raises is logged, never silently, as ``<name>.failed``
  with the component's ``log_fields`` (e.g. its node): a warning with the exception's class
  and message (:func:`~engine.errors.describe`) for trouble the engine expects (one of ours,
  a connection or a timeout: PostgreSQL or a peer away), an error with its traceback for
  anything else (a bug).
  The loop goes on and the next round comes at the next tick (or wake-up); what failed is
  retried then. Cancellation is never swallowed: ``close()`` cancels the loop and a round
  in progress with :func:`~engine.lifecycle.cancel_tasks`, so close is bounded by how long
  ``run_once`` takes to honour a cancellation (each component states its own bound).
* **Tests** call :meth:`Periodic.run_once` directly: one round now, its failure raised
  (or handled as the component's own ``run_once`` says), whether or not the loop runs.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import structlog

from engine.errors import CtcError, describe
from engine.lifecycle import Lifecycle, cancel_tasks

__all__ = ["Periodic"]

log = structlog.get_logger(__name__)


class Periodic(Lifecycle, abc.ABC):
    """A component that runs :meth:`run_once` every ``interval`` seconds while open; see
    the module doc for its timing, wake-up and failure policy. Subclasses that own more
    than the loop extend ``_open``/``_close`` and call the base's."""

    def __init__(
        self,
        name: str,
        *,
        interval: float,
        first_delay: float | None = None,
        log_fields: Mapping[str, Any] | None = None,
    ) -> None:
        """``name`` names the loop's task and its log lines (``<name>.failed``), which
        carry ``log_fields``."""
        if interval <= 0:
            raise ValueError(f"{name}: interval must be more than 0 seconds, got {interval!r}")
        if first_delay is not None and first_delay < 0:
            raise ValueError(f"{name}: first_delay must be 0 or more, got {first_delay!r}")
        self._periodic_name = name
        self._log_fields = dict(log_fields or {})
        self._interval = interval
        self._first_delay = interval if first_delay is None else first_delay
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def run_once(self) -> object:
        """One round of the component's work, now."""

    def wake(self) -> None:
        """Run a round now instead of at the end of the current wait."""
        self._wake.set()

    async def _open(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name=self._periodic_name)

    async def _close(self) -> None:
        task, self._loop_task = self._loop_task, None
        await cancel_tasks(task)

    async def _loop(self) -> None:
        delay = self._first_delay
        while True:
            if delay > 0:
                await self._woken_or_tick(delay)
            self._wake.clear()  # this round answers every wake-up so far
            delay = self._interval
            try:
                await self.run_once()
            except (CtcError, OSError, TimeoutError) as exc:  # the policy: the next tick retries
                log.warning(
                    f"{self._periodic_name}.failed", error=describe(exc), **self._log_fields
                )
            except Exception:  # a bug: its traceback, and the next tick tries again
                log.exception(f"{self._periodic_name}.failed", **self._log_fields)

    async def _woken_or_tick(self, seconds: float) -> None:
        """Wait until :meth:`wake` is called or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

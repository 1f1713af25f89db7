"""One lifecycle for every long-lived component: unopened → open → closed, once.

The engine holds a dozen things that own sockets, tasks or pools (the API server, the ARI
and AMI links, the FastAGI server, the notifier, the journal, the database pool, ...).
Each used to have its own idea of starting (sync ``start()``, ``async start() -> Self``,
``open()``) and its own copy of ``__aenter__``/``__aexit__``. They now share this base, as
httpx's client does:

* ``await component.start()`` opens it and returns it; ``async with component:`` does the
  same and closes it on the way out.
* ``await component.close()`` closes it; closing twice, or closing what was never
  started, is a no-op, so every owner can close in its ``finally`` without bookkeeping.
* A component is used once. Starting it twice, or after it was closed, raises
  :class:`~engine.errors.ClosedResourceError` naming the component and its state;
  so does :meth:`Lifecycle.require_open`, which a component calls where using it before
  ``start()`` or after ``close()`` would be a bug.

Failure policy: if ``_open()`` raises, ``_close()`` runs (it must cope with a half-opened
component) and the component ends ``closed``; the error propagates. ``_close()`` must be
bounded (each component states its own bound) and must not raise on a cancelled caller
half-way: cleanup that has to finish is shielded by the component itself.

Most components own background tasks; their ``_close`` ends them with :func:`cancel_tasks`,
the one place that knows how: cancel all, wait for all, swallow the tasks' own
``CancelledError`` but never the caller's, and log (not raise) a task that had failed.
A component whose task does a round of work every N seconds is a
:class:`~engine.periodic.Periodic`, which owns that task.
"""

from __future__ import annotations

import asyncio
import enum
from types import TracebackType
from typing import Any, Self

import structlog

from engine.errors import ClosedResourceError, describe

__all__ = ["Lifecycle", "LifecycleState", "cancel_tasks"]

log = structlog.get_logger(__name__)


class LifecycleState(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class Lifecycle:
    """Base of long-lived components; subclasses implement :meth:`_open` and :meth:`_close`."""

    _lifecycle_state: LifecycleState = LifecycleState.UNOPENED

    @property
    def lifecycle_state(self) -> LifecycleState:
        return self._lifecycle_state

    @property
    def is_open(self) -> bool:
        return self._lifecycle_state is LifecycleState.OPEN

    @property
    def is_closed(self) -> bool:
        return self._lifecycle_state is LifecycleState.CLOSED

    async def start(self) -> Self:
        """Open the component (once) and return it."""
        state = self._lifecycle_state
        if state is not LifecycleState.UNOPENED:
            raise ClosedResourceError(
                f"{type(self).__name__} is {state.value}: a component is started once"
            )
        self._lifecycle_state = LifecycleState.OPEN
        try:
            await self._open()
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Close the component; a no-op if it is already closed or was never started."""
        state = self._lifecycle_state
        self._lifecycle_state = LifecycleState.CLOSED
        if state is LifecycleState.OPEN:
            await self._close()

    def require_open(self, action: str = "used") -> None:
        """Raise ClosedResourceError unless the component is open."""
        state = self._lifecycle_state
        if state is not LifecycleState.OPEN:
            hint = "start it first" if state is LifecycleState.UNOPENED else "it was closed"
            raise ClosedResourceError(
                f"{type(self).__name__} is {state.value} and cannot be {action}: {hint}"
            )

    async def _open(self) -> None:
        """Acquire what the component owns (sockets, tasks, pools)."""

    async def _close(self) -> None:
        """Release what :meth:`_open` acquired, within a bounded time."""

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def cancel_tasks(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` (None entries are skipped) and wait until every one has finished.

    A task's own cancellation is what was asked for and is swallowed; a task that had
    already failed is logged (``task.failed``) rather than raised, so one dead task does not
    stop its owner's close. If the caller itself is cancelled while waiting, that
    cancellation propagates (the tasks were cancelled already).
    """
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    if not live:
        return
    await asyncio.wait(live)  # the caller's cancellation raises here, at once
    for task in live:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("task.failed", task=task.get_name(), error=describe(error))

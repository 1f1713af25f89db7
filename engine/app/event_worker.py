"""Work done once a call event is committed, off the writer's path: the shared part of the
listeners that charge a call's end (:mod:`engine.app.billing`) and log what calls do to
their agents (:mod:`engine.app.agent_calls`).

Why a base: each needs the same four things — a synchronous listener on the
:class:`~engine.events.EventBus` that never blocks the commit that published (it only
picks and queues), a bounded queue, one task working it in order with every failure logged
and counted (never ending the task), and a close that lets what is queued finish within a
grace time. A subclass says which events it wants (:meth:`EventWorker._wanted`) and what
to do with each (:meth:`EventWorker._handle`). Only the events this engine committed: the
ones another engine committed (published here by the event feed, ``remote``) are that
engine's work, so with several engines each call is charged and logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Generic, TypeVar

import structlog

from engine.errors import CtcError
from engine.events import EventBus
from engine.lifecycle import Lifecycle, cancel_tasks
from engine.store.records import CallEvent

__all__ = ["EventWorker"]

log = structlog.get_logger(__name__)

_Item = TypeVar("_Item")


class EventWorker(Lifecycle, Generic[_Item]):
    """Queues what :meth:`_wanted` picks from each committed event, one task
    :meth:`_handle`-s them in order. ``name`` names the task and the log events
    (``<name>.failed``, ``<name>.closed_with_queue``); ``done`` and ``failed`` count."""

    def __init__(
        self, events: EventBus, *, name: str, max_queue: int = 10_000, close_grace: float = 5.0
    ) -> None:
        self._events = events
        self._name = name
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(max_queue)
        self._close_grace = close_grace
        self._task: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self.done = 0  # items handled
        self.failed = 0  # items that failed or found the queue full (logged)

    def _wanted(self, event: CallEvent) -> _Item | None:
        """What to queue for ``event`` (None: nothing); runs in the publisher's call."""
        raise NotImplementedError

    async def _handle(self, item: _Item) -> None:
        raise NotImplementedError

    async def _open(self) -> None:
        self._unlisten = self._events.add_listener(self._on_event)
        self._task = asyncio.get_running_loop().create_task(self._work(), name=self._name)

    def _on_event(self, event: CallEvent) -> None:
        if event.remote:  # the engine that committed it does this work, once
            return
        item = self._wanted(event)
        if item is None:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.failed += 1
            log.error(f"{self._name}.failed", call_id=str(event.session_id), error="queue full")

    async def idle(self) -> None:
        """Return once every item queued so far is handled (tests, shutdown)."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._handle(item)
                self.done += 1
            except CtcError as exc:
                self.failed += 1
                log.error(f"{self._name}.failed", item=repr(item), error=str(exc))
            except Exception:  # a bug: logged with its traceback, the worker goes on
                self.failed += 1
                log.exception(f"{self._name}.failed", item=repr(item))
            finally:
                self._queue.task_done()

    async def _close(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), self._close_grace)
        task, self._task = self._task, None
        await cancel_tasks(task)
        if not self._queue.empty():
            log.error(f"{self._name}.closed_with_queue", items=self._queue.qsize())

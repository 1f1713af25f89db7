"""Work done once a call event is committed, off the writer's path: the shared part of the
listeners that charge a call's end (:mod:`engine.app.billing`) and log what calls do to
their agents (:mod:`engine.app.agent_calls`).

Why a base: each needs the same four things — a synchronous listener on the
:class:`~engine.events.EventBus` that never blocks the commit that published (it only
picks and queues), a bounded queue, one task working it in order with every failure logged
and counted (never ending the task), and a close that lets what is queued finish within a
grace time. A subclass says which events it wants (:meth:`EventWorker._wanted`) and what
to do with each (:meth:`EventWorker._handle`), or with several at once
(:meth:`EventWorker._handle_many`, with ``batch_window``: the items that arrive within that
time of the first are handled together, so one round trip serves many calls; a batch that
fails is handled again item by item, so one bad item costs only itself). Only the events
this engine committed: the ones another engine committed (published here by the event
feed, ``remote``) are that engine's work, so with several engines each call is charged and
logged once.
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
        self,
        events: EventBus,
        *,
        name: str,
        max_queue: int = 10_000,
        close_grace: float = 5.0,
        batch_window: float = 0.0,
        max_batch: int = 500,
    ) -> None:
        if batch_window > 0 and type(self)._handle_many is EventWorker._handle_many:
            # the default handles one by one: a failed batch handled again would redo the
            # items before the failing one
            raise TypeError(f"{name}: a batch_window needs its own _handle_many")
        self._events = events
        self._name = name
        self._batch_window = batch_window
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(max_queue)
        self._close_grace = close_grace
        self._task: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self._in_hand: list[_Item] = []  # taken off the queue, not handled yet
        self._closing = False
        self.done = 0  # items handled
        self.failed = 0  # items that failed or found the queue full (logged)

    def _wanted(self, event: CallEvent) -> _Item | None:
        """What to queue for ``event`` (None: nothing); runs in the publisher's call."""
        raise NotImplementedError

    async def _handle(self, item: _Item) -> None:
        raise NotImplementedError

    async def _handle_many(self, items: list[_Item]) -> None:
        """Handle ``items`` together (one round trip for all): a worker with a
        ``batch_window`` must say how."""
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
            items = self._in_hand = [await self._queue.get()]
            try:
                if self._batch_window > 0:
                    if not self._closing:  # closing: what is queued goes at once
                        await asyncio.sleep(self._batch_window)
                    while len(items) < self._max_batch and not self._queue.empty():
                        items.append(self._queue.get_nowait())
                if len(items) == 1 or not await self._handled_together(items):
                    for item in items:
                        await self._handle_one(item)
            finally:
                self._in_hand = []
                for _ in items:
                    self._queue.task_done()

    async def _handled_together(self, items: list[_Item]) -> bool:
        """Whether ``items`` were handled as one batch (else they are handled one by one)."""
        try:
            await self._handle_many(items)
        except Exception as exc:  # logged; each item is tried again on its own
            log.warning(f"{self._name}.batch_failed", items=len(items), error=repr(exc))
            return False
        self.done += len(items)
        return True

    async def _handle_one(self, item: _Item) -> None:
        try:
            await self._handle(item)
            self.done += 1
        except CtcError as exc:
            self.failed += 1
            log.error(f"{self._name}.failed", item=repr(item), error=str(exc))
        except Exception:  # a bug: logged with its traceback, the worker goes on
            self.failed += 1
            log.exception(f"{self._name}.failed", item=repr(item))

    async def _close(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        self._closing = True
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), self._close_grace)
        # what the task holds when it is cancelled is lost like what is still queued (a
        # batch may have been written in part: "up to")
        unhandled = [*self._in_hand, *_drain(self._queue)]
        task, self._task = self._task, None
        await cancel_tasks(task)
        if unhandled:
            self.failed += len(unhandled)
            log.error(
                f"{self._name}.closed_with_queue",
                items=len(unhandled),
                first=[repr(item) for item in unhandled[:20]],
            )


def _drain(queue: asyncio.Queue[_Item]) -> list[_Item]:
    """Take every item off ``queue``, each counted done (nothing waits on them any more)."""
    items: list[_Item] = []
    while not queue.empty():
        items.append(queue.get_nowait())
        queue.task_done()
    return items

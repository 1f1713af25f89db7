"""In-process fan-out of committed call events.

Why a bus: the repository that commits a ``call_event`` is not the only party that cares
about it. The SSE endpoint streams it to ERP dashboards and the callback notifier wakes up
to deliver its outbox row at once instead of waiting for its next poll. The bus decouples
them: the store's writers (:mod:`engine.store.write_through`, :mod:`engine.store.journal`)
publish each event right after its transaction commits, and anything may subscribe.

Publishing never blocks and never fails: each subscriber has its own bounded
:class:`asyncio.Queue`; when a subscriber falls ``maxsize`` events behind, it is dropped
(with a logged warning) and its stream ends after the events it already holds. Nothing is
lost for good, because every event is in PostgreSQL: an SSE client reconnects with
``Last-Event-ID`` and the missed events are replayed from there.

The bus is best-effort by nature. The events other engines sharing the database commit
reach it through the event feed (:mod:`engine.store.event_feed`: LISTEN/NOTIFY as the
wake-up, the table as the truth), a little later than this process's own.
Pure asyncio, one event loop, no threads.

Lifecycle: subscribing and adding a listener need a started bus (:meth:`EventBus.start`);
:meth:`EventBus.close` ends every subscription. Publishing to a bus that is not open does
nothing (nobody can be listening), so a writer's commit path never fails for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Final, Self

import structlog

from engine.lifecycle import Lifecycle
from engine.store.records import CallEvent

__all__ = ["DEFAULT_MAXSIZE", "EventBus", "Listener", "Subscription"]

log = structlog.get_logger(__name__)

DEFAULT_MAXSIZE: Final = 1000

# A synchronous callback run on every publish (the notifier's wake-up); it must not block.
Listener = Callable[[CallEvent], None]

# Put in a subscriber's reserved queue slot to end its stream.
_END: Final = None


class Subscription:
    """One subscriber's view of the bus: an async iterator of :class:`CallEvent`.

    Optionally filtered by tenant and session at publish time, so a busy tenant cannot fill
    another tenant's queue. Iteration ends when the subscription is closed, when the bus
    closes, or when it was dropped for falling behind (``dropped`` is then true).
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        tenant_id: uuid.UUID | None,
        session_id: uuid.UUID | None,
        maxsize: int,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._bus = bus
        self.tenant_id = tenant_id
        self.session_id = session_id
        self.maxsize = maxsize
        # one slot more than the events it may hold: room for the end marker, always
        self._queue: asyncio.Queue[CallEvent | None] = asyncio.Queue(maxsize + 1)
        self._ended = False  # the end marker is queued
        self._finished = False  # the consumer has taken the end marker
        self.dropped = False

    @property
    def closed(self) -> bool:
        return self._ended

    def wants(self, event: CallEvent) -> bool:
        return (self.tenant_id is None or event.tenant_id == self.tenant_id) and (
            self.session_id is None or event.session_id == self.session_id
        )

    def offer(self, event: CallEvent) -> bool:
        """Queue ``event``; False when the subscriber is full (the bus then drops it)."""
        if self._ended:
            return True
        if self._queue.qsize() >= self.maxsize:
            return False
        self._queue.put_nowait(event)
        return True

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_END)  # the reserved slot: never full

    def close(self) -> None:
        """Stop receiving; a consumer waiting in :meth:`next` gets ``None``. Idempotent."""
        self._bus.unsubscribe(self)
        self._end()

    async def next(self) -> CallEvent | None:
        """The next event, or ``None`` once the subscription has ended.

        Cancellation-safe: a cancelled wait loses no event.
        """
        if self._finished:
            return None
        event = await self._queue.get()
        if event is _END:
            self._finished = True
        return event

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> CallEvent:
        event = await self.next()
        if event is None:
            raise StopAsyncIteration
        return event

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventBus(Lifecycle):
    """Fan-out of committed :class:`CallEvent` s to subscribers and listeners."""

    def __init__(self, *, maxsize: int = DEFAULT_MAXSIZE) -> None:
        self._maxsize = maxsize
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Listener] = []

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def subscribe(
        self,
        *,
        tenant_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
        maxsize: int | None = None,
    ) -> Subscription:
        """A new subscription; it sees every event published from now on that matches."""
        self.require_open("subscribed to")
        sub = Subscription(
            self,
            tenant_id=tenant_id,
            session_id=session_id,
            maxsize=self._maxsize if maxsize is None else maxsize,
        )
        self._subscriptions.add(sub)
        return sub

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` on every publish; returns the function that removes it."""
        self.require_open("listened to")
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def publish(self, event: CallEvent) -> None:
        """Hand a committed event to every matching subscriber and listener; never blocks."""
        if not self.is_open:  # nobody to tell: subscribing needs an open bus, closing ends all
            return
        for sub in list(self._subscriptions):
            if sub.wants(event) and not sub.offer(event):
                self._drop(sub)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not break the publisher's commit path
                log.exception("events.listener_failed", listener=repr(listener))

    def _drop(self, sub: Subscription) -> None:
        sub.dropped = True
        sub.close()
        log.warning(
            "events.subscriber_dropped",
            reason="fell behind",
            maxsize=sub.maxsize,
            tenant_id=str(sub.tenant_id) if sub.tenant_id else None,
            call_id=str(sub.session_id) if sub.session_id else None,
        )

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub`` (:meth:`Subscription.close` calls this; it also ends the stream)."""
        self._subscriptions.discard(sub)

    async def _close(self) -> None:
        """End every subscription; new ones are refused from now on."""
        for sub in list(self._subscriptions):
            sub.close()
        self._listeners.clear()

"""The event stream use case: a tenant's committed call events, replayed then live.

An ERP that reconnects says the last event it saw; it must get every later event once,
whether it committed before or after the reconnect. :meth:`EventStream.open` subscribes
to the bus first and reads the replay from the store second, so an event committed in
between is in both, and the stream's writer (:func:`engine.api.sse.pump`) drops the live
copy of what the replay already held (events are ordered by id). The caps on open streams
and the wire format are the API's (:mod:`engine.api.routes.events`, :mod:`engine.api.sse`).
"""

from __future__ import annotations

import uuid

from engine.errors import FeatureUnavailable
from engine.events import EventBus, Subscription
from engine.store.records import CallEvent, Tenant
from engine.store.repositories import Store

__all__ = ["EventStream"]


class EventStream:
    """Opens event streams over ``store`` and the bus ``events`` (None: the daemon has no
    bus, and a stream is :class:`FeatureUnavailable`)."""

    def __init__(self, store: Store, events: EventBus | None) -> None:
        self._store = store
        self._events = events

    async def check(self, tenant: Tenant, session_id: uuid.UUID | None) -> None:
        """Whether a stream can be opened, taking nothing: NotFound unless ``session_id``
        (when given) is the tenant's session, then FeatureUnavailable without a bus."""
        await self._bus_for(tenant, session_id)

    async def open(
        self,
        tenant: Tenant,
        session_id: uuid.UUID | None,
        after: int | None,
        *,
        replay_limit: int,
    ) -> tuple[list[CallEvent], Subscription]:
        """The tenant's events (of ``session_id`` only, when given) after the event id
        ``after``, at most ``replay_limit`` of them, oldest first (none when ``after`` is
        None), and the subscription to the events committed from now on, taken before the
        replay was read. Raises as :meth:`check` does, holding nothing; the caller closes
        the subscription."""
        bus = await self._bus_for(tenant, session_id)
        subscription = bus.subscribe(tenant_id=tenant.id, session_id=session_id)
        try:
            replay: list[CallEvent] = []
            if after is not None:
                replay = await self._store.sessions.events_after(
                    tenant.id, after, session_id=session_id, limit=replay_limit
                )
        except BaseException:
            subscription.close()
            raise
        return replay, subscription

    async def _bus_for(self, tenant: Tenant, session_id: uuid.UUID | None) -> EventBus:
        if session_id is not None:
            await self._store.sessions.get(tenant.id, session_id)  # NotFound unless theirs
        if self._events is None:
            raise FeatureUnavailable("the event stream is not available")
        return self._events

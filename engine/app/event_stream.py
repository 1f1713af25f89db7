"""The event stream use case: a tenant's committed call events, replayed then live.

An ERP that reconnects says the last event it saw; it must get every later event once,
whether it committed before or after the reconnect. :meth:`EventStream.open` subscribes
to the bus first and reads the replay from the store second, so an event committed in
between is in both, and the stream's writer (:func:`engine.api.sse.pump`) drops the live
copy of what the replay already held (events are ordered by id). The caps on open streams
and the wire format are the API's (:mod:`engine.api.routes.events`, :mod:`engine.api.sse`).
"""

from __future__ import annotations

import dataclasses
import uuid

from engine.domain.stream_cursor import StreamCursor
from engine.errors import FeatureUnavailable
from engine.events import EventBus, Subscription
from engine.store.records import CallEvent, Tenant
from engine.store.repositories import Store

__all__ = ["EventStream", "StreamTarget"]


@dataclasses.dataclass(frozen=True, slots=True)
class StreamTarget:
    """What :meth:`EventStream.check` found a stream may be opened on: the tenant's events
    (of ``session_id`` only, when given) on ``bus``."""

    tenant_id: uuid.UUID
    session_id: uuid.UUID | None
    bus: EventBus


class EventStream:
    """Opens event streams over ``store`` and the bus ``events`` (None: the daemon has no
    bus, and a stream is :class:`FeatureUnavailable`)."""

    def __init__(self, store: Store, events: EventBus | None) -> None:
        self._store = store
        self._events = events

    async def check(self, tenant: Tenant, session_id: uuid.UUID | None) -> StreamTarget:
        """What a stream would be opened on, taking nothing yet: NotFound unless
        ``session_id`` (when given) is the tenant's session, then FeatureUnavailable
        without a bus. The caller may take its place under the stream caps in between."""
        if session_id is not None:
            await self._store.sessions.get(tenant.id, session_id)  # NotFound unless theirs
        if self._events is None:
            raise FeatureUnavailable("the event stream is not available")
        return StreamTarget(tenant.id, session_id, self._events)

    async def open(
        self, target: StreamTarget, cursor: StreamCursor | None, *, replay_limit: int
    ) -> tuple[list[CallEvent], Subscription, StreamCursor]:
        """The target's events the client at ``cursor`` lacks, at most ``replay_limit`` of
        them, oldest first (none for a new stream: ``cursor`` None), the subscription to the
        events committed from now on, taken before the replay was read, and the stream's
        cursor (a new stream's starts at the newest event id). A failed replay read holds
        nothing; the caller closes the subscription."""
        subscription = target.bus.subscribe(
            tenant_id=target.tenant_id, session_id=target.session_id
        )
        try:
            replay: list[CallEvent] = []
            if cursor is None:
                cursor = StreamCursor(await self._store.sessions.newest_event_id())
            else:
                replay = await self._store.sessions.events_after(
                    target.tenant_id,
                    cursor.floor,
                    session_id=target.session_id,
                    limit=replay_limit,
                    skip=list(cursor.recent),
                )
        except BaseException:
            subscription.close()
            raise
        return replay, subscription, cursor

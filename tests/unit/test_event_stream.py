"""The event stream use case: what it checks, in which order, and the subscription taken
before the replay is read (a store stand-in, no database)."""

from __future__ import annotations

import types
import uuid
from typing import cast

import pytest

from engine.app.event_stream import EventStream
from engine.domain.stream_cursor import StreamCursor
from engine.errors import FeatureUnavailable, NotFound, StoreError
from engine.events import EventBus
from engine.store.records import CallEvent, StoredSession, Tenant
from engine.store.repositories import Store
from tests.support.events import SESSION_1, TENANT_1, call_event

TENANT = Tenant(id=TENANT_1, slug="t", name="T", callback_url=None, is_active=True)


class _Sessions:
    """The two reads the use case makes; ``on_replay`` runs while the replay is read."""

    def __init__(self, bus: EventBus | None = None, *, fail: bool = False) -> None:
        self.bus = bus
        self.fail = fail
        self.replay_reads: list[tuple[int, uuid.UUID | None, int]] = []
        self.session_reads = 0

    async def get(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> StoredSession:
        self.session_reads += 1
        if session_id != SESSION_1:
            raise NotFound("session", session_id)
        return cast(StoredSession, types.SimpleNamespace(id=session_id))

    async def newest_event_id(self) -> int:
        return 40

    async def events_after(
        self,
        tenant_id: uuid.UUID,
        after: int,
        *,
        session_id: uuid.UUID | None,
        limit: int,
        skip: list[int],
    ) -> list[CallEvent]:
        self.replay_reads.append((after, session_id, limit))
        if self.fail:
            raise StoreError("the database went away")
        if self.bus is not None:  # committed while the replay is read: on the bus too
            self.bus.publish(call_event(after + 1))
        return [call_event(after + 1)]


def _stream(sessions: _Sessions, bus: EventBus | None) -> EventStream:
    return EventStream(cast(Store, types.SimpleNamespace(sessions=sessions)), bus)


async def test_open_subscribes_before_it_reads_the_replay() -> None:
    async with EventBus() as bus:
        sessions = _Sessions(bus)
        stream = _stream(sessions, bus)
        target = await stream.check(TENANT, None)
        replay, sub, _ = await stream.open(target, StreamCursor(4), replay_limit=11)
        with sub:
            assert replay == [call_event(5)]
            assert sessions.replay_reads == [(4, None, 11)]
            # the event committed during the read reached the subscription as well
            assert await sub.next() == call_event(5)


async def test_without_an_event_id_nothing_is_replayed() -> None:
    async with EventBus() as bus:
        sessions = _Sessions(bus)
        stream = _stream(sessions, bus)
        target = await stream.check(TENANT, SESSION_1)
        replay, sub, cursor = await stream.open(target, None, replay_limit=5)
        with sub:
            assert replay == []
            assert cursor.token() == "40"  # a new stream starts at the newest event
            assert sub.session_id == SESSION_1
        assert sessions.replay_reads == []
        assert sessions.session_reads == 1  # checked once, not again when opened


async def test_an_unknown_session_is_not_found_before_a_missing_bus() -> None:
    stream = _stream(_Sessions(), None)
    with pytest.raises(NotFound):
        await stream.check(TENANT, uuid.uuid4())
    with pytest.raises(FeatureUnavailable, match="event stream is not available"):
        await stream.check(TENANT, SESSION_1)
    with pytest.raises(FeatureUnavailable):
        await stream.check(TENANT, None)


async def test_a_failed_replay_leaves_no_subscription() -> None:
    async with EventBus() as bus:
        stream = _stream(_Sessions(fail=True), bus)
        target = await stream.check(TENANT, None)
        with pytest.raises(StoreError):
            await stream.open(target, StreamCursor(1), replay_limit=5)
        assert bus.subscriber_count == 0

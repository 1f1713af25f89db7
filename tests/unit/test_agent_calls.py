"""AgentCallRecorder: which committed events cost it a read of their session."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from engine.app.agent_calls import AgentCallRecorder
from engine.domain.call import Direction
from engine.events import EventBus
from engine.store.records import CallEvent, NewActivity
from engine.store.repositories import Store


class _Sessions:
    def __init__(self) -> None:
        self.read: list[uuid.UUID] = []

    async def get(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> Any:
        self.read.append(session_id)
        raise AssertionError("read the session")


class _Activity:
    def __init__(self) -> None:
        self.rows: list[NewActivity] = []

    async def record_many(self, rows: Sequence[NewActivity]) -> None:
        self.rows.extend(rows)


class _Store:
    def __init__(self) -> None:
        self.sessions = _Sessions()
        self.activity = _Activity()


def _ended(direction: Direction | None, agent: str | None = None) -> CallEvent:
    return CallEvent(
        id=1,
        tenant_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        seq=5,
        event_type="ivr.ended",
        status_from="connected",
        status_to="completed",
        payload={},
        occurred_at=datetime.now(UTC),
        direction=direction,
        agent=agent,
    )


async def _recorded(*events: CallEvent) -> _Store:
    store = _Store()
    async with EventBus() as bus, AgentCallRecorder(cast(Store, store), bus) as recorder:
        for event in events:
            bus.publish(event)
        await recorder.idle()
    return store


async def test_an_ivr_calls_end_that_says_its_direction_costs_no_read_of_its_session() -> None:
    store = await _recorded(_ended(Direction.INBOUND))
    assert store.sessions.read == []
    assert store.activity.rows == []


async def test_an_outbound_call_without_an_agent_costs_no_read_of_its_session() -> None:
    store = await _recorded(_ended(Direction.OUTBOUND, agent=None))
    assert store.sessions.read == []


async def test_an_event_that_does_not_say_its_direction_is_checked_against_its_session() -> None:
    event = _ended(None)
    store = await _recorded(event)
    assert store.sessions.read == [event.session_id]

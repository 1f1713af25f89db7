"""EventWorker: work on committed events, off the writer's path, once per engine."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from engine.app.event_worker import EventWorker
from engine.events import EventBus
from engine.store.records import CallEvent


class Collecting(EventWorker[int]):
    def __init__(self, events: EventBus) -> None:
        super().__init__(events, name="collecting")
        self.handled: list[int] = []

    def _wanted(self, event: CallEvent) -> int | None:
        return event.id if event.status_to is not None else None

    async def _handle(self, item: int) -> None:
        self.handled.append(item)


def _event(
    event_id: int, *, remote: bool = False, status_to: str | None = "completed"
) -> CallEvent:
    return CallEvent(
        id=event_id,
        tenant_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        seq=1,
        event_type="session.ended",
        status_from="connected",
        status_to=status_to,
        payload={},
        occurred_at=datetime.now(UTC),
        remote=remote,
    )


async def test_it_handles_what_it_wants_of_this_engines_events_in_order() -> None:
    async with EventBus() as bus, Collecting(bus) as worker:
        for event in (_event(1), _event(2, status_to=None), _event(3)):
            bus.publish(event)
        await worker.idle()
    assert worker.handled == [1, 3]


async def test_events_another_engine_committed_are_that_engines_work() -> None:
    async with EventBus() as bus, Collecting(bus) as worker:
        bus.publish(_event(1, remote=True))  # the event feed's: charged/logged over there
        bus.publish(_event(2))
        await worker.idle()
    assert worker.handled == [2]

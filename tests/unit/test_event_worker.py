"""EventWorker: work on committed events, off the writer's path, once per engine."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

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


class Batching(Collecting):
    """Handles what arrives within its window together; a batch holding ``bad`` fails."""

    def __init__(self, events: EventBus, bad: int | None = None) -> None:
        EventWorker.__init__(self, events, name="batching", batch_window=0.05)
        self.handled = []
        self.batches: list[list[int]] = []
        self.bad = bad

    async def _handle(self, item: int) -> None:
        if item == self.bad:
            raise ValueError(f"item {item} is bad")
        self.handled.append(item)

    async def _handle_many(self, items: list[int]) -> None:
        if self.bad in items:
            raise ValueError("a bad item in the batch")
        self.batches.append(list(items))
        self.handled.extend(items)


async def test_items_that_arrive_within_the_window_are_handled_as_one_batch() -> None:
    async with EventBus() as bus, Batching(bus) as worker:
        for event_id in (1, 2, 3):
            bus.publish(_event(event_id))
        await worker.idle()
    assert worker.batches == [[1, 2, 3]]
    assert worker.handled == [1, 2, 3]
    assert (worker.done, worker.failed) == (3, 0)


async def test_a_batch_that_fails_is_handled_item_by_item_and_only_the_bad_item_is_lost() -> None:
    async with EventBus() as bus, Batching(bus, bad=2) as worker:
        for event_id in (1, 2, 3):
            bus.publish(_event(event_id))
        await worker.idle()
    assert worker.batches == []
    assert worker.handled == [1, 3]
    assert (worker.done, worker.failed) == (2, 1)


class Stuck(Batching):
    """Its batches never finish: what it holds at close is lost, and said so."""

    def __init__(self, events: EventBus) -> None:
        EventWorker.__init__(self, events, name="stuck", batch_window=0.05, close_grace=0.05)
        self.handled = []
        self.batches = []
        self.bad = None
        self.started = asyncio.Event()

    async def _handle_many(self, items: list[int]) -> None:
        self.started.set()
        await asyncio.Event().wait()


async def test_a_close_that_cuts_a_batch_off_counts_and_logs_every_item_it_held() -> None:
    bus = EventBus()
    async with bus:
        worker = Stuck(bus)
        with capture_logs() as logs:
            async with worker:
                for event_id in (1, 2, 3):
                    bus.publish(_event(event_id))
                async with asyncio.timeout(10):
                    await worker.started.wait()
                bus.publish(_event(4))  # queued behind the stuck batch
    lost = [entry for entry in logs if entry["event"] == "stuck.closed_with_queue"]
    assert [entry["items"] for entry in lost] == [4]
    assert (worker.done, worker.failed) == (0, 4)


def test_a_batch_window_without_a_batch_handler_is_refused() -> None:
    class OneByOne(Collecting):
        def __init__(self, events: EventBus) -> None:
            EventWorker.__init__(self, events, name="one_by_one", batch_window=0.1)

    with pytest.raises(TypeError, match="one_by_one: a batch_window needs its own _handle_many"):
        OneByOne(EventBus())

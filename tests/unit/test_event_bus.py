"""The event bus: fan-out by tenant and session, slow subscribers dropped, listeners."""

from __future__ import annotations

import asyncio

import pytest
import structlog.testing

from engine.errors import ClosedResourceError
from engine.events import EventBus
from engine.store.records import CallEvent
from tests.support.events import SESSION_2, TENANT_1, TENANT_2, call_event


async def test_fan_out_with_tenant_and_session_filters() -> None:
    bus = await EventBus().start()
    everything = bus.subscribe()
    tenant = bus.subscribe(tenant_id=TENANT_1)
    session = bus.subscribe(tenant_id=TENANT_1, session_id=SESSION_2)
    events = [call_event(1), call_event(2, tenant=TENANT_2), call_event(3, session=SESSION_2)]
    for e in events:
        bus.publish(e)
    await bus.close()
    assert [e.id async for e in everything] == [1, 2, 3]
    assert [e.id async for e in tenant] == [1, 3]
    assert [e.id async for e in session] == [3]
    with pytest.raises(ClosedResourceError):
        bus.subscribe()


async def test_a_slow_subscriber_is_dropped_and_its_stream_ends() -> None:
    bus = await EventBus(maxsize=2).start()
    slow, fine = bus.subscribe(), bus.subscribe(maxsize=10)
    with structlog.testing.capture_logs() as logs:
        for i in range(1, 5):
            bus.publish(call_event(i))  # never blocks
    assert slow.dropped
    assert bus.subscriber_count == 1
    assert [e.id async for e in slow] == [1, 2]  # what it held, then the end
    assert await slow.next() is None
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("events.subscriber_dropped", "warning")
    ]
    fine.close()
    assert [e.id async for e in fine] == [1, 2, 3, 4]


async def test_a_cancelled_wait_loses_nothing_and_close_wakes_a_waiter() -> None:
    bus = await EventBus().start()
    sub = bus.subscribe()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await sub.next()
    bus.publish(call_event(1))
    assert await sub.next() == call_event(1)

    waiter = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    sub.close()
    assert await waiter is None
    bus.publish(call_event(2))  # a closed subscription is gone from the bus
    assert await sub.next() is None


async def test_a_bus_not_started_takes_no_subscriber_and_publishing_to_it_does_nothing() -> None:
    bus = EventBus()
    with pytest.raises(ClosedResourceError, match="EventBus is unopened"):
        bus.subscribe()
    with pytest.raises(ClosedResourceError, match="EventBus is unopened"):
        bus.add_listener(lambda e: None)
    bus.publish(call_event(1))  # a writer's commit path never fails for the bus


async def test_listeners_are_called_and_a_failing_one_does_not_break_publish() -> None:
    bus = await EventBus().start()
    seen: list[int] = []

    def broken(_: CallEvent) -> None:
        raise RuntimeError("bug")

    bus.add_listener(broken)
    remove = bus.add_listener(lambda e: seen.append(e.id))
    bus.publish(call_event(1))
    remove()
    bus.publish(call_event(2))
    assert seen == [1]

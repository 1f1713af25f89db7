"""The event bus, the SSE replay/live handoff, and the callback signature (no I/O)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from datetime import UTC, datetime

import pytest
import structlog.testing

from engine.api.sse import KEEPALIVE_LINE, encode_event, pump
from engine.domain.event_types import CallEventType
from engine.errors import ClosedResourceError
from engine.events import EventBus
from engine.notifier import retry_delay, sign, verify_signature
from engine.store.records import CallEvent

T1, T2 = uuid.uuid4(), uuid.uuid4()
S1, S2 = uuid.uuid4(), uuid.uuid4()


def ev(id: int, *, tenant: uuid.UUID = T1, session: uuid.UUID = S1, seq: int = 1) -> CallEvent:
    return CallEvent(
        id=id,
        tenant_id=tenant,
        session_id=session,
        seq=seq,
        event_type=CallEventType.STATUS_CHANGED,
        status_from="queued",
        status_to="canceled",
        payload={"note": "two\nlines"},
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


# -- EventBus ---------------------------------------------------------------------------------


async def test_fan_out_with_tenant_and_session_filters() -> None:
    bus = await EventBus().start()
    everything = bus.subscribe()
    tenant = bus.subscribe(tenant_id=T1)
    session = bus.subscribe(tenant_id=T1, session_id=S2)
    events = [ev(1), ev(2, tenant=T2), ev(3, session=S2)]
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
            bus.publish(ev(i))  # never blocks
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
    bus.publish(ev(1))
    assert await sub.next() == ev(1)

    waiter = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    sub.close()
    assert await waiter is None
    bus.publish(ev(2))  # a closed subscription is gone from the bus
    assert await sub.next() is None


async def test_a_bus_not_started_takes_no_subscriber_and_publishing_to_it_does_nothing() -> None:
    bus = EventBus()
    with pytest.raises(ClosedResourceError, match="EventBus is unopened"):
        bus.subscribe()
    with pytest.raises(ClosedResourceError, match="EventBus is unopened"):
        bus.add_listener(lambda e: None)
    bus.publish(ev(1))  # a writer's commit path never fails for the bus


async def test_listeners_are_called_and_a_failing_one_does_not_break_publish() -> None:
    bus = await EventBus().start()
    seen: list[int] = []

    def broken(_: CallEvent) -> None:
        raise RuntimeError("bug")

    bus.add_listener(broken)
    remove = bus.add_listener(lambda e: seen.append(e.id))
    bus.publish(ev(1))
    remove()
    bus.publish(ev(2))
    assert seen == [1]


# -- SSE --------------------------------------------------------------------------------------


def test_encode_event_is_one_sse_message() -> None:
    text = encode_event(ev(7, seq=3)).decode()
    assert text.endswith("\n\n")
    lines = text[:-2].split("\n")  # the payload's newline is escaped inside the JSON
    assert lines[:2] == ["id: 7", "event: status.changed"]
    assert len(lines) == 3
    assert lines[2].startswith("data: {")
    assert f'"session_id":"{S1}"' in lines[2]
    assert '"seq":3' in lines[2]


async def test_pump_replays_then_goes_live_each_event_once() -> None:
    bus = await EventBus().start()
    live = bus.subscribe(tenant_id=T1)
    # committed while the replay was read: in the replay *and* on the bus
    for e in (ev(2), ev(3), ev(4)):
        bus.publish(e)
    replay = [ev(3), ev(4)]  # the client said Last-Event-ID: 2
    bus.publish(ev(5))
    bus.publish(ev(1, session=S2))  # an old event published late: at or below the id given
    bus.publish(ev(6))
    live.close()
    written: list[bytes] = []

    async def write(chunk: bytes) -> None:
        written.append(chunk)

    await pump(write, replay, live, after=2, keepalive=60)
    assert written == [encode_event(ev(i)) for i in (3, 4, 5, 6)]


async def test_pump_keeps_alive_while_idle() -> None:
    bus = await EventBus().start()
    live = bus.subscribe()
    written: list[bytes] = []

    async def write(chunk: bytes) -> None:
        written.append(chunk)
        if chunk == KEEPALIVE_LINE:
            live.close()

    await pump(write, [], live, after=None, keepalive=0.001)
    assert written == [KEEPALIVE_LINE]


# -- signature and backoff ------------------------------------------------------------------


def test_signature_scheme() -> None:
    body = b'{"event_id":1}'
    header = sign("s3cret", body, 1_700_000_000)
    t, v1 = header.split(",")
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert (t, v1) == ("t=1700000000", f"v1={expected}")

    assert verify_signature("s3cret", body, header, now=1_700_000_100)
    assert not verify_signature("other", body, header, now=1_700_000_100)
    assert not verify_signature("s3cret", body + b" ", header, now=1_700_000_100)
    assert not verify_signature("s3cret", body, header, now=1_700_000_000 + 301)  # replayed
    assert not verify_signature("s3cret", body, "v1=" + expected, now=1_700_000_000)
    assert not verify_signature("s3cret", body, "garbage", now=1_700_000_000)


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 0.9, 1.1), (2, 1.8, 2.2), (4, 7.2, 8.8), (10, 27.0, 30.0), (10_000, 27.0, 30.0)],
)
def test_retry_delay_doubles_up_to_the_cap(attempts: int, low: float, high: float) -> None:
    for jitter in (0.0, 0.5, 1.0):
        delay = retry_delay(attempts, initial=1.0, maximum=30.0, jitter=lambda j=jitter: j)
        assert low <= delay <= high

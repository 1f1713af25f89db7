"""The SSE body of a call event and the replay/live handoff of ``GET /events`` (no I/O)."""

from __future__ import annotations

from engine.api.sse import KEEPALIVE_LINE, encode_event, pump
from engine.domain.stream_cursor import StreamCursor
from engine.events import EventBus
from tests.support.events import SESSION_1, SESSION_2, TENANT_1, call_event


def test_encode_event_is_one_sse_message() -> None:
    text = encode_event(call_event(7, seq=3)).decode()
    assert text.endswith("\n\n")
    lines = text[:-2].split("\n")  # the payload's newline is escaped inside the JSON
    assert lines[:2] == ["id: 7", "event: status.changed"]
    assert len(lines) == 3
    assert lines[2].startswith("data: {")
    assert f'"session_id":"{SESSION_1}"' in lines[2]
    assert '"seq":3' in lines[2]


async def test_pump_replays_then_goes_live_each_event_once() -> None:
    bus = await EventBus().start()
    live = bus.subscribe(tenant_id=TENANT_1)
    # committed while the replay was read: in the replay *and* on the bus
    for e in (call_event(2), call_event(3), call_event(4)):
        bus.publish(e)
    replay = [call_event(3), call_event(4)]  # the client said Last-Event-ID: 2
    bus.publish(call_event(5))
    bus.publish(
        call_event(1, session=SESSION_2)
    )  # an old event published late: at or below the id given
    bus.publish(call_event(6))
    live.close()
    written: list[bytes] = []

    async def write(chunk: bytes) -> None:
        written.append(chunk)

    clock = iter(float(t) for t in range(100))
    await pump(
        write, replay, live, StreamCursor(2), resumed=True, keepalive=60, clock=lambda: next(clock)
    )
    assert written == [
        encode_event(call_event(3), "2,1"),
        encode_event(call_event(4), "2,1,2"),
        encode_event(call_event(5), "2,1,2,3"),
        encode_event(call_event(6), "2,1,2,3,4"),
    ]


async def test_pump_keeps_alive_while_idle() -> None:
    bus = await EventBus().start()
    live = bus.subscribe()
    written: list[bytes] = []

    async def write(chunk: bytes) -> None:
        written.append(chunk)
        if chunk == KEEPALIVE_LINE:
            live.close()

    await pump(write, [], live, StreamCursor(0), resumed=False, keepalive=0.001)
    assert written == [KEEPALIVE_LINE]


async def test_a_new_stream_sends_every_live_event_even_below_its_floor() -> None:
    bus = await EventBus().start()
    live = bus.subscribe(tenant_id=TENANT_1)
    bus.publish(call_event(9))  # inserted before the stream opened, committed after
    bus.publish(call_event(12))
    live.close()
    written: list[bytes] = []

    async def write(chunk: bytes) -> None:
        written.append(chunk)

    await pump(write, [], live, StreamCursor(10), resumed=False, keepalive=60, clock=lambda: 0.0)
    assert written == [encode_event(call_event(9), "10"), encode_event(call_event(12), "10,2")]

"""Server-Sent Events for ``GET /api/v1/events``: framing, replay-then-live, shutdown.

Why a module of its own: three things here are easy to get subtly wrong.

- **Replay, then live, each event exactly once.** The use case that opens a stream
  (:meth:`engine.app.event_stream.EventStream.open`) subscribes to the
  :class:`~engine.events.EventBus` *before* it reads the replay from PostgreSQL. An event
  committed before the replay's snapshot is in the replay; one committed after it reaches the
  subscription (it was subscribed earlier). One committed in between is in both, so live
  events already replayed are skipped by id. The stream holds only events with
  ``id > Last-Event-ID``.
- **A slow client never slows the engine.** The subscription is a bounded queue; a client
  that falls behind is dropped by the bus and its stream ends after what it already holds.
  It reconnects with ``Last-Event-ID`` and the rest comes from the database. A replay larger
  than :data:`REPLAY_LIMIT` is sent in pieces the same way: the stream ends after one piece.
- **Streams are capped.** Each open stream holds a subscription queue and a connection;
  :class:`StreamLimits` bounds them per tenant and in all (``api.max_event_streams*``),
  shared by the Unix-socket and TCP apps. One past a cap is refused with 429 before
  anything is subscribed.
- **Shutdown does not wait for streams.** aiohttp waits ``shutdown_timeout`` for every open
  handler before cancelling it, and an SSE handler never finishes on its own. Every app keeps
  its open streams in :class:`OpenStreams`; its ``on_shutdown`` hook (aiohttp runs it before
  waiting for handlers) ends them, so each stream closes cleanly at once.

- **Resume misses no late commit.** ids are allocated at insert but become visible at
  commit, so two calls' events (or two engines') can become visible out of id order. The
  SSE ``id:`` is therefore a cursor (:class:`~engine.domain.stream_cursor.StreamCursor`):
  the newest settled id and the ids sent above it in the last seconds, so a resume replays
  a lower id that committed late, and nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Final, Literal

import structlog
from aiohttp import web

from engine.contract import stream_event
from engine.domain.stream_cursor import StreamCursor
from engine.errors import ClosedResourceError
from engine.events import Subscription
from engine.store.records import CallEvent

__all__ = [
    "CAPPED_RETRY_AFTER_S",
    "KEEPALIVE",
    "OPEN_STREAMS",
    "REPLAY_LIMIT",
    "RETRY_MS",
    "OpenStreams",
    "StreamLimits",
    "TooManyStreams",
    "encode_event",
    "pump",
]

log = structlog.get_logger(__name__)

# Seconds of silence after which a comment line keeps proxies and clients from timing out.
KEEPALIVE: float = 15.0
# Events replayed per connection; a larger backlog arrives over several reconnects.
REPLAY_LIMIT: Final = 1000
# The reconnect delay suggested to EventSource clients.
RETRY_MS: Final = 2000
# Retry-After (seconds) of a stream refused for a cap: streams stay open, so not soon.
CAPPED_RETRY_AFTER_S: Final = 30

KEEPALIVE_LINE: Final = b": keepalive\n\n"


def encode_event(event: CallEvent, cursor: str | None = None) -> bytes:
    """One SSE message: ``id`` (the stream's cursor after it; default the event id),
    ``event`` and one ``data`` line of JSON (JSON has no raw newlines, so one line is always
    enough)."""
    data = stream_event(event).model_dump_json()
    sse_id = str(event.id) if cursor is None else cursor
    return f"id: {sse_id}\nevent: {event.event_type}\ndata: {data}\n\n".encode()


class OpenStreams:
    """The open SSE streams of one aiohttp app, ended together at shutdown."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._subscriptions)

    @contextlib.contextmanager
    def track(self, sub: Subscription) -> Iterator[Subscription]:
        """Own ``sub`` for the life of one stream; closes it at the end."""
        if self.closing:
            sub.close()
            raise ClosedResourceError("the control API is shutting down")
        self._subscriptions.add(sub)
        try:
            yield sub
        finally:
            self._subscriptions.discard(sub)
            sub.close()

    async def on_shutdown(self, app: web.Application) -> None:
        self.closing = True
        if self._subscriptions:
            log.info("api.events_streams_closing", streams=len(self._subscriptions))
        for sub in list(self._subscriptions):
            sub.close()


OPEN_STREAMS: web.AppKey[OpenStreams] = web.AppKey("open_streams", OpenStreams)


class TooManyStreams(Exception):
    """A stream past a cap; ``scope`` says which (``tenant`` or ``global``)."""

    def __init__(self, scope: Literal["tenant", "global"], limit: int) -> None:
        self.scope = scope
        self.limit = limit
        who = "this tenant" if scope == "tenant" else "the engine"
        super().__init__(f"too many open event streams for {who} (at most {limit})")


class StreamLimits:
    """How many event streams are open, per tenant and in all, and the caps on both."""

    def __init__(self, *, per_tenant: int = 20, total: int = 200) -> None:
        if per_tenant < 1 or total < 1:
            raise ValueError(f"stream limits must be at least 1: {per_tenant=} {total=}")
        self.per_tenant = per_tenant
        self.total = total
        self._open: Counter[uuid.UUID] = Counter()

    def __len__(self) -> int:
        return self._open.total()

    def acquire(self, tenant_id: uuid.UUID) -> None:
        """Take one stream's place; :class:`TooManyStreams` when a cap is reached (checked
        and taken without an await in between). Pair with :meth:`release`."""
        if self._open[tenant_id] >= self.per_tenant:
            raise TooManyStreams("tenant", self.per_tenant)
        if len(self) >= self.total:
            raise TooManyStreams("global", self.total)
        self._open[tenant_id] += 1

    def release(self, tenant_id: uuid.UUID) -> None:
        if self._open[tenant_id] <= 0:
            raise RuntimeError(f"release of an event stream tenant {tenant_id} does not hold")
        self._open[tenant_id] -= 1
        if not self._open[tenant_id]:
            del self._open[tenant_id]


async def pump(
    write: Callable[[bytes], Awaitable[None]],
    replay: Sequence[CallEvent],
    live: Subscription,
    cursor: StreamCursor,
    *,
    resumed: bool,
    keepalive: float,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Write ``replay`` then every live event the client does not have, each with the
    cursor after it, until ``live`` ends.

    A ``resumed`` stream skips live events the cursor says the client has (the replay's,
    and what it had before); a new one sends every live event (all committed after it
    subscribed). ``keepalive`` seconds without an event write a comment line. Returns when
    the subscription ends (closed at shutdown, or dropped for falling behind); a write to a
    client that went away raises ``ConnectionResetError``.
    """
    replayed: set[int] = set()  # live events are unique; only these can come twice
    for old in replay:
        await write(encode_event(old, cursor.sent(old.id, clock())))
        replayed.add(old.id)
    while True:
        try:
            async with asyncio.timeout(keepalive):
                event = await live.next()
        except TimeoutError:
            await write(KEEPALIVE_LINE)
            continue
        if event is None:
            return
        if event.id in replayed or (resumed and cursor.seen(event.id)):
            continue
        await write(encode_event(event, cursor.sent(event.id, clock())))

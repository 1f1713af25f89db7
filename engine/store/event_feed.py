"""The call events other engines commit, published on this engine's bus.

Why: each engine publishes the events it commits to its own in-process bus, which feeds
its SSE streams and wakes its callback notifier. With several engines on one database an
ERP connected to engine B must still see the calls engine A places. PostgreSQL is the only
coordinator: ``call_event`` is the truth, ``LISTEN ctc_call_events`` (notified by a
statement trigger, sql/0018_event_feed.sql) is the wake-up, and a timer reads anyway every
``poll_interval`` seconds, so a lost notification (or a listening connection that is down)
only delays.

Reading by id without losing late commits: ids come from a sequence when a row is
inserted, not when it commits, so id 10 may become visible after id 11. The feed keeps a
cursor (the highest id seen) and the *gaps* below it (ids not seen yet): each read asks for
``id > cursor`` and for the gaps, so a late commit is picked up on a later read. A gap that
stays empty for ``gap_timeout`` seconds is given up (a rolled-back insert, or a sequence
jump after a crash). One session's events keep their order: its owner writes them one
transaction after another, so an event is committed before the next one is inserted.

One statement reads the rows past the cursor and in its gaps; a row this engine wrote
(``node`` = this node) comes without its payload and is not published again, so on a lone
engine every row but a tool's only moves the cursor. Every id goes through the cursor, its
own included: a row another writer inserted before one of ours and committed after it stays
a gap until it is read (moving the cursor to the newest id without reading, as a lone engine
once did, lost such a row). The rows past the cursor and the gaps are two index scans under
one ``UNION ALL``: as one ``id > $1 OR id = ANY($2)`` condition, PostgreSQL's generic plan
for the prepared statement (chosen after a few catch-up reads) filtered the whole table
from its first row, seconds per read on millions of events. The feed starts with the ids
missing among the last ``_START_WINDOW`` as gaps: a row inserted before the start and
committed after it is published too. A notification from this engine itself does not
trigger a read.

Failure policy: a failed round (PostgreSQL away) is logged and the next wake-up or tick
retries (:class:`~engine.periodic.Periodic`); a lost listening connection is logged and
opened again at the next round, the timer reading meanwhile. The feed never stops the
engine. Events committed before the feed started are not replayed
(an SSE client resumes from its Last-Event-ID, read from the table).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final

from engine.errors import ClosedResourceError
from engine.events import EventBus
from engine.periodic import Periodic
from engine.store.database import Database
from engine.store.listener import Listener
from engine.store.records import EVENT_COLUMNS, CallEvent

__all__ = ["CHANNEL", "CallEventFeed", "FeedCursor"]

CHANNEL: Final = "ctc_call_events"
_BATCH: Final = 1000  # rows per read; a full batch is followed by another read at once
_MAX_GAPS: Final = 10_000  # the most ids waited for at once (the oldest are given up)

_START_WINDOW: Final = 1000  # ids below the newest at start that may still commit

_COLS = ", ".join(
    "CASE WHEN node IS DISTINCT FROM $3 THEN payload END AS payload" if name == "payload" else name
    for name in EVENT_COLUMNS
)
_READ = (
    f"(SELECT {_COLS}, node IS DISTINCT FROM $3 AS other FROM call_event WHERE id > $1 "
    f"ORDER BY id LIMIT $4) UNION ALL (SELECT {_COLS}, node IS DISTINCT FROM $3 AS other "
    f"FROM call_event WHERE id = ANY($2::bigint[])) ORDER BY id LIMIT $4"
)


class FeedCursor:
    """Which call_event ids the feed has seen: everything up to ``after`` but the gaps."""

    def __init__(self, after: int, *, gap_timeout: float) -> None:
        self.after = after
        self.gap_timeout = gap_timeout
        self.gaps: dict[int, float] = {}  # id -> when it was first found missing

    def fresh(self, ids: Iterable[int], now: float) -> list[int]:
        """Record ``ids`` (ascending) as read at ``now``; the ones not seen before, in order.
        Ids skipped over become gaps; gaps older than ``gap_timeout`` are given up."""
        fresh: list[int] = []
        for event_id in ids:
            if event_id in self.gaps:
                del self.gaps[event_id]
            elif event_id > self.after:
                # at most the _MAX_GAPS ids just below (a sequence may jump far: setval)
                skipped = range(max(self.after + 1, event_id - _MAX_GAPS), event_id)
                self.gaps.update(dict.fromkeys(skipped, now))
                self.after = event_id
            else:
                continue  # read twice (a gap filled by an earlier read of this batch)
            fresh.append(event_id)
        self._expire(now)
        return fresh

    def _expire(self, now: float) -> None:
        expired = [i for i, since in self.gaps.items() if now - since > self.gap_timeout]
        for event_id in expired:
            del self.gaps[event_id]
        while len(self.gaps) > _MAX_GAPS:  # insertion order: the oldest gaps first
            del self.gaps[next(iter(self.gaps))]


class CallEventFeed(Periodic):
    """Publishes on ``bus`` the call events other nodes commit (this engine is ``node``):
    a read when another node's NOTIFY wakes it, and a round every ``poll_interval``
    seconds anyway (the first one interval after start)."""

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        node: str,
        poll_interval: float = 1.0,
        gap_timeout: float = 10.0,
    ) -> None:
        super().__init__("event_feed", interval=poll_interval)
        self._db = db
        self._bus = bus
        self._node = node
        self._gap_timeout = gap_timeout
        self._listener = Listener(db.url, {CHANNEL: self._notified}, name="event-feed")
        self._cursor: FeedCursor | None = None
        self.published = 0  # events of other nodes published, for tests and logs
        self.reads = 0  # reads of other writers' whole rows, for tests

    async def _open(self) -> None:
        newest = int(await self._db.fetchval("SELECT coalesce(max(id), 0) FROM call_event"))
        # the ids below the newest not committed yet are gaps: not replayed, not lost
        cursor = FeedCursor(max(0, newest - _START_WINDOW), gap_timeout=self._gap_timeout)
        seen = await self._db.fetch(
            "SELECT id FROM call_event WHERE id > $1 AND id <= $2 ORDER BY id",
            cursor.after,
            newest,
        )
        cursor.fresh([row["id"] for row in seen], time.monotonic())  # after: the newest
        self._cursor = cursor
        await self._listener.ensure()
        await super()._open()

    async def _close(self) -> None:
        await super()._close()
        await self._listener.close()

    async def run_once(self) -> None:
        """One round: listen again if the connection is down, then read until caught up."""
        await self._listener.ensure()
        while await self.read_once() == _BATCH:
            pass

    @property
    def position(self) -> int:
        """The highest call_event id seen (0 before the feed started)."""
        return 0 if self._cursor is None else self._cursor.after

    async def read_once(self) -> int:
        """Read what was committed since the last read; publish other writers' events.
        Returns the number of rows read."""
        cursor = self._open_cursor("read")
        rows = await self._db.fetch(_READ, cursor.after, list(cursor.gaps), self._node, _BATCH)
        by_id = {row["id"]: row for row in rows}
        fresh = cursor.fresh(by_id, time.monotonic())
        others = [by_id[event_id] for event_id in fresh if by_id[event_id]["other"]]
        if others:
            self.reads += 1
        for row in others:
            self._bus.publish(CallEvent(**{name: row[name] for name in EVENT_COLUMNS}, remote=True))
            self.published += 1
        return len(rows)

    def _open_cursor(self, action: str) -> FeedCursor:
        """The cursor of an open feed (``_open`` sets it before anything can read)."""
        self.require_open(action)
        if self._cursor is None:
            raise ClosedResourceError("CallEventFeed has no cursor: it did not start")
        return self._cursor

    def _notified(self, payload: str) -> None:
        if payload != self._node:  # this engine's own rows: the timer's round covers them
            self.wake()

"""Where an event stream's client is, so a resume (SSE ``Last-Event-ID``) misses nothing.

Why not the last event id alone: call_event ids are taken at insert, rows become visible at
commit, so id 10 may commit after id 11 was sent (two calls' events, or two engines'). A
client that resumes from 11 with ``id > 11`` never gets 10. The cursor is therefore the
stream's own record of what it sent, in the SSE ``id:`` field:

- ``floor``: every event of the stream with an id up to it was sent, or committed more
  than :data:`SETTLE` seconds after a higher one was sent (given up, as the event feed gives
  up a gap);
- ``recent``: the ids above ``floor`` sent in the last :data:`SETTLE` seconds (at most
  :data:`MAX_RECENT`; past that the oldest settle early).

A resume replays ``id > floor`` except ``recent``: a late commit below the newest id sent
is replayed, and nothing the client has is sent twice. The token is ``floor`` then each
recent id as its distance from ``floor``: ``1200,3,5,9`` (1203, 1205 and 1209 sent). A plain
event id (``1209``) is a cursor with nothing recent, as ids were before.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

__all__ = ["MAX_RECENT", "PATTERN", "SETTLE", "StreamCursor"]

SETTLE: Final = 10.0  # seconds after which an id sent is covered by the floor
MAX_RECENT: Final = 64  # ids kept above the floor (the token stays a short header)
_MAX_TOKEN: Final = 2048
PATTERN: Final = "^[0-9]+(,[1-9][0-9]*)*$"  # what a token looks like (OpenAPI's pattern)
_TOKEN: Final = re.compile(PATTERN)


@dataclasses.dataclass(slots=True)
class StreamCursor:
    floor: int
    recent: dict[int, float] = dataclasses.field(default_factory=dict)  # id -> sent at

    @classmethod
    def parse(cls, raw: str, now: float) -> StreamCursor:
        """The cursor a token says (ValueError for anything else); its recent ids count
        as sent ``now``."""
        if len(raw) > _MAX_TOKEN or not raw.isascii() or not _TOKEN.fullmatch(raw):
            raise ValueError("expected an event id, then ids above it as distances")
        floor_text, *deltas = raw.split(",")
        floor = int(floor_text)
        if len(floor_text) > 18 or len(deltas) > MAX_RECENT:
            raise ValueError("out of range")
        return cls(floor, {floor + int(d): now for d in deltas})

    def seen(self, event_id: int) -> bool:
        """Whether the client has the event (or it was given up)."""
        return event_id <= self.floor or event_id in self.recent

    def sent(self, event_id: int, now: float) -> str:
        """Record the event as sent at ``now``; the token to send with it."""
        if event_id > self.floor:
            self.recent[event_id] = now
        self._settle(now)
        return self.token()

    def token(self) -> str:
        return str(self.floor) + "".join(f",{i - self.floor}" for i in sorted(self.recent))

    def _settle(self, now: float) -> None:
        for event_id, at in list(self.recent.items()):
            if now - at > SETTLE:
                self.floor = max(self.floor, event_id)
        self._drop_covered()
        while len(self.recent) > MAX_RECENT:  # the oldest ids settle early
            self.floor = min(self.recent)
            self._drop_covered()

    def _drop_covered(self) -> None:
        self.recent = {i: at for i, at in self.recent.items() if i > self.floor}

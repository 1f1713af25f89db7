"""Rows that every call or request reads (its tenant, the tenant's IVR menus), kept in
memory for a few seconds and read again by one caller at a time.

Why: at 200 IVR calls/s every call starts by looking up its tenant and its menus. With a
plain expiry, each expiry sent every call that arrived during the read to PostgreSQL as
well: a burst of identical queries, each result parsed again, and those callers' answers
late by as much (bench/ivr.py). Here an entry is read by one task at a time:

- fresh (younger than ``ttl``): returned;
- expired: returned as it is, and one read in the background refreshes it (so a change
  made elsewhere is seen within ``ttl`` plus one read); or, with ``serve_expired=False``,
  treated as missing;
- missing: every caller waits for the same one read.

Failure policy: a read that fails leaves an expired value in place (the next caller starts
another read), so while PostgreSQL is away callers keep the last value found. A read that
raises :class:`~engine.errors.NotFound` drops the entry (the row is gone). Callers waiting
for a missing entry get the read's exception. :meth:`ReadCache.clear` (this process
changed the rows) forgets every entry, and a read still in flight then stores nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from engine.errors import NotFound

__all__ = ["ReadCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    value: V
    expires: float  # time.monotonic()


class ReadCache(Generic[K, V]):
    """Values by key, each read by ``read()`` at most once at a time (see the module)."""

    def __init__(self, ttl: float, *, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[K, _Entry[V]] = {}
        self._reading: dict[K, asyncio.Future[V]] = {}
        self._generation = 0  # bumped by clear(): reads started before store nothing

    async def get(
        self, key: K, read: Callable[[], Awaitable[V]], *, serve_expired: bool = True
    ) -> V:
        """The value for ``key``: cached, or read by ``read()`` (shared with concurrent
        callers); an expired value is returned while one read refreshes it, unless
        ``serve_expired`` is false (then callers wait for that read, as for a missing one:
        for values that must not outlive their rows, like a revoked token's tenant)."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires > time.monotonic():
            return entry.value
        reading = self._reading.get(key)
        if reading is None:
            reading = self._start(key, read)
        if entry is not None and serve_expired:
            return entry.value
        # shielded: a caller cancelled while waiting does not cancel the others' read
        return await asyncio.shield(reading)

    def clear(self) -> None:
        """Forget every value (this process changed the rows they came from)."""
        self._entries.clear()
        self._reading.clear()
        self._generation += 1

    def _start(self, key: K, read: Callable[[], Awaitable[V]]) -> asyncio.Future[V]:
        reading = asyncio.ensure_future(read())
        generation = self._generation
        self._reading[key] = reading
        reading.add_done_callback(lambda done: self._done(key, generation, done))
        return reading

    def _done(self, key: K, generation: int, reading: asyncio.Future[V]) -> None:
        if self._reading.get(key) is reading:
            del self._reading[key]
        if reading.cancelled() or generation != self._generation:
            return
        error = reading.exception()  # retrieved here: a background read's error is not lost
        if isinstance(error, NotFound):
            self._entries.pop(key, None)
        elif error is None:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()  # bounded: keys come from requests (tokens)
            self._entries[key] = _Entry(reading.result(), time.monotonic() + self._ttl)

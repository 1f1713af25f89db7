"""ReadCache: one read at a time per key, expired values served while they refresh."""

from __future__ import annotations

import asyncio

import pytest

from engine.errors import DatabaseUnavailable, NotFound
from engine.store.read_cache import ReadCache

FRESH = 3600.0  # never expires within a test
EXPIRED = 0.0  # expired as soon as stored


class Reads:
    """A read function whose answers the test releases one at a time."""

    def __init__(self) -> None:
        self.started = 0
        self.answers: asyncio.Queue[str | BaseException] = asyncio.Queue()

    async def __call__(self) -> str:
        self.started += 1
        answer = await self.answers.get()
        if isinstance(answer, BaseException):
            raise answer
        return answer


async def settled() -> None:
    """Let tasks the cache started run as far as they can."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_callers_of_a_missing_key_share_one_read() -> None:
    cache: ReadCache[str, str] = ReadCache(FRESH)
    reads = Reads()
    waiting = [asyncio.create_task(cache.get("k", reads)) for _ in range(10)]
    await settled()
    reads.answers.put_nowait("v1")
    assert await asyncio.gather(*waiting) == ["v1"] * 10
    assert reads.started == 1


async def test_a_fresh_value_is_served_without_reading() -> None:
    cache: ReadCache[str, str] = ReadCache(FRESH)
    reads = Reads()
    reads.answers.put_nowait("v1")
    assert await cache.get("k", reads) == "v1"
    assert await cache.get("k", reads) == "v1"
    assert reads.started == 1


async def test_an_expired_value_is_served_while_one_read_refreshes_it() -> None:
    cache: ReadCache[str, str] = ReadCache(EXPIRED)
    reads = Reads()
    reads.answers.put_nowait("v1")
    assert await cache.get("k", reads) == "v1"
    # expired: every caller gets v1 at once, and only one refresh starts
    assert [await cache.get("k", reads) for _ in range(5)] == ["v1"] * 5
    await settled()
    assert reads.started == 2
    reads.answers.put_nowait("v2")
    await settled()
    assert await cache.get("k", reads) == "v2"


async def test_without_serve_expired_callers_wait_for_the_refresh() -> None:
    cache: ReadCache[str, str] = ReadCache(EXPIRED)
    reads = Reads()
    reads.answers.put_nowait("v1")
    assert await cache.get("k", reads, serve_expired=False) == "v1"
    waiter = asyncio.create_task(cache.get("k", reads, serve_expired=False))
    await settled()
    assert not waiter.done()
    reads.answers.put_nowait("v2")
    assert await waiter == "v2"


async def test_a_failed_refresh_keeps_the_expired_value_and_the_next_caller_reads_again() -> None:
    cache: ReadCache[str, str] = ReadCache(EXPIRED)
    reads = Reads()
    reads.answers.put_nowait("v1")
    assert await cache.get("k", reads) == "v1"
    reads.answers.put_nowait(DatabaseUnavailable("PostgreSQL is away"))
    assert await cache.get("k", reads) == "v1"  # starts the refresh, which fails
    await settled()
    reads.answers.put_nowait("v2")
    assert await cache.get("k", reads) == "v1"  # a second refresh starts
    await settled()
    assert reads.started == 3
    assert await cache.get("k", reads) == "v2"


async def test_callers_waiting_for_a_missing_key_get_the_reads_error() -> None:
    cache: ReadCache[str, str] = ReadCache(FRESH)
    reads = Reads()
    waiting = [asyncio.create_task(cache.get("k", reads)) for _ in range(3)]
    await settled()
    reads.answers.put_nowait(DatabaseUnavailable("PostgreSQL is away"))
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, DatabaseUnavailable) for r in results)


async def test_a_row_found_gone_drops_the_expired_value() -> None:
    cache: ReadCache[str, str] = ReadCache(EXPIRED)
    reads = Reads()
    reads.answers.put_nowait("v1")
    assert await cache.get("k", reads) == "v1"
    reads.answers.put_nowait(NotFound("tenant", "k"))
    assert await cache.get("k", reads) == "v1"
    await settled()
    reads.answers.put_nowait(NotFound("tenant", "k"))
    with pytest.raises(NotFound):
        await cache.get("k", reads)


async def test_a_read_in_flight_when_cleared_stores_nothing() -> None:
    cache: ReadCache[str, str] = ReadCache(FRESH)
    reads = Reads()
    first = asyncio.create_task(cache.get("k", reads))
    await settled()
    cache.clear()  # e.g. this process saved the tenant's menus meanwhile
    reads.answers.put_nowait("old")
    assert await first == "old"  # its caller still gets what it waited for
    reads.answers.put_nowait("new")
    assert await cache.get("k", reads) == "new"
    assert reads.started == 2


async def test_a_cancelled_caller_does_not_cancel_the_read_others_wait_for() -> None:
    cache: ReadCache[str, str] = ReadCache(FRESH)
    reads = Reads()
    impatient = asyncio.create_task(cache.get("k", reads))
    patient = asyncio.create_task(cache.get("k", reads))
    await settled()
    impatient.cancel()
    reads.answers.put_nowait("v1")
    assert await patient == "v1"
    assert impatient.cancelled()


async def test_entries_past_the_bound_are_forgotten() -> None:
    cache: ReadCache[int, str] = ReadCache(FRESH, max_entries=2)
    reads = Reads()
    for key in range(3):
        reads.answers.put_nowait(f"v{key}")
        await cache.get(key, reads)
    reads.answers.put_nowait("again")
    assert await cache.get(0, reads) == "again"  # read again: the cache was emptied

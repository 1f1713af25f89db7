"""Waiting for a condition that no event announces, bounded.

Some state lives where a test cannot subscribe: a row another process commits, a bridge ARI
lists a moment after answering ``DELETE``. :func:`eventually` polls such a condition until
it holds and fails the test with what it waited for once the deadline passes; a test never
sleeps a fixed time and hopes.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

__all__ = ["eventually"]

T = TypeVar("T")


@overload
async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    within: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T | None],
    *,
    within: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


async def eventually(
    check: Callable[[], Awaitable[T | None] | T | None],
    *,
    within: float = 20.0,
    interval: float = 0.02,
    what: str = "",
) -> T:
    """Call ``check`` (sync or async) until it returns a true value; that value.

    Raises ``AssertionError`` naming ``what`` (or ``check``) and the last value if it has not
    held within ``within`` seconds.
    """
    last: object = None
    try:
        async with asyncio.timeout(within):
            while True:
                result = check()
                last = await result if inspect.isawaitable(result) else result
                if last:
                    return last
                await asyncio.sleep(interval)
    except TimeoutError:
        name = what or getattr(check, "__qualname__", repr(check))
        raise AssertionError(f"{name} did not hold within {within:g} s (last: {last!r})") from None

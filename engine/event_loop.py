"""The event loop the engine daemon runs on: uvloop's (libuv) where it is installed.

Why: per call the engine is mostly I/O plumbing (a FastAGI command is a socket write, a
readline and a timer; an ARI event a WebSocket frame; the journal a PostgreSQL round
trip), and asyncio's pure-Python selector loop and transports cost as much as the engine's
own work on top of them. Measured with bench/agi_wire.py (the FastAGI door, 120 calls/s,
three runs each, alternated on one box): 1.72 ms of engine CPU per call on asyncio's loop,
1.55 ms on uvloop's.
The short-lived CLI commands keep asyncio's loop (nothing to gain there); where uvloop is
not installed the daemon runs on asyncio's as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_daemon_loop"]

T = TypeVar("T")


def run_daemon_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end on a new uvloop loop (asyncio's without uvloop)."""
    try:
        import uvloop
    except ImportError:  # an optional speed-up: the engine is the same without it
        return asyncio.run(coro)
    # not uvloop.run (0.18+): Debian's python3-uvloop, which the container image uses, may
    # be older; a runner with uvloop's loop is the same thing on every version
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)

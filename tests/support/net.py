"""A free TCP port on 127.0.0.1 for a server a test starts (engine API, fake ERP); the
size of a connection burst a listener's backlog can be shown to hold here."""

from __future__ import annotations

import concurrent.futures
import socket

from engine.listening import backlog_cap
from tests.support.ci import unavailable

__all__ = ["backlog_burst", "connected_at_once", "free_port"]

# more than asyncio's (100) and aiohttp's (128) default backlogs
_BURST = 300


def backlog_burst() -> int:
    """Connections a test opens at once to show a listener's backlog holds them: more than
    asyncio's and aiohttp's defaults; unavailable where the kernel caps every backlog below
    that (``net.core.somaxconn``), since the test would then prove nothing."""
    cap = backlog_cap()
    if cap is not None and cap < _BURST:
        unavailable("a connection burst", f"net.core.somaxconn is {cap}")
    return _BURST


def free_port() -> int:
    """A port the kernel just handed out and released: free unless something races for it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connected_at_once(family: int, address: str | tuple[str, int], count: int) -> int:
    """Open ``count`` connections to ``address`` at once (32 threads) and say how many
    connected, each given 0.5 s (a dropped SYN is retried only after 1 s). Called from a
    test's coroutine it blocks the loop meanwhile, as a busy loop that accepts nothing: the
    connections that get through are the ones the listen backlog held."""

    def connect(_: int) -> bool:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            try:
                sock.connect(address)
            except OSError:
                return False
            return True

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        return sum(pool.map(connect, range(count)))

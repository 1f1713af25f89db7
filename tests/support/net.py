"""A free TCP port on 127.0.0.1 for a server a test starts (engine API, fake ERP); the
size of a connection burst a listener's backlog can be shown to hold here."""

from __future__ import annotations

import socket

from engine.listening import backlog_cap
from tests.support.ci import unavailable

__all__ = ["backlog_burst", "free_port"]

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

"""How many connections each listener of the engine lets the kernel hold for it.

Why: the engine's listeners (FastAGI, the API's Unix socket and TCP port) are served by one
event loop, and a burst of callers or of an ERP's requests comes while that loop is busy or
waiting for a CPU. asyncio listens with a backlog of 100 and aiohttp with 128; past it, a
TCP client's SYN is dropped and retried after 1 s, and a non-blocking Unix-socket client's
connect fails at once (a blocking one waits). Asterisk gives a FastAGI connect 2 s
(``MAX_AGI_CONNECT``) before it goes on with the dialplan without the IVR: at 160 calls/s
on 2 cores, a backlog of 100 lost callers (bench/ivr.py).

The kernel caps the backlog at ``net.core.somaxconn`` (4096 since Linux 5.4, 128 before):
:func:`backlog_cap` says when it is lower, and the daemon warns at start. On asyncio's own
loop (uvloop is the daemon's) the backlog is also how many connections one loop turn
accepts at most: a burst is accepted in one go rather than over several turns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["LISTEN_BACKLOG", "backlog_cap"]

LISTEN_BACKLOG: Final = 4096
_SOMAXCONN: Final = Path("/proc/sys/net/core/somaxconn")


def backlog_cap(somaxconn: Path = _SOMAXCONN) -> int | None:
    """The kernel's cap on a listen backlog (``somaxconn``: ``net.core.somaxconn``) when it
    is below :data:`LISTEN_BACKLOG`, else None (also where the cap cannot be read)."""
    try:
        cap = int(somaxconn.read_text())
    except (OSError, ValueError):
        return None
    return cap if cap < LISTEN_BACKLOG else None

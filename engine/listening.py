"""How many connections each listener of the engine lets the kernel hold for it.

Why: the engine's listeners (FastAGI, the API's Unix socket and TCP port) are served by one
event loop, and a burst of callers or of an ERP's requests comes while that loop is busy or
waiting for a CPU. asyncio listens with a backlog of 100 and aiohttp with 128; past it, a
TCP client's SYN is dropped and retried after 1 s, and a Unix-socket client's connect fails
at once. Asterisk gives a FastAGI connect 2 s (``MAX_AGI_CONNECT``) before it goes on with
the dialplan without the IVR: at 160 calls/s on 2 cores, a backlog of 100 lost callers
(bench/ivr.py). The kernel caps the backlog at ``net.core.somaxconn`` (4096 by default).
"""

from __future__ import annotations

from typing import Final

__all__ = ["LISTEN_BACKLOG"]

LISTEN_BACKLOG: Final = 4096

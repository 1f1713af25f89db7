"""A free TCP port on 127.0.0.1 for a server a test starts (engine API, fake ERP)."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port() -> int:
    """A port the kernel just handed out and released: free unless something races for it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

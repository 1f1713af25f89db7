"""One PostgreSQL connection that LISTENs, for the engines' wake-ups (NOTIFY).

Why a connection of its own: a LISTEN belongs to a session, and a pooled connection goes
back to the pool. Notifications are only wake-ups: whoever listens also reads the table on
a timer, so a connection that is down (re-opened by :meth:`Listener.ensure` at the next
tick) or a lost notification only delays.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
import structlog

from engine.errors import describe

__all__ = ["Listener", "Notified"]

log = structlog.get_logger(__name__)

Notified = Callable[[str], None]  # called with the notification's payload


class Listener:
    """LISTENs on ``channels`` (name -> callback of the payload) over its own connection."""

    def __init__(self, url: str, channels: Mapping[str, Notified], *, name: str) -> None:
        self._url = url
        self._channels = dict(channels)
        self._name = name  # for the log
        self._conn: asyncpg.Connection | None = None

    @property
    def up(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def ensure(self) -> bool:
        """Listen now if the connection is not up (a failure is logged: tried again at the
        next call); whether it is up."""
        if self.up:
            return True
        await self.close()
        try:
            conn = await asyncpg.connect(self._url, timeout=5)
        except Exception as exc:
            log.warning("listener.connect_failed", listener=self._name, error=describe(exc))
            return False
        self._conn = conn  # held before the next await: a cancelled caller's close closes it
        try:
            for channel, callback in self._channels.items():
                await conn.add_listener(channel, _adapter(callback))
        except Exception as exc:
            log.warning("listener.listen_failed", listener=self._name, error=describe(exc))
            await self.close()
            return False
        return True

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)


def _adapter(callback: Notified) -> Callable[..., None]:
    def notified(conn: Any, pid: int, channel: str, payload: object) -> None:
        callback(str(payload))

    return notified

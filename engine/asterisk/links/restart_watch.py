"""Tells from AMI's ``FullyBooted`` whether Asterisk restarted, and says so once.

Why: an ARI app's subscription lives in Asterisk, and a restarted Asterisk has none; the
engine recreates it by reconnecting the event socket, and resyncs as after any reconnect.
AMI sends ``FullyBooted`` after every login, with ``Uptime`` (seconds since
Asterisk started): when Asterisk has been up for less time than has passed since the last
``FullyBooted``, it restarted in between. Then :class:`RestartWatch` calls ``on_restart``,
which the daemon wires to the ARI event link's ``drop()``: the link reconnects, which
recreates the app's subscription, and resyncs.

The engine's first login is not a restart (there is nothing to recreate); an unknown or
unreadable ``Uptime`` counts as one (a needless resync is harmless).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog

from engine.asterisk.links.ami import AmiEvent, AmiLink

__all__ = ["RestartWatch"]

log = structlog.get_logger(__name__)

# How much the uptime may be short of the time since the last FullyBooted without meaning
# a restart (the two clocks are read at different moments).
_SLACK = 1.0


class RestartWatch:
    """Calls ``on_restart`` when a ``FullyBooted`` shows Asterisk restarted since the last.

    ``booted_at`` is when AMI last said ``FullyBooted`` (``clock`` time; None: never).
    """

    #: The AMI event classes it needs: ``FullyBooted`` is a ``system`` event.
    EVENTS = "system"

    def __init__(
        self,
        on_restart: Callable[[], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_restart = on_restart
        self._clock = clock
        self.booted_at: float | None = None

    def watch(self, ami: AmiLink) -> None:
        """Hear ``ami``'s ``FullyBooted`` events (register before starting the link: the
        first comes with the login)."""
        ami.on_event("FullyBooted", self.fully_booted)

    async def fully_booted(self, event: AmiEvent) -> None:
        """AMI said ``FullyBooted``: call ``on_restart`` if Asterisk restarted since the
        last one."""
        now = self._clock()
        last, self.booted_at = self.booted_at, now
        try:
            uptime = float(event.get("Uptime", ""))
        except ValueError:
            uptime = 0.0  # unknown: assume a restart, a needless resync is harmless
        restarted = last is not None and uptime + _SLACK < now - last
        log.info("asterisk.fully_booted", uptime=event.get("Uptime"), restarted=restarted)
        if restarted:
            await self._on_restart()

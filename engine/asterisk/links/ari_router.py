"""One table from ARI event type to the handlers that take it.

Why a table: the Stasis app serves click-to-calls and IVR calls over one event socket.
Each flow says which event types it takes (``router.on("StasisStart", handler)``, as
wazo-calld subscribes its handlers), so what happens to an event is read from one table
instead of if-chains over ``event["type"]`` in every flow.

An event belongs to one call: the handlers of its type are asked in the order they were
registered, and the first that returns True (the event was its call's) ends the routing.
Handlers run on the app's dispatcher, never on the socket's reader (which only enqueues:
see :mod:`engine.asterisk.links.ari`), and must not wait: they hand the event to their
call's task or queue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

__all__ = ["AriEvent", "AriEventHandler", "AriEventRouter", "event_channel"]

AriEvent: TypeAlias = Mapping[str, Any]
"""One decoded ARI event (``{"type": "StasisStart", "channel": {...}, ...}``)."""
AriEventHandler: TypeAlias = Callable[[AriEvent], bool]
"""Takes an event; True when it was its call's (the routing ends there)."""

_CHANNEL_URI = "channel:"


class AriEventRouter:
    """Event type → handlers, asked in order until one takes the event."""

    def __init__(self) -> None:
        self._table: dict[str, list[AriEventHandler]] = {}

    def on(self, event_type: str, handler: AriEventHandler) -> None:
        self._table.setdefault(event_type, []).append(handler)

    @property
    def event_types(self) -> frozenset[str]:
        """The types some handler takes: an event of any other type is routed to none."""
        return frozenset(self._table)

    def route(self, event: AriEvent) -> bool:
        """Hand ``event`` to its type's handlers; whether one of them took it."""
        return any(handler(event) for handler in self._table.get(str(event.get("type")), ()))


def event_channel(event: AriEvent) -> str:
    """The channel an event is about: its ``channel``, or the channel a playback or a
    recording targets; ``""`` when it is about none."""
    channel = str(event.get("channel", {}).get("id", ""))
    if channel:
        return channel
    for key in ("playback", "recording"):
        target = str(event.get(key, {}).get("target_uri", ""))
        if target.startswith(_CHANNEL_URI):
            channel = target[len(_CHANNEL_URI) :]
    return channel

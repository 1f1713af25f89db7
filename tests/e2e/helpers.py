"""Helpers for end-to-end tests against the sandbox Asterisk: SIPp phones and ARI events.

``SippPhone`` runs one SIPp scenario from ``engine/devtools/scenarios/`` as a phone listening
on a 127.0.0.1 port (see ``dialplan/pjsip.conf`` for which port is which endpoint). ``AriEvents``
holds an ARI event WebSocket open and lets a test wait, with a timeout, for the event it
expects. Neither ever sleeps and hopes: every wait is on a condition, bounded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from engine.asterisk.links.ami import AmiEvent, AmiLink
from engine.devtools.sandbox import ARI_PASSWORD, ARI_URL, ARI_USER, DEFAULT_ADDRESS
from engine.devtools.sipp import SippPhone
from tests.support.waiting import eventually

__all__ = [
    "AMI_PASSWORD",
    "ARI_AUTH_HEADER",
    "ARI_URL",
    "AriEvents",
    "SippPhone",
    "ari_bridges",
    "ari_has",
    "ari_session",
    "moh_events",
    "next_moh",
]


AMI_PASSWORD = "ctc-sandbox"  # dialplan/manager.conf, sandbox only

#: ARI Basic auth as a header (aiohttp's ``auth=`` is deprecated since 3.14).
ARI_AUTH_HEADER = {
    "Authorization": "Basic " + base64.b64encode(f"{ARI_USER}:{ARI_PASSWORD}".encode()).decode()
}


class AriEvents:
    """An open ``/ari/events`` WebSocket whose events a test can wait for.

    Events are kept in arrival order; :meth:`wait_for` returns the first not-yet-taken
    event that matches, waiting up to ``within`` seconds for it to arrive.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self.events: list[dict[str, Any]] = []
        self._taken: set[int] = set()
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    async with self._arrived:
                        self.events.append(json.loads(msg.data))
                        self._arrived.notify_all()
        finally:
            async with self._arrived:
                self._arrived.notify_all()  # wake waiters: the socket is gone

    async def wait_for(
        self,
        event_type: str,
        *,
        channel_id: str | None = None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        within: float = 10.0,
    ) -> dict[str, Any]:
        def find() -> int | None:
            for i, event in enumerate(self.events):
                if i in self._taken or event.get("type") != event_type:
                    continue
                if channel_id is not None and event.get("channel", {}).get("id") != channel_id:
                    continue
                if where is not None and not where(event):
                    continue
                return i
            return None

        try:
            async with asyncio.timeout(within), self._arrived:
                while (index := find()) is None:
                    if self._reader.done():
                        raise AssertionError("ARI event socket closed")
                    await self._arrived.wait()
        except TimeoutError:
            seen = [(e.get("type"), e.get("channel", {}).get("id")) for e in self.events]
            raise AssertionError(
                f"no {event_type} (channel {channel_id}) within {within:g} s; seen: {seen}"
            ) from None
        self._taken.add(index)
        return self.events[index]

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def ari_session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session that sends the sandbox ARI credentials with every request."""
    async with aiohttp.ClientSession(
        headers=ARI_AUTH_HEADER, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        yield session


async def ari_bridges(
    ari: aiohttp.ClientSession,
    *,
    until: Callable[[set[str]], bool] = lambda _: True,
    within: float = 5.0,
) -> set[str]:
    """The ids of Asterisk's bridges. With ``until``, listed again until it holds or
    ``within`` seconds pass (the last list either way, for the caller to assert on): ARI
    answers ``DELETE /bridges/{id}`` before the bridge has left the list."""

    async def listed() -> tuple[set[str]] | None:
        found = await _bridge_ids(ari)
        return (found,) if until(found) else None  # a tuple: an empty set may be the answer

    with contextlib.suppress(AssertionError):
        (found,) = await eventually(listed, within=within, interval=0.05, what="ARI bridges")
        return found
    return await _bridge_ids(ari)


async def _bridge_ids(ari: aiohttp.ClientSession) -> set[str]:
    async with ari.get(f"{ARI_URL}/bridges") as resp:
        assert resp.status == 200, await resp.text()
        return {str(b["id"]) for b in await resp.json()}


async def ari_has(ari: aiohttp.ClientSession, kind: str, name: str) -> bool:
    """Whether ARI has the channel or bridge (``kind``: channels, bridges) ``name``."""
    async with ari.get(f"{ARI_URL}/{kind}/{name}") as resp:
        assert resp.status in (200, 404), await resp.text()
        return resp.status == 200


@contextlib.asynccontextmanager
async def moh_events(address: str = DEFAULT_ADDRESS) -> AsyncIterator[asyncio.Queue[AmiEvent]]:
    """AMI MusicOnHoldStart/Stop events of the sandbox Asterisk on ``address`` (ARI has no
    event for music on hold)."""
    queue: asyncio.Queue[AmiEvent] = asyncio.Queue()
    link = AmiLink(address, 5038, "ctc", AMI_PASSWORD, ping_interval=5)
    link.on_event("MusicOnHoldStart", queue.put_nowait)
    link.on_event("MusicOnHoldStop", queue.put_nowait)
    async with link:
        await link.wait_connected(15)
        yield queue


async def next_moh(queue: asyncio.Queue[AmiEvent], channel: str) -> str:
    """The next MOH event on ``channel``: its Event name."""
    async with asyncio.timeout(10):
        while True:
            event = await queue.get()
            if event.get("Uniqueid") == channel:
                return event["Event"]
